"""Smoke test of the backbone benchmark (not a timed test), and its analytic FLOP count."""
import csv
import importlib.util
import os
import subprocess
import sys

import torch

from xcit_dense.models import XCiT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, 'tools/analysis_tools/benchmark_backbone.py')


def load_tool(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_writes_csv_and_plot_for_every_model(tmp_path):
    proc = subprocess.run(
        [sys.executable, TOOL, '--archs', 'nano_12:16', '--crossvit-archs', 'tiny', '--sizes',
         '96x128', '--runs', '1', '--warmup', '0', '--out-dir', str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / 'benchmark_cpu_fp32.csv') as f:
        rows = list(csv.DictReader(f))
    assert {(r['model'], r['size']) for r in rows} == {
        (m, '96x128') for m in ('xcit', 'timm', 'vit', 'swin', 'crossvit')}
    assert all(float(r['time_s']) > 0 for r in rows)
    xcit = [r for r in rows if r['model'] == 'xcit']
    assert all(0 < float(r['mm_efficiency']) for r in xcit)
    assert (tmp_path / 'benchmark_cpu_fp32.png').stat().st_size > 10_000
    assert 'nano_12_p16 96x128: timm time x' in proc.stdout

    # --replot redraws from the CSV alone, with the same ratios
    png = tmp_path / 'benchmark_cpu_fp32.png'
    png.unlink()
    replot = subprocess.run([sys.executable, TOOL, '--replot', str(png.with_suffix('.csv'))],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert replot.returncode == 0, replot.stderr[-2000:]
    assert png.stat().st_size > 10_000
    ratios = proc.stdout[proc.stdout.index('ratios'):proc.stdout.index('growth')]
    assert ratios in replot.stdout


def test_analytic_flops_match_a_traced_count():
    from mmengine.analysis import FlopAnalyzer
    bench = load_tool('benchmark_backbone', TOOL)
    flops = load_tool('get_flops', os.path.join(ROOT, 'tools/analysis_tools/get_flops.py'))
    for arch, patch in (('nano_12', 8), ('tiny_24', 16)):
        model = XCiT(arch, patch_size=patch).eval()
        x = torch.randn(1, 3, 96, 160)
        analyzer = FlopAnalyzer(model, (x,))
        analyzer.set_op_handle('aten::baddbmm', flops.baddbmm_flop_jit)
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        traced = analyzer.total()
        analytic = bench.xcit_macs(model.arch, patch, 96, 160)
        # the trace also counts norms and the tiny d x d attention products
        assert abs(traced - analytic) / analytic < 0.03, (arch, traced, analytic)
