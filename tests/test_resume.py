"""Crashes and resume: a run killed with SIGKILL (mid-epoch, or while writing a checkpoint)
and resumed with ``tools/train.py --resume`` ends with the same weights and metrics as an
uninterrupted run; broken or unsafe checkpoints are never used."""
import glob
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

import xcit_dense  # noqa: F401  (allow-lists mmengine's checkpoint classes)
from xcit_dense.engine import AtomicLocalBackend, find_resume_checkpoint, resolve_resume

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_config(cfg, path, kill_hook=None):
    cfg.custom_imports = dict(imports=['xcit_dense', 'crash_hooks'], allow_failed_imports=False)
    if kill_hook:
        cfg.custom_hooks = [kill_hook]
    cfg.default_hooks.logger.interval = 1
    cfg.dump(str(path))
    return str(path)


def train(config, work_dir, *args):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, 'tests'))
    return subprocess.run([sys.executable, 'tools/train.py', config, '--work-dir',
                           str(work_dir), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)


def final_state(path):
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


def last_metrics(work_dir, key):
    """The last logged value of ``key`` over all the runs in ``work_dir``."""
    values = []
    for path in sorted(glob.glob(os.path.join(str(work_dir), '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            values += [json.loads(line)[key] for line in f if key in line]
    return values[-1]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope='module')
def det_run_cfg(toy_cfg, toy_coco_root):
    def build(work_dir, epochs=3):
        cfg = toy_cfg('det', toy_coco_root, work_dir, 'resume')
        cfg.train_cfg.max_epochs, cfg.train_cfg.val_interval = epochs, epochs
        cfg.default_hooks.checkpoint.update(interval=1, max_keep_ckpts=-1)
        return cfg
    return build


@pytest.fixture(scope='module')
def uninterrupted_det(det_run_cfg, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('det_uninterrupted')
    config = write_config(det_run_cfg(work_dir), work_dir / 'cfg.py')
    proc = train(config, work_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work_dir


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(det_run_cfg, uninterrupted_det,
                                                                tmp_path):
    # 8 images, batch 4: 2 iterations per epoch; iteration 3 is the second of epoch 2
    config = write_config(det_run_cfg(tmp_path), tmp_path / 'cfg.py',
                          dict(type='SigkillBeforeIterHook', at=3))
    proc = train(config, tmp_path)
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(tmp_path / 'epoch_2.pth')
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_1.pth')

    config = write_config(det_run_cfg(tmp_path), tmp_path / 'cfg.py')
    proc = train(config, tmp_path, '--resume')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'resumed' in proc.stdout + proc.stderr
    assert_same_weights(final_state(uninterrupted_det / 'epoch_3.pth'),
                        final_state(tmp_path / 'epoch_3.pth'))
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert last_metrics(tmp_path, key) == last_metrics(uninterrupted_det, key)


def test_sigkill_while_writing_a_checkpoint_keeps_the_last_complete_one(
        det_run_cfg, uninterrupted_det, tmp_path):
    config = write_config(det_run_cfg(tmp_path), tmp_path / 'cfg.py',
                          dict(type='SigkillWhileSavingHook', at=2))
    proc = train(config, tmp_path)
    assert proc.returncode == -signal.SIGKILL
    # the epoch-2 bytes were on disk, but never under the checkpoint's name
    assert glob.glob(str(tmp_path / 'epoch_2.pth.*.tmp'))
    assert not os.path.exists(tmp_path / 'epoch_2.pth')
    with open(tmp_path / 'last_checkpoint') as f:
        assert f.read().strip() == str(tmp_path / 'epoch_1.pth')

    config = write_config(det_run_cfg(tmp_path), tmp_path / 'cfg.py')
    proc = train(config, tmp_path, '--resume')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_weights(final_state(uninterrupted_det / 'epoch_3.pth'),
                        final_state(tmp_path / 'epoch_3.pth'))


def test_sigkill_then_resume_of_an_iteration_based_run(toy_cfg, toy_ade_root, tmp_path):
    def config(work_dir, kill_hook=None):
        cfg = toy_cfg('seg', toy_ade_root, work_dir, 'resume')
        cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = 5, 2
        cfg.train_dataloader.batch_size = 4
        cfg.default_hooks.checkpoint.update(interval=2, max_keep_ckpts=-1)
        return write_config(cfg, work_dir / 'cfg.py', kill_hook)

    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    assert train(config(tmp_path / 'a'), tmp_path / 'a').returncode == 0
    proc = train(config(tmp_path / 'b', dict(type='SigkillBeforeIterHook', at=3)),
                 tmp_path / 'b')
    assert proc.returncode == -signal.SIGKILL
    proc = train(config(tmp_path / 'b'), tmp_path / 'b', '--resume')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_weights(final_state(tmp_path / 'a' / 'iter_5.pth'),
                        final_state(tmp_path / 'b' / 'iter_5.pth'))
    assert last_metrics(tmp_path / 'a', 'mIoU') == last_metrics(tmp_path / 'b', 'mIoU')


def test_resume_skips_a_truncated_checkpoint(tmp_path):
    torch.save({'state_dict': {'w': torch.ones(3)}}, tmp_path / 'epoch_1.pth')
    torch.save({'state_dict': {'w': torch.zeros(1000)}}, tmp_path / 'epoch_2.pth')
    data = (tmp_path / 'epoch_2.pth').read_bytes()
    (tmp_path / 'epoch_2.pth').write_bytes(data[:len(data) // 2])
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_2.pth'))
    with pytest.warns(UserWarning, match=rf'Checkpoint {tmp_path / "epoch_2.pth"} is missing '
                      'or incomplete'):
        assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_1.pth')


class _Cfg(dict):
    __getattr__ = dict.get

    def __setattr__(self, key, value):
        self[key] = value


def test_resume_refuses_checkpoints_that_carry_code_or_are_broken(tmp_path):
    marker = tmp_path / 'pwned'

    class Payload:
        def __reduce__(self):
            return (os.system, (f'touch {marker}',))

    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': Payload()}, evil)
    with pytest.raises(RuntimeError, match='weights_only loading does not allow, so it was '
                       'refused and nothing in it was executed'):
        resolve_resume(_Cfg(work_dir=str(tmp_path)), str(evil))
    assert not marker.exists()

    truncated = tmp_path / 'truncated.pth'
    torch.save({'state_dict': {'w': torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(RuntimeError, match='is not a readable PyTorch checkpoint'):
        resolve_resume(_Cfg(work_dir=str(tmp_path)), str(truncated))


def test_atomic_put_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / 'epoch_1.pth'
    target.write_bytes(b'old and complete')
    backend = AtomicLocalBackend()

    def interrupted(src, dst):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, 'replace', interrupted)
    with pytest.raises(KeyboardInterrupt):
        backend.put(b'new', target)
    assert target.read_bytes() == b'old and complete'
    assert os.listdir(tmp_path) == ['epoch_1.pth']  # the partial file was removed
    monkeypatch.undo()
    backend.put(b'new', target)
    assert target.read_bytes() == b'new'
