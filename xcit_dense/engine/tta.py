"""Test-time augmentation (``tools/test.py --tta``): the config's test set through its
``tta_pipeline`` and its model wrapped by its ``tta_model``, as mmdet's and mmseg's test tools
do it, with mmdet's ``DetTTAModel`` replaced by its extension to instance masks
(:class:`~xcit_dense.tta_det.DetTTAModelWithMasks`, registered in mmdet by
:mod:`xcit_dense.registry`); and a checkpoint of the plain model loaded into the wrapper."""
import contextlib
import copy
from typing import Iterator

from mmengine.config import ConfigDict
from mmengine.model import BaseTTAModel, is_model_wrapper

from .data_check import innermost_dataset
from .errors import UsageError

# The registered name of :class:`~xcit_dense.tta_det.DetTTAModelWithMasks` (in mmdet's MODELS).
MASK_TTA_MODEL = 'DetTTAModelWithMasks'


def apply_tta(cfg) -> None:
    """``tools/test.py --tta``, in place, as mmdet's and mmseg's test tools do it: the test
    set goes through the config's ``tta_pipeline`` (``TestTimeAug``: every image in several
    views, e.g. scales x flips) and the model is wrapped by its ``tta_model`` (mmdet's
    ``DetTTAModel``: boxes of all views flipped back, then NMS; mmseg's ``SegTTAModel``: the
    views' class probabilities averaged), which holds the config's model as ``module``.
    mmdet's ``DetTTAModel`` becomes :class:`~xcit_dense.tta_det.DetTTAModelWithMasks`, its
    extension to instance masks, since mmdet's own refuses models that predict masks (Mask
    R-CNN). A config without ``tta_pipeline`` or ``tta_model`` is a :class:`UsageError`
    naming what is missing."""
    missing = [key for key in ('tta_model', 'tta_pipeline') if not cfg.get(key)]
    if missing:
        raise UsageError(f'--tta needs {" and ".join(missing)} in the config, which has '
                         f'{"neither" if len(missing) == 2 else "none"} (see '
                         'configs/_base_/datasets/ for both)')
    tta_model = copy.deepcopy(cfg.tta_model)
    if tta_model.get('type') in ('DetTTAModel', 'mmdet.DetTTAModel'):
        tta_model['type'] = MASK_TTA_MODEL
    if str(cfg.model.get('type')).rpartition('.')[2] == 'EncoderDecoder':
        cfg.model['banded_pixels'] = None  # SegTTAModel averages the views' full logits
    cfg.model = ConfigDict(**tta_model, module=cfg.model)
    innermost_dataset(cfg.test_dataloader.dataset).pipeline = copy.deepcopy(cfg.tta_pipeline)


@contextlib.contextmanager
def tta_module_as_model(runner) -> Iterator[None]:
    """While this context is open, ``runner.model`` is the model inside the runner's TTA
    wrapper (mmengine's ``BaseTTAModel``, whose weights live under ``module.``), so that a
    checkpoint of the plain model loads into it strictly and fully, through the runner
    (:func:`~xcit_dense.engine.weights.load_checkpoint_strictly`). Without a TTA wrapper it
    does nothing. (A distributed wrapper around the TTA wrapper is looked through.)"""
    model = runner.model
    tta = model.module if is_model_wrapper(model) else model
    if not isinstance(tta, BaseTTAModel):
        yield
        return
    runner.model = tta.module
    try:
        yield
    finally:
        runner.model = model
