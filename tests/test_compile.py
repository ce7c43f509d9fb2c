"""torch.compile with the XCiT backbone on CPU: compiled outputs equal the eager ones, the
streamed inference (large inputs) is not traced chunk by chunk, and mmengine's
``compile=...`` trains a toy segmentor to the eager losses.

The tests compile with ``backend='aot_eager'``: dynamo captures the same graph as for the
default inductor backend (so graph counts, breaks and the no-unrolling check are the same), and
AOTAutograd runs it, but no C++ is generated. Inductor works on this CPU (gcc is installed) and
gives the same outputs (max difference 1e-6 on outputs of magnitude ~4), but its C++ builds
take minutes on two shared cores, beyond a unit test's time.

Tolerance: fp32 throughout; AOTAutograd decomposes layer norm, softmax and GELU into primitive
ops, which reorders floating-point sums; the differences seen are ~1e-7 (backbone outputs of
magnitude ~4), so 1e-5 absolute / relative leaves two orders of margin while any real
difference (a skipped layer, a different path) is far larger.
"""
import time

import pytest
import torch
import torch._dynamo as dynamo
from mmengine.runner import Runner

import xcit_dense  # noqa: F401
from xcit_dense.models import XCiT
from xcit_dense.models.streaming import can_stream

ARCH = dict(embed_dim=64, depth=4, num_heads=2)
BACKEND = 'aot_eager'
TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope='module')
def backbone(randomize):
    torch.manual_seed(0)
    model = XCiT(arch=ARCH, patch_size=8, out_indices=(0, 1, 2, 3))
    return randomize(model).eval()


def compiled_outputs(model, x):
    dynamo.reset()
    start = time.perf_counter()
    with torch.no_grad():
        out = torch.compile(model, backend=BACKEND, dynamic=False)(x)
    return out, time.perf_counter() - start


def test_compiled_backbone_equals_eager_and_does_not_unroll_streaming(backbone):
    """64x64 (80 tokens) and 512x512 (4096 tokens: eagerly the stem runs in bands and the
    blocks in chunks of 1024 tokens): one graph, no break, the same number of ops at both
    sizes (the streamed loops would add ops per chunk), outputs equal to the eager ones."""
    counts, times = {}, {}
    for size in (64, 512):
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            eager = backbone(x)
            assert can_stream(backbone, x)  # eagerly, the 512 input is streamed
        if size == 512:
            assert (size // 8) ** 2 > backbone.blocks[0].STREAM_TOKENS
        out, times[size] = compiled_outputs(backbone, x)
        assert len(out) == len(eager) == 4
        for a, b in zip(out, eager):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, **TOL)
        dynamo.reset()
        with torch.no_grad():
            explained = dynamo.explain(backbone)(x)
        assert explained.graph_count == 1 and explained.graph_break_count == 0, \
            explained.break_reasons
        counts[size] = explained.op_count
    assert counts[512] == counts[64], counts
    # compile time does not grow with the image (the run itself does, so allow for it)
    assert times[512] < 3 * times[64] + 10, times


def toy_seg_cfg(toy_cfg, root, work_dir, name):
    cfg = toy_cfg('seg', root, work_dir, name)
    cfg.model.backbone.arch = ARCH
    cfg.model.backbone.out_indices = (0, 1, 2, 3)
    cfg.model.neck.in_channels = [ARCH['embed_dim']] * 4
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = 2, 100
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 100
    # the configs' own optimizer: NoDecayOptimWrapperConstructor's per-parameter groups
    cfg.optim_wrapper = dict(type='OptimWrapper', constructor='NoDecayOptimWrapperConstructor',
                             optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
                             paramwise_cfg=dict(norm_decay_mult=0.))
    return cfg


def test_runner_compile_trains_like_eager_and_test_step_matches(toy_cfg, toy_ade_root,
                                                                tmp_path):
    """mmengine's ``compile=dict(backend=...)`` (``--cfg-options compile=True`` picks
    inductor) compiles the model's train_step: two training iterations of the toy segmentor
    with the custom arch give the eager losses; then a compiled test_step gives the eager
    logits (mmengine 0.10 compiles train_step only, so val/test run eagerly under
    ``compile=True``)."""
    losses, runners = {}, {}
    for mode in ('eager', 'compiled'):
        cfg = toy_seg_cfg(toy_cfg, toy_ade_root, tmp_path / mode, mode)
        if mode == 'compiled':
            cfg.compile = dict(backend=BACKEND)
        dynamo.reset()
        runner = Runner.from_cfg(cfg)
        runner.train()
        losses[mode] = runner.message_hub.get_scalar('train/loss').data[0]
        runners[mode] = runner
    assert len(losses['eager']) == 2
    torch.testing.assert_close(torch.as_tensor(losses['compiled']),
                               torch.as_tensor(losses['eager']), atol=1e-4, rtol=1e-4)

    model = runners['eager'].model.eval()
    batch = next(iter(runners['eager'].build_dataloader(runners['eager'].cfg.val_dataloader)))
    with torch.no_grad():
        eager = model.test_step(batch)
        dynamo.reset()
        compiled = torch.compile(model.test_step, backend=BACKEND)(batch)
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a.seg_logits.data, b.seg_logits.data, **TOL)
        assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)
