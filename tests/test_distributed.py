"""Distributed training on CPU (torchrun, gloo) against a single process, SyncBN fallback,
and determinism."""
import copy
import os
import re
import subprocess
import sys
import warnings

import pytest
import torch
from mmengine.runner import Runner

import xcit_dense  # noqa: F401
from xcit_dense.engine import setup_launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def seg_cfg_without_batch_coupling(toy_cfg, data_root, work_dir, batch_size):
    """The toy Semantic FPN with nothing that couples the samples of a batch or draws per
    process: GroupNorm instead of BatchNorm, no random flip. Two processes with batch b then
    compute what one process with batch 2b does (DDP averages the gradients, the loss
    averages over equal-sized images), up to the order of floating-point sums."""
    cfg = toy_cfg('seg', data_root, work_dir, 'dist')
    gn = dict(type='GN', num_groups=8)
    cfg.model.backbone.norm_cfg = gn
    cfg.model.decode_head.norm_cfg = gn
    cfg.model.decode_head.dropout_ratio = 0.
    cfg.train_dataloader.dataset.pipeline = [
        t for t in cfg.train_dataloader.dataset.pipeline if t['type'] != 'RandomFlip']
    cfg.train_dataloader.batch_size = batch_size
    cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = 3, 3
    cfg.default_hooks.checkpoint.update(interval=3)
    return cfg


def test_two_cpu_processes_match_one_process_with_the_total_batch(toy_cfg, toy_ade_root,
                                                                  tmp_path):
    single = seg_cfg_without_batch_coupling(toy_cfg, toy_ade_root, tmp_path / 'single', 4)
    dist = seg_cfg_without_batch_coupling(toy_cfg, toy_ade_root, tmp_path / 'dist', 2)
    single.dump(str(tmp_path / 'single.py'))
    dist.dump(str(tmp_path / 'dist.py'))
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1', PORT='29517')
    proc = subprocess.run([sys.executable, 'tools/train.py', str(tmp_path / 'single.py')],
                          cwd=ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = subprocess.run(['bash', 'tools/dist_train.sh', str(tmp_path / 'dist.py'), '2'],
                          cwd=ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert 'Distributed training: True' in log and 'GPU number: 2' in log  # 2 processes
    a = torch.load(tmp_path / 'single' / 'iter_3.pth', weights_only=True)['state_dict']
    b = torch.load(tmp_path / 'dist' / 'iter_3.pth', weights_only=True)['state_dict']
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5), k


def test_two_cpu_processes_train_and_evaluate_the_toy_detector(toy_cfg, toy_coco_root,
                                                               tmp_path):
    """Mask R-CNN samples anchors and RoIs at random in each process, so two processes cannot
    reproduce one process's training bit for bit; their evaluation, split over the two
    processes and gathered, gives the metrics one process computes with the same weights."""
    cfg = toy_cfg('det', toy_coco_root, tmp_path / 'work', 'dist_det')
    cfg.train_dataloader.batch_size = 2  # 2 processes x 2 = the single-process batch of 4
    cfg.train_cfg.max_epochs, cfg.train_cfg.val_interval = 1, 1
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # a model after 2 iterations: keep detections
    cfg.dump(str(tmp_path / 'det.py'))
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1', PORT='29518')
    proc = subprocess.run(['bash', 'tools/dist_train.sh', str(tmp_path / 'det.py'), '2'],
                          cwd=ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    assert 'Epoch(train) [1][2/2]' in log  # 8 images / (2 processes x 2) = 2 iterations
    checkpoint = tmp_path / 'work' / 'epoch_1.pth'
    state = torch.load(checkpoint, weights_only=True)['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    single = subprocess.run([sys.executable, 'tools/test.py', str(tmp_path / 'det.py'),
                             str(checkpoint), '--work-dir', str(tmp_path / 'single')],
                            cwd=ROOT, capture_output=True, text=True, env=env)
    assert single.returncode == 0, single.stderr[-3000:]

    def metrics(text):
        found = dict(re.findall(r'coco/((?:bbox|segm)_mAP(?:_50|_75)?): (-?\d\.\d+)', text))
        assert len(found) == 6, text[-2000:]
        return found
    assert metrics(log) == metrics(single.stdout + single.stderr)


def test_sync_bn_falls_back_to_bn_with_a_warning_and_trains(toy_cfg, toy_ade_root, tmp_path,
                                                            monkeypatch):
    cfg = toy_cfg('seg', toy_ade_root, tmp_path, 'syncbn')
    cfg.model.backbone.norm_cfg = dict(type='SyncBN')
    cfg.model.decode_head.norm_cfg = dict(type='SyncBN', requires_grad=True)
    cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = 1, 1
    gpu_cfg, multi_gpu_cfg = copy.deepcopy(cfg), copy.deepcopy(cfg)
    with pytest.warns(UserWarning, match='SyncBN needs distributed GPU training; 2 SyncBN '
                      'layers run as plain BN on CPU'):
        setup_launch(cfg, 'none')
    assert cfg.model.backbone.norm_cfg.type == cfg.model.decode_head.norm_cfg.type == 'BN'
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in runner.model.modules())
    # on one GPU (a single process) the same fallback, with its own words
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    with pytest.warns(UserWarning, match='2 SyncBN layers run as plain BN in a single process'):
        setup_launch(gpu_cfg, 'none')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        setup_launch(multi_gpu_cfg, 'pytorch')  # real multi-GPU runs keep SyncBN
    assert multi_gpu_cfg.model.backbone.norm_cfg.type == 'SyncBN'


def test_same_seed_gives_identical_loss_curves(toy_cfg, toy_ade_root, tmp_path):
    """(Mask R-CNN's determinism is covered by the resume tests, which compare two runs'
    weights bit for bit.)"""
    curves = []
    for run in ('a', 'b'):
        cfg = toy_cfg('seg', toy_ade_root, tmp_path / run, f'determinism_{run}')
        cfg.randomness = dict(seed=0, deterministic=True)
        cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = 4, 10
        cfg.train_dataloader.batch_size = 4
        runner = Runner.from_cfg(cfg)
        runner.train()
        curves.append(runner.message_hub.get_scalar('train/loss').data[0].tolist())
    assert len(curves[0]) == 4
    assert curves[0] == curves[1]
    assert len(set(curves[0])) > 1  # a real curve, not a constant
