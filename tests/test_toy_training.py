"""Few-iteration train-then-val loops on the generated toy data, through mmdet's CocoMetric
and mmseg's IoUMetric, and tools/test.py's result files."""
import glob
import json
import os
import pickle
import subprocess
import sys

import pytest
from mmengine.runner import Runner

import xcit_dense  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DET_CONFIG = os.path.join(ROOT, 'configs/toy/mask-rcnn_xcit-n12-p8_fpn-64_toy-shapes.py')


@pytest.fixture(scope='module')
def toy_coco(toy_coco_root):
    return toy_coco_root


@pytest.fixture(scope='module')
def det_cfg(toy_cfg):
    def build(data_root, work_dir, name):
        cfg = toy_cfg('det', data_root, work_dir, name)
        cfg.train_cfg.max_epochs, cfg.train_cfg.val_interval = 3, 3
        cfg.param_scheduler[0].end = 2  # warm-up over 2 of the 6 iterations
        return cfg
    return build


@pytest.fixture(scope='module')
def trained_detector(toy_coco, det_cfg, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('det_run')
    runner = Runner.from_cfg(det_cfg(toy_coco, work_dir, 'toy_det_train'))
    runner.train()
    return runner, work_dir


def test_detection_learns_then_val_gives_coco_map(trained_detector, toy_coco, det_cfg,
                                                  tmp_path):
    """3 epochs (6 iterations) of the toy Mask R-CNN from random weights: the loss falls to
    under half its start (measured: 11.5 to 2.7, means of the first and last two, 0.23x), and
    CocoMetric evaluates the model. Its mAP is still 0 after 6 iterations (as a fresh model's
    is: no threshold on it would tell learning apart), so the evaluation itself is checked
    against a reference: the same config's evaluator gives a detector that predicts the
    ground truth exactly 1 (and -1, for no objects, on the large-object mAPs: the toy
    validation set has none)."""
    from xcit_dense.testing.oracles import GroundTruthDetector  # noqa: F401 (registers it)
    runner, work_dir = trained_detector
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 6
    assert losses[-2:].mean() < 0.5 * losses[:2].mean(), losses
    metrics = runner.val_loop.run()
    keys = [f'coco/{kind}_mAP{s}' for kind in ('bbox', 'segm') for s in ('', '_50', '_l')]
    assert set(keys) <= set(metrics)
    assert metrics['coco/bbox_mAP_l'] == metrics['coco/segm_mAP_l'] == -1.0
    assert os.path.isfile(work_dir / 'epoch_3.pth')
    cfg = det_cfg(toy_coco, tmp_path, 'toy_det_oracle')  # its test set is its val set
    cfg.model = dict(type='GroundTruthDetector', ann_file=cfg.val_evaluator.ann_file)
    oracle = Runner.from_cfg(cfg).test()  # (the oracle only has test_step)
    assert {k: oracle[k] for k in keys} == {
        k: -1.0 if k.endswith('_l') else 1.0 for k in keys}


def test_test_tool_writes_results_pycocotools_reads(trained_detector, toy_coco, det_cfg,
                                                    tmp_path):
    from pycocotools.coco import COCO
    _, work_dir = trained_detector
    config = tmp_path / 'toy_det.py'
    cfg = det_cfg(toy_coco, tmp_path / 'test_run', 'toy_det_test')
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # an untrained model: keep every detection
    cfg.dump(str(config))
    prefix, pkl = tmp_path / 'results', tmp_path / 'results.pkl'
    subprocess.run([sys.executable, 'tools/test.py', str(config), str(work_dir / 'epoch_3.pth'),
                    '--json-prefix', str(prefix), '--out', str(pkl), '--show-dir', 'vis'],
                   cwd=ROOT, check=True, capture_output=True)
    gt = COCO(toy_coco + 'annotations/instances_val.json')
    for kind in ('bbox', 'segm'):
        with open(f'{prefix}.{kind}.json') as f:
            results = json.load(f)
        assert results, f'no {kind} results'
        loaded = gt.loadRes(f'{prefix}.{kind}.json')
        assert set(loaded.getImgIds()) <= set(gt.getImgIds())
        assert all(r['category_id'] in gt.getCatIds() for r in results)
    with open(pkl, 'rb') as f:
        dumped = pickle.load(f)
    assert len(dumped) == 4 and 'pred_instances' in dumped[0]
    assert len(glob.glob(str(tmp_path / 'test_run' / '*' / 'vis' / '*.png'))) == 4


def test_segmentation_learns_then_val_gives_miou(toy_ade_root, toy_cfg, tmp_path):
    """20 iterations of the toy Semantic FPN from random weights: the loss falls to under
    0.4x its start (measured: 1.34 to 0.26, 0.2x), and the model has learnt the toy data's
    class prior: its validation mIoU is that of labelling every pixel background (measured:
    23.29, exactly that; a fresh model's: 1.48), computed here from the label maps."""
    from xcit_dense.testing.oracles import majority_miou
    cfg = toy_cfg('seg', toy_ade_root, tmp_path / 'seg_run', 'toy_seg_train')
    cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = 20, 20
    cfg.param_scheduler[0].end = 5  # warm-up over 5 of the 20 iterations
    cfg.default_hooks.checkpoint.interval = 20
    runner = Runner.from_cfg(cfg)
    runner.train()
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 20
    assert losses[-3:].mean() < 0.4 * losses[:3].mean(), losses
    metrics = runner.val_loop.run()
    assert set(metrics) >= {'aAcc', 'mIoU', 'mAcc'}
    baseline = majority_miou(toy_ade_root, num_classes=4)
    assert baseline == pytest.approx(23.29, abs=0.01)
    assert metrics['mIoU'] > 0.9 * baseline, metrics
    # tools/test.py draws every test image of a segmentation config too
    config = tmp_path / 'toy_seg.py'
    cfg.dump(str(config))
    subprocess.run([sys.executable, 'tools/test.py', str(config),
                    str(tmp_path / 'seg_run' / 'iter_20.pth'), '--show-dir', 'vis'],
                   cwd=ROOT, check=True, capture_output=True)
    assert len(glob.glob(str(tmp_path / 'seg_run/vis/vis_data/vis_image/*.png'))) == 4


def test_infer_tool_draws_predictions_and_rejects_bad_images(trained_detector, toy_coco,
                                                             tmp_path):
    _, work_dir = trained_detector
    image = toy_coco + 'val/000001.png'
    out = tmp_path / 'pred.png'
    proc = subprocess.run([sys.executable, 'tools/infer.py', DET_CONFIG,
                           str(work_dir / 'epoch_3.pth'), image, '--out-file', str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from PIL import Image
    assert Image.open(out).size == (640, 640)  # the 160-pixel image on an enlarged canvas
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'\x89PNG\r\n\x1a\n not really')
    proc = subprocess.run([sys.executable, 'tools/infer.py', DET_CONFIG,
                           str(work_dir / 'epoch_3.pth'), str(broken)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    assert f"Image '{broken}' cannot be decoded" in proc.stderr
