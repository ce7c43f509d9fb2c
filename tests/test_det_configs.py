"""Every detection config builds (pretrained weights off) and its model predicts on a small
image; the COCO configs stop with one clear message when data/coco is missing."""
import glob
import os

import pytest
import torch
from mmengine.config import Config

import xcit_dense  # noqa: F401
from xcit_dense.engine import DatasetNotFoundError, build_analysis_model, check_datasets_exist
from xcit_dense.testing.configs import configs_by_model, group_id

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DET_PREFIXES = ('mask-rcnn', 'maskrcnn', 'cascade-mask-rcnn', 'retinanet', 'fcos')
DET_CONFIGS = sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(f'{ROOT}/configs/**/*.py', recursive=True)
    if '_base_' not in p and '/configs/xcit/' not in p  # release-name aliases: test_model_zoo
    and os.path.basename(p).startswith(DET_PREFIXES))


def build_detector(path):
    cfg = Config.fromfile(os.path.join(ROOT, path))
    return cfg, build_analysis_model(cfg)  # pretrained weights off, SyncBN -> BN on this CPU


def test_configs_are_found():
    assert 'configs/maskrcnn_xcit_s12_p8_coco.py' in DET_CONFIGS
    assert len([c for c in DET_CONFIGS if c.startswith('configs/mask_rcnn/')]) == 20


@pytest.mark.parametrize('paths', configs_by_model(DET_CONFIGS), ids=group_id)
def test_config_builds_and_predicts(paths):
    from mmdet.testing import demo_mm_inputs
    path = paths[0]
    cfg, model = build_detector(path)
    assert cfg.default_scope == 'mmdet'
    model.eval()
    backbone = model.backbone
    assert type(backbone).__name__ in ('XCiT', 'CrossViT')
    assert list(cfg.model.neck.in_channels) == list(backbone.out_channels)
    packed = demo_mm_inputs(1, [[3, 96, 128]], num_classes=3, with_mask=True)
    with torch.no_grad():
        data = model.data_preprocessor(packed, False)
        feats = model.backbone(data['inputs'])
        results = model(**data, mode='predict')
    assert [f.shape[-2:] for f in feats] == [(96 // s, 128 // s) for s in (4, 8, 16, 32)]
    assert len(results) == 1 and 'pred_instances' in results[0]
    pred = results[0].pred_instances
    boxes, scores = pred.bboxes, pred.scores
    assert boxes.shape == (len(scores), 4) and len(pred.labels) == len(scores)
    assert ((boxes[:, 0] <= boxes[:, 2]) & (boxes[:, 1] <= boxes[:, 3])).all()
    assert (boxes >= 0).all() and (boxes[:, 0::2] <= 128).all() and (boxes[:, 1::2] <= 96).all()
    assert ((scores >= 0) & (scores <= 1)).all()
    num_classes = 3 if '/toy/' in path else 80
    assert ((pred.labels >= 0) & (pred.labels < num_classes)).all()


def test_release_recipe_in_the_user_config():
    cfg = Config.fromfile(os.path.join(ROOT, 'configs/maskrcnn_xcit_s12_p8_coco.py'))
    assert cfg.model.backbone.arch == 'small_12' and cfg.model.backbone.patch_size == 8
    assert cfg.model.neck.in_channels == [384] * 4
    assert cfg.train_cfg.max_epochs == 36
    assert cfg.param_scheduler[1].milestones == [27, 33] and cfg.param_scheduler[0].end == 500
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.lr == 1e-4
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert cfg.train_dataloader.batch_size == 2
    choice = cfg.train_dataloader.dataset.pipeline[3]
    assert choice.type == 'RandomChoice' and len(choice.transforms) == 2


def test_missing_coco_gives_one_clear_message(tmp_path):
    cfg = Config.fromfile(os.path.join(ROOT, 'configs/maskrcnn_xcit_s12_p8_coco.py'))
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'coco') + '/'
    with pytest.raises(DatasetNotFoundError) as info:
        check_datasets_exist(cfg)
    message = str(info.value)
    assert 'instances_train2017.json' in message and 'train2017' in message
    assert 'COCO 2017' in message and 'make demo' in message
