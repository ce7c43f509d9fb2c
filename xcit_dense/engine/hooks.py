"""mmengine hooks that make long runs reproducible across restarts and stop them cleanly."""
import math
import random
from typing import Dict, Optional

import numpy as np
import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.runner import IterBasedTrainLoop

from .errors import NonFiniteLossError
from .resume import find_resume_checkpoint

__all__ = ['NonFiniteLossError', 'NonFiniteLossHook', 'RNGStateHook']


class RNGStateHook(Hook):
    """Saves the random states (torch, numpy, Python) in every checkpoint and puts them back
    when training restarts from it, so that a resumed run draws the same augmentations and
    samples as an uninterrupted one.

    The states are taken when a checkpoint is written and restored just before the next
    training batch is loaded, in the uninterrupted run too: whatever validation consumed in
    between then does not make the two runs differ. For iteration-based loops the restore
    waits until mmengine has skipped the batches already trained.

    Exact resumes also need data workers that do not carry random state across epochs:
    ``num_workers=0``, or workers without ``persistent_workers``.

    Ours: mmengine's checkpoints carry the seed (``meta.seed``), not the generators' states.
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._pending: Optional[Dict] = None

    @staticmethod
    def _capture() -> Dict:
        np_state = np.random.get_state()
        return dict(torch=torch.get_rng_state(),
                    numpy=dict(keys=torch.from_numpy(np_state[1].astype(np.int64)),
                               pos=int(np_state[2]), has_gauss=int(np_state[3]),
                               cached_gaussian=float(np_state[4])),
                    python=random.getstate())

    @staticmethod
    def _restore(state: Dict) -> None:
        torch.set_rng_state(state['torch'])
        np_state = state['numpy']
        np.random.set_state(('MT19937', np_state['keys'].numpy().astype(np.uint32),
                             np_state['pos'], np_state['has_gauss'],
                             np_state['cached_gaussian']))
        version, internal, gauss = state['python']
        random.setstate((version, tuple(internal), gauss))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = self._capture()
        checkpoint['rng_state'] = state
        self._pending = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get('rng_state')

    def before_train_epoch(self, runner) -> None:
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop):
            # after this hook the loop skips loop.iter batches; restore when the next is loaded
            loop.dataloader_iterator = _RestoreBeforeBatch(loop.dataloader_iterator, self,
                                                           skip=loop.iter)
        elif self._pending is not None:
            self._restore(self._pending)
            self._pending = None

    def restore_pending(self) -> None:
        """Put back the random state of the last checkpoint written or loaded, once."""
        if self._pending is not None:
            self._restore(self._pending)
            self._pending = None


class _RestoreBeforeBatch:
    """Wraps an iteration-based loop's data iterator: after ``skip`` batches, and before each
    batch that follows a checkpoint, the hook's saved random state is put back."""

    def __init__(self, iterator, hook: RNGStateHook, skip: int) -> None:
        self._iterator = iterator
        self._hook = hook
        self._skip = skip

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip > 0:
            self._skip -= 1
        else:
            self._hook.restore_pending()
        return next(self._iterator)

    def __getattr__(self, name):
        return getattr(self._iterator, name)


class NonFiniteLossHook(Hook):
    """Stops training at the first iteration whose loss is NaN or infinite, before any
    checkpoint of the corrupted weights can be written, with a message that names the
    iteration, the non-finite loss terms, whether the input batch itself was non-finite, its
    images, and the last good checkpoint to resume from.

    In distributed runs every process stops together (the check is all-reduced), since one
    process's NaN reaches every model through the gradient all-reduce.

    Ours, not a subclass of mmdet's ``CheckInvalidLossHook``: that one exists only where mmdet
    is installed (this hook serves mmseg configs too) and asserts on the local total loss every
    50 iterations, leaving nothing of it to reuse.
    """

    priority = 'ABOVE_NORMAL'  # before CheckpointHook (VERY_LOW) and LoggerHook (BELOW_NORMAL)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        outputs = outputs or {}
        values = {k: float(v.detach()) if torch.is_tensor(v) else float(v)
                  for k, v in outputs.items() if 'loss' in k}
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        flag = torch.tensor([1.0 if bad else 0.0])
        if dist.is_available() and dist.is_initialized():
            backend = dist.get_backend()
            device = 'cuda' if backend == 'nccl' else 'cpu'
            flag = flag.to(device)
            dist.all_reduce(flag)
        if not flag.item():
            return
        iteration = runner.iter + 1  # runner.iter counts finished iterations
        where = f'iteration {iteration}'
        if not isinstance(runner.train_loop, IterBasedTrainLoop):
            where += f' (epoch {runner.epoch + 1}, batch {batch_idx + 1})'
        terms = ', '.join(f'{k}={v}' for k, v in bad.items()) or 'on another process'
        inputs = (data_batch or {}).get('inputs') if isinstance(data_batch, dict) else None
        finite_input = all(torch.isfinite(x.float()).all() for x in inputs) if inputs else None
        images = [s.metainfo.get('img_path') for s in (data_batch or {}).get('data_samples', [])
                  if hasattr(s, 'metainfo')] if isinstance(data_batch, dict) else []
        last = find_resume_checkpoint(runner.work_dir)
        raise NonFiniteLossError(
            f'Training stopped at {where}: non-finite loss ({terms}). '
            + ('The input batch itself holds NaN or infinite values. ' if finite_input is False
               else '')
            + (f'Images of the batch: {images}. ' if images else '')
            + (f'The last good checkpoint is {last}; fix the cause (learning rate, data, '
               'fp16 loss scale) and resume from it with --resume.' if last else
               'No checkpoint was written before it.'))
