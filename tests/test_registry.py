"""OpenMMLab integration: registry resolution and weights_only-safe mmengine checkpoints."""
import importlib

import numpy as np
import pytest
import torch
from mmengine.registry import MODELS, DefaultScope

import xcit_dense
from xcit_dense.models import XCiT


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_type_xcit_resolves_under_each_default_scope(scope):
    cfg = dict(type='XCiT', arch='n12', patch_size=8, out_indices=(2, 5, 8, 11))
    scoped = importlib.import_module(f'{scope}.registry').MODELS
    assert scoped.get('XCiT') is XCiT
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(cfg)  # the root registry resolves through the default scope
    assert isinstance(model, XCiT) and model.out_indices == (2, 5, 8, 11)


def test_mask_aware_tta_model_is_registered_in_mmdet():
    """``tools/test.py --tta`` names it in place of mmdet's DetTTAModel (engine.tta)."""
    from mmdet.registry import MODELS as DET_MODELS

    from xcit_dense.engine.tta import MASK_TTA_MODEL
    from xcit_dense.tta_det import DetTTAModelWithMasks
    assert DET_MODELS.get(MASK_TTA_MODEL) is DetTTAModelWithMasks


def test_mmengine_checkpoint_classes_load_with_weights_only(tmp_path):
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(0.5)
    buffer.update(np.float64(0.25))
    ckpt = {'message_hub': {'log_scalars': {'train/loss': buffer}},
            'meta': {'cfg': ConfigDict(a=1), 'seed': np.int64(3), 'iou': np.zeros(3)}}
    path = tmp_path / 'runner.pth'
    torch.save(ckpt, path)
    loaded = torch.load(path, weights_only=True)  # xcit_dense's import allow-listed these
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == pytest.approx(0.375)
    assert loaded['meta']['cfg'].a == 1 and loaded['meta']['seed'] == 3
    assert xcit_dense.__version__


def test_allow_listed_getattr_reaches_only_history_buffer_methods(tmp_path):
    """The pickled ``getattr`` that HistoryBuffer needs cannot fetch anything else."""
    import pickle
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer
    for target, name in ((HistoryBuffer, '__init__'), (ConfigDict, 'merge_from_dict')):
        path = tmp_path / 'sneaky.pth'
        torch.save({'x': _Reduce(getattr, (target, name))}, path)
        with pytest.raises(pickle.UnpicklingError, match='refused getattr'):
            torch.load(path, weights_only=True)


class _Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args
