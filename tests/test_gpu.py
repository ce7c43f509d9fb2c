"""Tests that need a CUDA GPU; skipped, with the reason, wherever none is available.

Run them with ``pytest tests/test_gpu.py`` after the GPU set-up of docs/get_started.md (a CUDA
build of torch and mmcv built with its CUDA ops)."""
import csv
import os
import subprocess
import sys

import pytest
import timm
import torch

from xcit_dense.checkpoint import load_state_dict_file
from xcit_dense.models import CrossViT, XCiT
from xcit_dense.models.crossvit import ARCH_ZOO as CROSSVIT_ARCHS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                   reason='needs a CUDA GPU (torch.cuda.is_available() is False)')
pytestmark = requires_cuda


@pytest.fixture
def no_tf32():
    """Full fp32 matrix products and convolutions (no TF32), restored afterwards."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected||, in fp32."""
    actual, expected = actual.float(), expected.float()
    return float((actual - expected).norm() / expected.norm())


@pytest.mark.parametrize('arch, patch_size', [('small_12', 8), ('small_12', 16),
                                              ('tiny_24', 8)])
def test_xcit_matches_timm_on_cuda_fp32(arch, patch_size, randomize, no_tf32):
    ref = randomize(timm.create_model(f'xcit_{arch}_p{patch_size}_224')).cuda().eval()
    model = XCiT(arch, patch_size=patch_size).cuda().eval()
    result = model.load_state_dict(ref.state_dict(), strict=False)
    assert all(k.startswith('pyramid.') for k in result.missing_keys)
    x = torch.randn(2, 3, 12 * patch_size, 16 * patch_size, device='cuda')
    with torch.no_grad():
        expected = ref.forward_intermediates(x, indices=list(model.out_indices),
                                             intermediates_only=True)
        actual = model.forward_blocks(x)
    for e, a in zip(expected, actual):
        assert a.shape == e.shape
        assert (a - e).abs().max().item() <= 1e-4


@pytest.mark.parametrize('arch', ['tiny', '18_dagger'])
def test_crossvit_matches_timm_on_cuda_fp32(arch, randomize, no_tf32):
    """timm's 240 models with non-overlapping patches (see tests/test_crossvit.py)."""
    ref = randomize(timm.create_model(f'crossvit_{arch}_240', img_scale=(1.0, 1.0)))
    ref = ref.cuda().eval()
    model = CrossViT(dict(CROSSVIT_ARCHS[arch], pos_grids=(20, 15)),
                     patch_strides=(12, 16)).cuda().eval()
    model.load_state_dict(ref.state_dict(), strict=False)
    last = len(ref.blocks) - 1
    x = torch.randn(2, 3, 240, 240, device='cuda')
    with torch.no_grad():
        expected = ref.forward_intermediates(x, indices=[last, 2 * last + 1],
                                             intermediates_only=True)
        actual = model.forward_branches(x)
    for e, a in zip(expected, actual):
        assert a.shape == e.shape
        assert (a - e).abs().max().item() <= 1e-4


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])
@pytest.mark.parametrize('family, patch_size, size', [
    ('xcit', 8, 512), ('xcit', 8, 2048), ('xcit', 16, 2048), ('crossvit', None, 512)])
def test_autocast_outputs_are_finite_and_close_to_fp32(family, patch_size, size, dtype,
                                                       randomize, no_tf32):
    """XCiT-S12 and CrossViT-18-dagger under autocast against fp32: at 2048 x 2048 the XCA
    Gram matrices sum over 65536 (patch 8) tokens and must neither overflow in fp16 nor lose
    precision in bf16."""
    model = XCiT('small_12', patch_size=patch_size) if family == 'xcit' else CrossViT('18_dagger')
    model = randomize(model).cuda().eval()
    x = torch.randn(1, 3, size, size, device='cuda')
    with torch.no_grad():
        expected = model(x)
        with torch.autocast('cuda', dtype=dtype):
            actual = model(x)
    for level, (a, e) in enumerate(zip(actual, expected)):
        assert torch.isfinite(a).all(), f'level {level}: non-finite values under {dtype}'
        err = relative_error(a, e)
        assert err <= 0.01, f'level {level}: relative error {err:.4f} under {dtype}'


def run_tool(*args, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def finite_state(checkpoint: str) -> bool:
    state = load_state_dict_file(checkpoint)['state_dict']
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_amp_training_step_of_the_toy_mask_rcnn(toy_cfg, toy_coco_root, tmp_path):
    cfg = toy_cfg('det', toy_coco_root, tmp_path / 'work', 'amp_det')
    cfg.train_dataloader.batch_size = 8  # the 8 training images: one iteration per epoch
    cfg.train_cfg.max_epochs, cfg.train_cfg.val_interval = 1, 2  # one step, no validation
    cfg.default_hooks.checkpoint.interval = 1
    cfg.dump(str(tmp_path / 'det.py'))
    proc = run_tool('tools/train.py', str(tmp_path / 'det.py'), '--amp')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'AmpOptimWrapper' in proc.stdout + proc.stderr  # the config the runner logs
    assert finite_state(str(tmp_path / 'work' / 'epoch_1.pth'))


def test_amp_training_step_of_the_toy_semantic_fpn(toy_cfg, toy_ade_root, tmp_path):
    cfg = toy_cfg('seg', toy_ade_root, tmp_path / 'work', 'amp_seg')
    cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = 1, 2  # one step, no validation
    cfg.default_hooks.checkpoint.update(interval=1)
    cfg.dump(str(tmp_path / 'seg.py'))
    proc = run_tool('tools/train.py', str(tmp_path / 'seg.py'), '--amp')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'AmpOptimWrapper' in proc.stdout + proc.stderr
    assert finite_state(str(tmp_path / 'work' / 'iter_1.pth'))


def test_single_gpu_sync_bn_config_falls_back_to_bn_with_a_warning(toy_cfg, toy_ade_root,
                                                                   tmp_path):
    cfg = toy_cfg('seg', toy_ade_root, tmp_path / 'work', 'syncbn_gpu')
    cfg.model.backbone.norm_cfg = dict(type='SyncBN')
    cfg.model.decode_head.norm_cfg = dict(type='SyncBN', requires_grad=True)
    cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = 1, 2
    cfg.default_hooks.checkpoint.update(interval=1)
    cfg.dump(str(tmp_path / 'syncbn.py'))
    proc = run_tool('tools/train.py', str(tmp_path / 'syncbn.py'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ('SyncBN needs distributed GPU training; 2 SyncBN layers run as plain BN in a '
            'single process') in proc.stderr


def test_benchmark_on_cuda_in_bf16_writes_its_csv(tmp_path):
    proc = run_tool('tools/analysis_tools/benchmark_backbone.py', '--device', 'cuda',
                    '--dtype', 'bf16', '--archs', 'small_12:8', '--crossvit-archs', 'tiny',
                    '--sizes', '256', '512', '--runs', '2', '--warmup', '1',
                    '--out-dir', str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / 'benchmark_cuda_bf16.csv') as f:
        rows = list(csv.DictReader(f))
    assert rows and {r['device'] for r in rows} == {'cuda'}
    assert {r['dtype'] for r in rows} == {'bf16'}
    assert {'xcit', 'crossvit'} <= {r['model'] for r in rows}
    assert all(float(r['time_s']) > 0 for r in rows)
