"""Mistakes on the command line are reported first, in one short message naming the culprit,
and the launch scripts share the CPU cores among processes."""
import os
import re
import subprocess
import sys

import pytest

import xcit_dense  # noqa: F401
from xcit_dense.engine import UsageError, load_run_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEG = os.path.join(ROOT, 'configs/toy/fpn_xcit-n12-p8_toy-ade-128x128.py')


def run_tool(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)


def test_unknown_cfg_options_key_stops_before_the_run_with_the_closest_key():
    proc = run_tool('tools/train.py', SEG, '--cfg-options', 'train_cfg.max_iter=8')
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        'train.py: error: --cfg-options train_cfg.max_iter: the config has no key '
        'train_cfg.max_iter; did you mean train_cfg.max_iters? (--allow-new-keys adds keys on '
        'purpose)')
    assert 'System environment' not in proc.stdout + proc.stderr  # before the banner
    assert 'Traceback' not in proc.stderr


def test_model_and_checkpoint_mistakes_are_one_line(tmp_path):
    proc = run_tool('tools/test.py', SEG, str(tmp_path / 'missing.pth'))
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f'test.py: error: checkpoint {tmp_path / "missing.pth"} does not exist')
    proc = run_tool('tools/train.py', SEG, '--cfg-options', 'model.backbone.arch=small12')
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(
        "train.py: error: the model of the config does not build: Unknown XCiT arch "
        "'small12'; valid names are ['large_24', 'medium_24', 'nano_12', 'small_12'")
    assert 'System environment' not in proc.stdout + proc.stderr


def test_amp_on_cpu_is_one_line_error(tmp_path):
    config = 'configs/mask_rcnn/mask-rcnn_xcit-s12-p8_fpn_amp-ms-crop-3x_coco.py'
    proc = run_tool('tools/train.py', config, '--work-dir', str(tmp_path / 'w'))
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert proc.stderr.splitlines()[-1] == ('train.py: error: AMP (--amp or AmpOptimWrapper) '
                                            'needs a CUDA GPU; none is available. Train '
                                            'without --amp on CPU.')


@pytest.mark.parametrize('key,message', [
    ('model.backbone.patchsize', 'the config has no key model.backbone.patchsize; did you mean '
                                 'model.backbone.patch_size?'),
    ('model.backbone.init_cfg.checkpoint', 'the config has no key '
                                           'model.backbone.init_cfg.checkpoint; '
                                           'model.backbone.init_cfg is None'),
    ('train_dataloader.dataset.pipeline.9.type', 'the config has no key '
                                                 'train_dataloader.dataset.pipeline.9; '
                                                 'train_dataloader.dataset.pipeline has 4 items'),
])
def test_cfg_options_keys_must_exist_unless_allowed(key, message):
    with pytest.raises(UsageError, match=re.escape(f'--cfg-options {key}: {message} '
                                                   '(--allow-new-keys adds keys on purpose)')):
        load_run_config(SEG, {key: 8})
    cfg = load_run_config(SEG, {'model.backbone.patchsize': 8, 'train_cfg.max_iters': 7},
                          allow_new_keys=True)
    assert cfg.model.backbone.patchsize == 8 and cfg.train_cfg.max_iters == 7


@pytest.mark.parametrize('user_threads,nproc,expected', [
    (None, 2, max(1, os.cpu_count() // 2)), (None, 64, 1), ('3', 2, 3)])
def test_dist_scripts_share_the_cores_among_cpu_processes(tmp_path, user_threads, nproc,
                                                          expected):
    """Without OMP_NUM_THREADS, each of N CPU processes gets cores / N threads (torchrun's
    default, one each, leaves cores idle; more than cores / N oversubscribes them)."""
    stub = tmp_path / 'python'
    stub.write_text('#!/bin/sh\necho "threads=$OMP_NUM_THREADS"\n')
    stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != 'OMP_NUM_THREADS'}
    env['PYTHON'] = str(stub)
    env['PATH'] = '/usr/bin:/bin'  # no nvidia-smi: a CPU machine
    if user_threads:
        env['OMP_NUM_THREADS'] = user_threads
    for script in (['tools/dist_train.sh', SEG, str(nproc)],
                   ['tools/dist_test.sh', SEG, 'ckpt.pth', str(nproc)]):
        proc = subprocess.run(['bash', *script], cwd=ROOT, capture_output=True, text=True,
                              env=env)
        assert proc.stdout.strip() == f'threads={expected}', proc.stderr


def test_launch_scripts_pass_the_tool_its_arguments(tmp_path):
    """The dist_* and slurm_* scripts run one launcher (dist_run.sh, slurm_run.sh): each
    gives its tool the launcher and the user's arguments in order."""
    for name in ('python', 'srun'):  # stubs that print what they were given
        stub = tmp_path / name
        stub.write_text('#!/bin/sh\necho "$@"\n')
        stub.chmod(0o755)
    env = dict(os.environ, PYTHON=str(tmp_path / 'python'), OMP_NUM_THREADS='1',
               PATH=f'{tmp_path}:/usr/bin:/bin')
    torchrun = ('-m torch.distributed.run --nnodes=1 --node_rank=0 --master_addr=127.0.0.1 '
                '--master_port=29500 --nproc_per_node=2 tools/')
    srun = ('-p gpu --job-name=job --gres=gpu:8 --ntasks=8 --ntasks-per-node=8 '
            '--cpus-per-task=5 --kill-on-bad-exit=1 python -u tools/')
    cases = {
        ('dist_train.sh', 'c.py', '2', '--amp'):
            torchrun + 'train.py --launcher pytorch c.py --amp',
        ('dist_test.sh', 'c.py', 'e.pth', '2', '--tta', '--out', 'r.pkl'):
            torchrun + 'test.py --launcher pytorch c.py e.pth --tta --out r.pkl',
        ('slurm_train.sh', 'gpu', 'job', 'c.py', 'work', '--amp'):
            srun + 'train.py --launcher=slurm c.py --work-dir=work --amp',
        ('slurm_test.sh', 'gpu', 'job', 'c.py', 'e.pth', '--tta'):
            srun + 'test.py --launcher=slurm c.py e.pth --tta',
    }
    for (script, *args), expected in cases.items():
        proc = subprocess.run(['bash', f'tools/{script}', *args], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == expected, script


def test_readme_says_how_to_run_the_tools_and_where_the_demo_pictures_are():
    """The CPU set-up (docs/get_started.md) says how to run the tools in .venv, and names the
    folder that mmseg's visualizer writes the segmentation demo's pictures to (the toy training
    tests check that folder)."""
    with open(os.path.join(ROOT, 'docs', 'get_started.md')) as f:
        readme = f.read()
    with open(os.path.join(ROOT, 'Makefile')) as f:
        makefile = f.read()
    assert '`source .venv/bin/activate`' in readme
    assert '`PYTHON=.venv/bin/python\ntools/dist_train.sh CONFIG 2`' in readme
    assert '`work_dirs/demo_seg/vis/vis_data/vis_image/`' in readme
    assert '$(DEMO_SEG_DIR)/vis/vis_data/vis_image/' in makefile


class _Payload:
    """Pickled code: unpickling it would create ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_unsafe_and_foreign_checkpoints_are_one_line_errors_before_the_banner(
        tmp_path, toy_ade_root):
    """A checkpoint carrying pickled code is refused in one line, nothing in it run, by the
    test tool, the converter and a backbone's init_cfg; a checkpoint of another model is
    refused by the test tool before the runner prints its banner."""
    import torch
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': _Payload(marker)}, evil)
    data = ['--cfg-options', f'test_dataloader.dataset.data_root={toy_ade_root}']
    refusal = (f"'{evil}' holds Python objects that weights_only loading does not allow, so "
               'it was refused and nothing in it was executed.')
    runs = {
        'test.py': run_tool('tools/test.py', SEG, str(evil), *data),
        'xcit2mmdet.py': run_tool('tools/model_converters/xcit2mmdet.py', str(evil),
                                  str(tmp_path / 'out.pth')),
        # the release's way to name the backbone's ImageNet weights, which go to its init_cfg
        'train.py': run_tool('tools/train.py', SEG, '--work-dir', str(tmp_path / 'w'),
                             '--cfg-options', f'model.pretrained={evil}'),
    }
    for tool, proc in runs.items():
        assert proc.returncode == 2 and 'Traceback' not in proc.stderr, (tool, proc.stderr)
        error = [line for line in proc.stderr.splitlines() if line.startswith(f'{tool}: error:')]
        assert len(error) == 1, (tool, proc.stderr)
        assert error[0].startswith(f'{tool}: error: CheckpointReadError: {refusal}'), error
        assert 'System environment' not in proc.stdout + proc.stderr, tool
    assert not marker.exists()
    assert not (tmp_path / 'w').exists()  # the training run wrote nothing

    # a detector's checkpoint given to a segmentation config
    from xcit_dense.engine import build_analysis_model
    det = build_analysis_model(os.path.join(
        ROOT, 'configs/toy/mask-rcnn_xcit-n12-p8_fpn-64_toy-shapes.py'))
    torch.save({'state_dict': det.state_dict()}, tmp_path / 'det.pth')
    proc = run_tool('tools/test.py', SEG, str(tmp_path / 'det.pth'), *data)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert (f'\ntest.py: error: CheckpointMismatchError: Checkpoint {tmp_path / "det.pth"} '
            'does not fit the EncoderDecoder of the config') in proc.stderr
    assert proc.stdout == '' and 'System environment' not in proc.stderr  # no banner


PSPNET_WITH_XCIT = """
_base_ = ['mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py']
custom_imports = dict(imports=['xcit_dense'], allow_failed_imports=False)
model = dict({pretrained}
             backbone=dict(_delete_=True, type='XCiT', arch='nano_12', patch_size=8,
                           out_strides=(8,)),
             decode_head=dict(in_channels=128, in_index=0),
             auxiliary_head=dict(in_channels=128, in_index=0))
"""


def test_inherited_pretrained_of_another_backbone_is_a_one_line_error(tmp_path):
    """mmseg's PSPNet base sets model.pretrained='open-mmlab://resnet50_v1c': with XCiT swapped
    in, that is an error naming the fix before anything runs, and the fix works, in the config
    and from the command line (model.pretrained=None used to be dropped there, keeping the
    ResNet checkpoint)."""
    config = tmp_path / 'pspnet_xcit.py'
    config.write_text(PSPNET_WITH_XCIT.format(pretrained=''))
    proc = run_tool('tools/train.py', str(config), '--work-dir', str(tmp_path / 'w'))
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "train.py: error: model.pretrained='open-mmlab://resnet50_v1c', set by the config or a "
        "base config it inherits, names another backbone's checkpoint, which XCiT cannot "
        'load: set model.pretrained=None in your config (or --cfg-options '
        "model.pretrained=None) and give the backbone's weights with "
        'model.backbone.init_cfg')
    assert not (tmp_path / 'w').exists()
    cfg = load_run_config(str(config), {'model.pretrained': None})
    assert cfg.model.pretrained is None and cfg.model.backbone.get('init_cfg') is None
    config.write_text(PSPNET_WITH_XCIT.format(pretrained='pretrained=None,'))
    cfg = load_run_config(str(config))
    assert cfg.model.pretrained is None and cfg.model.backbone.get('init_cfg') is None
