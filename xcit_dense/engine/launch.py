"""Launching a run on this machine: CPU or GPU, one process or many. SyncBN falls back to BN
where it cannot run, distributed runs on CPU use gloo (and the CPU DDP wrapper), AMP is refused
without a GPU, and a CPU distributed run ends cleanly."""
import atexit
import os
import warnings

import torch

from .errors import UsageError


def _replace_sync_bn(node) -> int:
    """Replace ``type='SyncBN'`` by ``'BN'`` everywhere in a config; returns how many."""
    count = 0
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += _replace_sync_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += _replace_sync_bn(value)
    return count


def fall_back_from_sync_bn(cfg, launcher: str = 'none') -> None:
    """SyncBN needs several GPU processes: on CPU or in a single process it becomes BN, with a
    warning (the statistics then come from each process's own batch).

    Ours, not mmengine's ``revert_sync_batchnorm``: that one converts a built model, which the
    runner does only when it is not distributed, while CPU runs with gloo are distributed and
    the runner builds and wraps the model in DDP before any hook could convert it; rewriting
    the config before the runner builds covers every case, and the tools (``print_config.py``
    too) see and report the change before anything is built."""
    cuda = torch.cuda.is_available()
    if cuda and launcher != 'none':
        return
    replaced = _replace_sync_bn(cfg.model)
    if replaced:
        where = 'on CPU' if not cuda else 'in a single process'
        warnings.warn(f'SyncBN needs distributed GPU training; {replaced} SyncBN layers '
                      f'run as plain BN {where}.')


def check_amp_available(cfg) -> None:
    """AMP needs a CUDA GPU: a config that asks for it on CPU is a :class:`UsageError`, not a
    silent fp32 run."""
    if (cfg.get('optim_wrapper') or {}).get('type') == 'AmpOptimWrapper' and not (
            torch.cuda.is_available()):
        raise UsageError('AMP (--amp or AmpOptimWrapper) needs a CUDA GPU; none is '
                         'available. Train without --amp on CPU.')


def setup_launch(cfg, launcher: str = 'none') -> None:
    """Make ``cfg`` run on this machine, in place.

    * SyncBN falls back to BN where it cannot run (:func:`fall_back_from_sync_bn`).
    * Distributed runs on CPU use gloo; the process group is created here because mmengine's
      initialisation calls ``torch.cuda.set_device``, and the model is wrapped by
      :class:`~xcit_dense.engine.distributed.CPUDistributedDataParallel`, since torch's DDP
      rejects ``device_ids`` for CPU modules.
    """
    cuda = torch.cuda.is_available()
    distributed = launcher != 'none'
    fall_back_from_sync_bn(cfg, launcher)
    if cuda:
        return
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    if distributed:
        if launcher != 'pytorch':
            raise UsageError(f'On CPU, distributed training uses torchrun '
                             f"(--launcher pytorch), not --launcher {launcher}")
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group(backend='gloo')
            atexit.register(finish_launch)
        wrapper = dict(cfg.get('model_wrapper_cfg') or {})
        wrapper['type'] = 'CPUDistributedDataParallel'
        cfg.model_wrapper_cfg = wrapper
        os.environ.setdefault('LOCAL_RANK', '0')


def finish_launch() -> None:
    """End a CPU distributed run cleanly: wait for every process, then close the gloo group.
    A process that exits while another still talks to it makes that one abort at exit
    ("terminate called without an active exception") after a successful run."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == 'gloo':
        dist.barrier()
        dist.destroy_process_group()
