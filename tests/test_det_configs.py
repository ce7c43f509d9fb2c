"""Every detection config builds (pretrained weights off) and its model predicts on a small
image, through mmdet's inference API, which feeds the model exactly the image normalised by
hand; the COCO configs stop with one clear message when data/coco is missing."""
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


# what the release (mmdet 2.x's img_norm_cfg) and mmdet's bases normalise with: ImageNet's
# mean and std of the RGB image, padded with zeros to a multiple of 32
MEAN, STD, PAD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375), 32


def heads_test_cfg(model):
    """The test_cfg of the head that makes the final detections (R-CNN's RoI head, a
    one-stage detector's head), the head, and its number of classes."""
    if not hasattr(model, 'roi_head'):
        return model.bbox_head.test_cfg, model.bbox_head.num_classes
    box_head = model.roi_head.bbox_head  # Cascade R-CNN: one per stage
    box_head = box_head[-1] if isinstance(box_head, torch.nn.ModuleList) else box_head
    return model.roi_head.test_cfg, box_head.num_classes


@pytest.mark.parametrize('paths', configs_by_model(DET_CONFIGS), ids=group_id)
def test_config_builds_and_predicts(paths):
    """Each detection model (fresh weights) through mmdet's ``inference_detector`` on a
    90 x 120 image (the config's test pipeline, its Resize at the image's own size, and data
    preprocessor): the model gets exactly the image normalised and padded here by hand, its
    backbone gives the neck maps at strides 4 to 32, and, every detection kept (score
    threshold 0; at most 5, to keep the mask heads cheap), the model returns that many, with
    masks of the image's size where the config has a mask head."""
    import numpy as np
    from mmdet.apis import inference_detector
    from mmengine.registry import DefaultScope
    path = paths[0]
    cfg, model = build_detector(path)
    assert cfg.default_scope == 'mmdet'
    model.eval()
    backbone = model.backbone
    assert type(backbone).__name__ in ('XCiT', 'CrossViT')
    assert list(cfg.model.neck.in_channels) == list(backbone.out_channels)
    test_cfg, num_classes = heads_test_cfg(model)
    assert num_classes == (3 if '/toy/' in path else 80)
    test_cfg.score_thr, test_cfg.max_per_img = 0.0, 5

    H, W = 90, 120
    image = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)  # BGR
    x = torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1).float()
    x = (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    x = torch.nn.functional.pad(x, (0, -W % PAD, 0, -H % PAD))[None]
    for step in cfg.test_dataloader.dataset.pipeline:
        if step.type == 'Resize':
            step.scale = (W, H)  # (width, height): the image's own size
    model.cfg = cfg
    seen, extract_feat = {}, model.extract_feat
    model.extract_feat = lambda inputs: seen.update(inputs=inputs) or extract_feat(inputs)
    hook = model.neck.register_forward_pre_hook(lambda neck, args: seen.update(feats=args[0]))
    with DefaultScope.overwrite_default_scope('mmdet'):
        result = inference_detector(model, image)
    hook.remove()
    assert torch.equal(seen['inputs'], x)
    assert [f.shape[-2:] for f in seen['feats']] == [(96 // s, 128 // s) for s in (4, 8, 16, 32)]
    assert result.ori_shape == result.img_shape == (H, W)
    assert tuple(result.scale_factor) == (1.0, 1.0)
    pred = result.pred_instances
    assert len(pred) == len(pred.scores) == len(pred.labels) == 5
    assert ('masks' in pred) == ('mask_head' in cfg.model.get('roi_head', {}))
    if 'masks' in pred:
        assert pred.masks.shape == (5, H, W)


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
