"""Resuming runs: checkpoints written atomically (the ``atomic_local`` file backend, so a
killed run never leaves a truncated file under a checkpoint's name), and finding the checkpoint
to resume from (the last complete one in the work dir). Pretrained weights are read by
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

ATOMIC_BACKEND = 'atomic_local'


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put`` is atomic: the bytes go to a temporary file
    in the same folder, are flushed to disk, and only then renamed over the target. A process
    killed mid-write leaves the previous file (or none) and a stray ``.tmp`` file, never a
    truncated checkpoint under the real name."""

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
    if it is complete; otherwise, with a warning naming the broken file, the newest complete
    ``epoch_N.pth`` / ``iter_N.pth``. None when there is no complete checkpoint."""
    named = None
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip() or None
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
