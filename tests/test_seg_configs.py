"""Every segmentation config builds (pretrained weights off), runs one forward pass and one
sliding-window inference on a small input; the ADE20k configs stop with one clear message when
the data is missing."""
import glob
import os

import pytest
import torch
from mmengine.config import Config, ConfigDict

import xcit_dense  # noqa: F401
from xcit_dense.engine import (DatasetNotFoundError, build_analysis_model, check_datasets_exist,
                               dummy_data_samples)
from xcit_dense.testing.configs import configs_by_model, group_id

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEG_CONFIGS = sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(f'{ROOT}/configs/**/*.py', recursive=True)
    if '_base_' not in p and '/configs/xcit/' not in p  # release-name aliases: test_model_zoo
    and os.path.basename(p).startswith(('fpn_', 'upernet_')))


def test_configs_are_found():
    assert len([c for c in SEG_CONFIGS if c.startswith('configs/sem_fpn/')]) == 12
    assert len([c for c in SEG_CONFIGS if c.startswith('configs/upernet/')]) == 11


# the test sets its own test_cfg: the slide variants build the same model as the others
@pytest.mark.parametrize('paths', configs_by_model(SEG_CONFIGS, ignore=['test_cfg']),
                         ids=group_id)
def test_config_builds_predicts_and_slides(paths):
    cfg = Config.fromfile(os.path.join(ROOT, paths[0]))
    assert cfg.default_scope == 'mmseg'
    model = build_analysis_model(cfg)  # pretrained weights off, SyncBN -> BN on this CPU
    assert type(model.backbone).__name__ in ('XCiT', 'CrossViT')
    num_classes = cfg.model.decode_head.num_classes
    H, W = 96, 128
    inputs = torch.randn(1, 3, H, W)
    with torch.no_grad():
        feats = model.backbone(inputs)
        whole = model.predict(inputs, dummy_data_samples('mmseg', H, W))
        # one window covering the image computes exactly the whole-image inference
        model.test_cfg = ConfigDict(mode='slide', crop_size=(H, W), stride=(H, W))
        one_window = model.predict(inputs, dummy_data_samples('mmseg', H, W))
        model.test_cfg = ConfigDict(mode='slide', crop_size=(64, 96), stride=(32, 32))
        slide = model.predict(inputs, dummy_data_samples('mmseg', H, W))
    assert [f.shape[-2:] for f in feats] == [(H // s, W // s) for s in (4, 8, 16, 32)]
    assert torch.allclose(one_window[0].seg_logits.data, whole[0].seg_logits.data, atol=1e-5)
    # the group's other configs with their own test_cfg (the _slide variants' 512 x 512
    # windows cover this image whole: the same logits)
    for path in paths[1:]:
        test_cfg = Config.fromfile(os.path.join(ROOT, path)).model.test_cfg
        if test_cfg == cfg.model.test_cfg:
            continue
        model.test_cfg = test_cfg
        with torch.no_grad():
            own = model.predict(inputs, dummy_data_samples('mmseg', H, W))
        assert torch.allclose(own[0].seg_logits.data, whole[0].seg_logits.data, atol=1e-5), path
    for result in (whole, slide):
        logits = result[0].seg_logits.data
        assert logits.shape == (num_classes, H, W) and torch.isfinite(logits).all()
        assert torch.equal(result[0].pred_sem_seg.data[0], logits.argmax(0))


def test_release_recipe():
    fpn = Config.fromfile(os.path.join(
        ROOT, 'configs/sem_fpn/fpn_xcit-s12-p8_8xb2-80k_ade20k-512x512.py'))
    assert fpn.model.neck.out_channels == 384 and fpn.model.neck.num_outs == 4
    assert fpn.model.decode_head.channels == 128
    assert fpn.optim_wrapper.optimizer.lr == 6e-5
    assert fpn.optim_wrapper.optimizer.weight_decay == 0.01
    assert fpn.param_scheduler[0].end == 1500 and fpn.param_scheduler[1].power == 1.0
    assert fpn.train_cfg.max_iters == 80000 and fpn.train_dataloader.batch_size == 2
    upernet = Config.fromfile(os.path.join(
        ROOT, 'configs/upernet/upernet_xcit-s12-p8_8xb2-160k_ade20k-512x512.py'))
    assert upernet.model.decode_head.channels == 512
    assert tuple(upernet.model.decode_head.pool_scales) == (1, 2, 3, 6)
    aux = upernet.model.auxiliary_head
    assert (aux.in_index, aux.channels, aux.loss_decode.loss_weight) == (2, 256, 0.4)
    assert upernet.train_cfg.max_iters == 160000


def test_missing_ade20k_gives_one_clear_message(tmp_path):
    cfg = Config.fromfile(os.path.join(
        ROOT, 'configs/upernet/upernet_xcit-s12-p8_8xb2-160k_ade20k-512x512.py'))
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'ade' / 'ADEChallengeData2016')
    with pytest.raises(DatasetNotFoundError) as info:
        check_datasets_exist(cfg)
    message = str(info.value)
    assert 'ADEChallengeData2016' in message and 'images/training' in message
    assert 'make demo-seg' in message
