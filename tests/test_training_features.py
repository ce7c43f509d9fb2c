"""Long-run conveniences of mmdet/mmseg with our backbone: TensorBoard (and W&B) logging from
``tools/train.py --vis-backend``, and the model EMA hook from a config."""
import glob
import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def short_seg_run(toy_cfg, data_root, work_dir, iters=2):
    """The toy Semantic FPN for a few iterations, no validation, a checkpoint every one."""
    cfg = toy_cfg('seg', data_root, work_dir, 'features')
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters + 1)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.update(interval=1, max_keep_ckpts=-1)
    return cfg


def test_vis_backend_tensorboard_logs_what_the_local_backend_logs(toy_cfg, toy_ade_root,
                                                                  tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    config = tmp_path / 'seg.py'
    short_seg_run(toy_cfg, toy_ade_root, tmp_path / 'work', iters=3).dump(str(config))
    proc = subprocess.run([sys.executable, 'tools/train.py', str(config), '--vis-backend',
                           'tensorboard'], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    vis_data, = glob.glob(str(tmp_path / 'work/*/vis_data'))
    with open(os.path.join(vis_data, 'scalars.json')) as f:
        local = [json.loads(line) for line in f]
    events = EventAccumulator(vis_data)
    events.Reload()
    for tag in ('loss', 'lr', 'decode.loss_ce'):
        logged = [(s.step, s.value) for s in events.Scalars(tag)]
        expected = [(r['step'], r[tag]) for r in local if tag in r]
        assert [s for s, _ in logged] == [s for s, _ in expected] == [1, 2, 3]
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6), tag


# tools/train.py run as if wandb were not installed, whether it is or not
WITHOUT_WANDB = '''
import importlib.util, runpy, sys
find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name == 'wandb' else find_spec(name, *a)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def test_vis_backend_without_its_package_stops_before_the_run():
    proc = subprocess.run([sys.executable, '-c', WITHOUT_WANDB, 'tools/train.py',
                           'configs/toy/fpn_xcit-n12-p8_toy-ade-128x128.py', '--vis-backend',
                           'wandb'], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        'train.py: error: --vis-backend wandb needs the wandb package, which is not installed: '
        'pip install wandb')


def test_ema_hook_from_the_config_averages_the_weights(toy_cfg, toy_ade_root, tmp_path):
    """``custom_hooks=[dict(type='EMAHook')]`` (mmengine's) with XCiT: after two steps the
    saved parameters are the exponential moving average (1 - m) * w1 + m * w2 of the raw ones,
    which the checkpoint keeps in ``ema_state_dict``, and the buffers the latest ones."""
    from mmengine.runner import Runner
    cfg = short_seg_run(toy_cfg, toy_ade_root, tmp_path)
    cfg.custom_hooks = [*cfg.custom_hooks, dict(type='EMAHook', momentum=0.25)]
    runner = Runner.from_cfg(cfg)
    runner.train()
    params = {name for name, _ in runner.model.named_parameters()}
    first, second = (torch.load(tmp_path / f'iter_{i}.pth', weights_only=True)
                     for i in (1, 2))
    raw1, raw2 = first['ema_state_dict'], second['ema_state_dict']
    assert int(raw2['steps']) == 2
    averaged = 0
    for name, ema in second['state_dict'].items():
        if not ema.is_floating_point() or name.startswith('data_preprocessor'):
            continue
        w1, w2 = raw1['module.' + name], raw2['module.' + name]
        assert torch.equal(first['state_dict'][name], w1), name  # the first step copies
        if name not in params:  # buffers (BatchNorm statistics) are copied, not averaged
            assert torch.equal(ema, w2), name
            continue
        assert torch.allclose(ema, 0.75 * w1 + 0.25 * w2, rtol=1e-6, atol=1e-8), name
        averaged += name.startswith('backbone.') and not torch.equal(w1, w2)
    assert averaged > 100  # backbone tensors that trained and were averaged
