"""Selective recomputation (``selective_recompute``): the plain path's gradients and batch-norm
statistics, with less held for the backward pass; the training benchmark's pieces."""
import copy
import csv
import subprocess
import sys

import pytest
import torch

from xcit_dense.engine import train_benchmark as tb
from xcit_dense.models import XCiT
from xcit_dense.models.recompute import checkpoint_products


def _step(model, x, dtype=None, seed=1):
    """One backward pass with a fixed random loss weighting and fixed drop-path masks."""
    model.train()
    torch.manual_seed(seed)
    with torch.autocast('cpu', dtype=dtype, enabled=dtype is not None):
        outs = model(x)
    sum((o.float() * torch.randn_like(o, dtype=torch.float)).sum() for o in outs).backward()


@pytest.mark.parametrize('frozen_stages,dtype', [(-1, None), (3, None), (-1, torch.bfloat16)])
def test_selective_recompute_gives_the_plain_gradients(frozen_stages, dtype, randomize):
    """Every parameter's gradient equals the plain path's (relative difference ≤ 1e-5), with
    stochastic depth, frozen blocks and under autocast; batch norm's running statistics are
    updated once, as in the plain path."""
    torch.manual_seed(0)
    plain = randomize(XCiT('nano_12', patch_size=8, drop_path_rate=0.2,
                           frozen_stages=frozen_stages, selective_recompute=False))
    selective = copy.deepcopy(plain)
    selective.selective_recompute = True
    x = torch.randn(8, 3, 40, 56)  # 8 samples: no branch dropped for all; padded to 64x64
    for model in (plain, selective):
        _step(model, x, dtype)
    grads = [{n: p.grad for n, p in m.named_parameters() if p.grad is not None}
             for m in (plain, selective)]
    trainable = {n for n, p in plain.named_parameters() if p.requires_grad}
    assert grads[0].keys() == grads[1].keys() == trainable
    for name, ref in grads[0].items():
        assert ref.abs().max() > 0, name
        rel = (grads[1][name] - ref).abs().max() / ref.abs().max()
        assert rel <= 1e-5, (name, rel.item())
    for (name, a), b in zip(plain.named_buffers(), selective.buffers()):
        assert torch.equal(a, b), name  # running mean/var and num_batches_tracked


def test_selective_recompute_is_used_only_where_a_gradient_is_needed(monkeypatch):
    """By default, trainable blocks in training go through the selective checkpoint; frozen blocks,
    evaluation and ``with_cp`` (which takes precedence) do not."""
    from xcit_dense.models import xcit
    calls = []
    monkeypatch.setattr(xcit, 'checkpoint_products',
                        lambda block, *a: calls.append(block) or checkpoint_products(block, *a))
    model = XCiT('nano_12', patch_size=16, frozen_stages=4).train()  # on by default
    x = torch.randn(2, 3, 64, 64)
    model(x)
    assert calls == list(model.blocks[4:])
    calls.clear()
    with torch.no_grad():
        model(x)
    model.eval()(x)
    model.train().with_cp = True
    model(x)
    assert calls == []


def test_selective_recompute_holds_less_for_backward():
    """At the peak of a training step, the selective path holds what the block saves (its
    input, the products of qkv, the attention output, both LPI convolutions and its batch norm,
    fc1 and fc2: 13 maps of C per token) where the plain path holds about twice as much:
    measured from the allocator's records, not timed."""
    torch.manual_seed(0)
    plain = XCiT('nano_12', patch_size=8, drop_path_rate=0., selective_recompute=False)
    selective = copy.deepcopy(plain)
    selective.selective_recompute = True
    x = torch.randn(2, 3, 128, 128)
    peaks = {}
    for name, model in (('plain', plain), ('selective', selective)):
        step, _ = tb.backbone_step(model, model.forward_blocks, x)
        step()  # the optimizer state exists before the measured step
        peaks[name] = tb.cpu_allocator_peak(step)
    # one map of C per token in every block: 12 blocks x 2 images x 256 tokens x 128 x 4 B
    per_map = 12 * 2 * (128 // 8) ** 2 * 128 * 4
    assert peaks['selective'] < 0.7 * peaks['plain'], peaks
    assert peaks['plain'] - peaks['selective'] > 8 * per_map, (peaks, per_map)


def test_cpu_allocator_peak_counts_what_is_held_at_once():
    def step():
        a = torch.empty(1000, 1000)  # 4 MB
        b = torch.empty(500, 1000)   # 2 MB, both held: 6 MB
        del a, b
        c = torch.empty(1250, 1000)  # 5 MB alone
        del c
    assert tb.cpu_allocator_peak(step) == 6_000_000


def test_largest_square_from_a_line_of_peak_against_pixels():
    # peak = 1 GB + 2e-6 GB per pixel: 24 GB at 11.5e6 pixels
    sides = [500, 1000, 2000]
    peaks = [1 + 2e-6 * s * s for s in sides]
    assert tb.largest_square(sides, peaks, 24.) == pytest.approx(11.5e6 ** 0.5)
    assert tb.largest_square([500], [1.5], 24.) is None


def test_benchmark_tool_writes_its_table(tmp_path):
    """The tool's backbone rows through fresh processes: each option's row, selective below
    plain in memory, the table's ratios against plain."""
    out = tmp_path / 'training'
    subprocess.run([sys.executable, 'tools/analysis_tools/benchmark_training.py', '--arch',
                    'n12', '--sizes', '96x128', '--options', 'plain', 'selective', '--models',
                    '--fit-sides', '--paired-rounds', '0', '--runs', '1', '--out', str(out)],
                   check=True)
    rows = list(csv.DictReader(open(f'{out}.csv')))
    assert [(r['part'], r['option'], r['height'], r['width']) for r in rows] == [
        ('backbone', 'plain', '96', '128'), ('backbone', 'selective', '96', '128')]
    plain, selective = (float(r['peak_gb']) for r in rows)
    assert selective < plain
    table = open(f'{out}.md').read().splitlines()
    assert table[2].endswith('| 1.00 | 1.00 |')
    assert table[3].split('|')[-2].strip() == f'{selective / plain:.2f}'
