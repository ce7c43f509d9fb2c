"""Smoke test of the backbone benchmark (not a timed test), and its analytic FLOP count."""
import csv
import importlib.util
import os
import subprocess
import sys

import pytest
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
    """One row per model asked for, at the size asked for; the XCiT row's FLOPs are the
    analytic count and its rates are its own columns' quotients; what the tool prints (rows,
    ratios) and what it plots are the CSV's values, also when redrawn from the CSV alone."""
    from xcit_dense.models.xcit import resolve_arch
    bench = load_tool('benchmark_backbone', TOOL)
    proc = subprocess.run(
        [sys.executable, TOOL, '--archs', 'nano_12:16', '--crossvit-archs', 'tiny', '--sizes',
         '96x128', '--runs', '1', '--warmup', '0', '--out-dir', str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    csv_path = tmp_path / 'benchmark_cpu_fp32.csv'
    with open(csv_path) as f:
        assert next(csv.reader(f)) == [
            'model', 'arch', 'size', 'pixels', 'device', 'dtype', 'time_s', 'peak_mem_mb',
            'gflops', 'gflops_per_s', 'mm_gflops_per_s', 'mm_efficiency']
    rows = bench.read_csv(str(csv_path))
    assert sorted((r['model'], r['arch'], r['size'], r['pixels'], r['device'], r['dtype'])
                  for r in rows) == sorted(
        (model, arch, '96x128', 96 * 128, 'cpu', 'fp32') for model, arch in (
            ('xcit', 'nano_12_p16'), ('timm', 'nano_12_p16'), ('vit', 'nano_12_p16'),
            ('swin', 'swin_t'), ('crossvit', 'tiny_s8')))
    by_model = {r['model']: r for r in rows}
    xcit = by_model['xcit']
    # FLOPs: the analytic count of the trunk timed (no pyramid), checked against a traced
    # count below; the rates: quotients of the row's own columns
    assert xcit['gflops'] == pytest.approx(
        2 * bench.xcit_macs(resolve_arch('nano_12'), 16, 96, 128, pyramid=False) / 1e9,
        rel=1e-12)
    assert xcit['gflops_per_s'] == pytest.approx(xcit['gflops'] / xcit['time_s'], rel=1e-9)
    assert xcit['mm_efficiency'] == pytest.approx(
        xcit['gflops_per_s'] / xcit['mm_gflops_per_s'], rel=1e-9)
    assert all(r[key] == '' for r in rows if r['model'] != 'xcit'
               for key in ('gflops', 'gflops_per_s', 'mm_gflops_per_s', 'mm_efficiency'))
    # what it printed is what it wrote
    for r in rows:
        assert (f"  {r['model']:8s} {r['arch']:14s} {r['size']:>10s}: {r['time_s']:8.3f} s "
                f"{r['peak_mem_mb']:9.1f} MB") in proc.stdout, r
    for other in ('timm', 'vit'):
        o = by_model[other]
        assert (f"  nano_12_p16 96x128: {other} time x{o['time_s'] / xcit['time_s']:.2f}, "
                f"memory x{o['peak_mem_mb'] / max(xcit['peak_mem_mb'], 1e-6):.2f}"
                ) in proc.stdout
    assert (f"  nano_12_p16 96x128: {xcit['gflops_per_s']:.1f} GFLOP/s, "
            f"{100 * xcit['mm_efficiency']:.0f}% of torch.mm") in proc.stdout

    # --replot redraws from the CSV alone, with the same ratios, a figure of the plot's size
    png = tmp_path / 'benchmark_cpu_fp32.png'
    png.unlink()
    replot = subprocess.run([sys.executable, TOOL, '--replot', str(csv_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert replot.returncode == 0, replot.stderr[-2000:]
    from PIL import Image
    assert Image.open(png).size == (13 * 110, 5 * 110)  # figsize (13, 5) at 110 dpi
    ratios = proc.stdout[proc.stdout.index('ratios'):proc.stdout.index('growth')]
    assert ratios in replot.stdout
    # the plot's curves are the CSV's values: one per model and variant, time on the left,
    # peak memory on the right, against megapixels
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    plt.close('all')
    bench.plot(rows, str(tmp_path / 'again.png'))
    time_ax, mem_ax = plt.gcf().axes
    for ax, key in ((time_ax, 'time_s'), (mem_ax, 'peak_mem_mb')):
        curves = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
                  for line in ax.get_lines()}
        assert curves == {f"{r['model']} {r['arch']}": ([96 * 128 / 1e6], [max(r[key], 1e-3)])
                          for r in rows}
    plt.close('all')


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
