"""Resuming runs: checkpoints written atomically (the ``atomic_local`` file backend, so a
killed run never leaves a truncated file under a checkpoint's name), finding the checkpoint to
resume from (the last complete one in the work dir), and a training config set up for both
(:func:`make_resumable`, :func:`resolve_resume`). Pretrained weights are read by
:mod:`xcit_dense.checkpoint`."""
import glob
import os
import os.path as osp
import re
import tempfile
import warnings
import zipfile
from typing import Optional, Union

from mmengine.fileio import LocalBackend, register_backend
from mmengine.runner import find_latest_checkpoint

from ..checkpoint.io import load_state_dict_file

ATOMIC_BACKEND = 'atomic_local'


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put`` is atomic: the bytes go to a temporary file
    in the same folder, are flushed to disk, and only then renamed over the target. A process
    killed mid-write leaves the previous file (or none) and a stray ``.tmp`` file, never a
    truncated checkpoint under the real name. Ours: mmengine's ``LocalBackend.put`` writes the
    target file in place."""

    def put(self, obj: bytes, filepath: Union[str, os.PathLike]) -> None:
        filepath = os.fspath(filepath)
        folder = osp.dirname(osp.abspath(filepath))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=osp.basename(filepath) + '.',
                                   suffix='.tmp')
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        except BaseException:
            if osp.exists(tmp):
                os.remove(tmp)
            raise

    def put_text(self, obj: str, filepath: Union[str, os.PathLike],
                 encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a whole ``torch.save`` file (its zip index, written last, is
    readable and lists the pickle), without loading its tensors."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(name.endswith('data.pkl') for name in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _step(path: str) -> int:
    """The epoch or iteration number in an ``epoch_N.pth`` / ``iter_N.pth`` name."""
    match = re.search(r'(\d+)\.pth$', osp.basename(path))
    return int(match[1]) if match else -1


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint to resume a run in ``work_dir`` from: the one ``last_checkpoint`` names
    (mmengine's ``find_latest_checkpoint``) if it is complete; otherwise, with a warning naming
    the broken file, the newest complete ``epoch_N.pth`` / ``iter_N.pth``. None when there is
    no complete checkpoint. (mmengine's finder trusts the name it reads: a run killed while
    writing that file would resume from a truncated one.)"""
    named = find_latest_checkpoint(work_dir) or None
    if named and is_complete_checkpoint(named):
        return named
    candidates = sorted(
        (p for p in glob.glob(osp.join(work_dir, '*.pth')) if _step(p) >= 0), key=_step,
        reverse=True)
    complete = next((p for p in candidates if is_complete_checkpoint(p)), None)
    broken = named or (candidates[0] if candidates and candidates[0] != complete else None)
    if broken and broken != complete:
        warnings.warn(f'Checkpoint {broken} is missing or incomplete (the run was probably '
                      f'killed while writing it); resuming from '
                      f'{complete or "scratch: no complete checkpoint found"} instead.')
    return complete


def make_resumable(cfg) -> None:
    """Make a training config survive kills and bad losses, in place, as ``tools/train.py``
    runs it (and ``print_config.py`` shows it): checkpoints are written atomically, carry the
    random states (:class:`~xcit_dense.engine.hooks.RNGStateHook`), and training stops at the
    first non-finite loss (:class:`~xcit_dense.engine.hooks.NonFiniteLossHook`). Our configs
    declare both hooks in ``configs/_base_/default_runtime.py``; a config that does not inherit
    it (a user's own) gets them here."""
    hooks = list(cfg.get('custom_hooks') or [])
    present = {h.get('type') for h in hooks}
    hooks += [dict(type=t) for t in ('RNGStateHook', 'NonFiniteLossHook') if t not in present]
    cfg.custom_hooks = hooks
    checkpoint = cfg.setdefault('default_hooks', {}).setdefault('checkpoint', {})
    if checkpoint and not checkpoint.get('backend_args'):
        checkpoint['backend_args'] = dict(backend=ATOMIC_BACKEND)


def resolve_resume(cfg, resume: Optional[str]) -> None:
    """Set ``cfg.resume``/``cfg.load_from`` for ``--resume`` (``'auto'``: the work dir's last
    complete checkpoint, see :func:`find_resume_checkpoint`; or a path, which must be a whole
    checkpoint). The checkpoint is read once with weights_only loading first, so a file that
    is not a checkpoint, is truncated or carries pickled code fails here, naming the file."""
    if resume is None:
        return
    path = find_resume_checkpoint(cfg.work_dir) if resume == 'auto' else resume
    if path is None:
        warnings.warn(f'--resume: no complete checkpoint in {cfg.work_dir}; training starts '
                      'from scratch.')
        cfg.resume, cfg.load_from = False, cfg.get('load_from')
        return
    load_state_dict_file(path)  # raises a clear error for a broken or unsafe file
    cfg.resume, cfg.load_from = True, path
