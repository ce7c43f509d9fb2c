"""A run's command line and config: the options that the training and test tools share,
loading the config with their overrides, and adapting it to the machine: CPU or GPU, one
process or many."""
import argparse
import atexit
import importlib.util
import os
import os.path as osp
import warnings
from typing import List, Optional

import torch
from mmengine.config import Config, DictAction

from ..checkpoint.io import load_state_dict_file
from .preflight import UsageError, check_cfg_options
from .resume import ATOMIC_BACKEND, find_resume_checkpoint
from .weights import apply_deprecated_pretrained

# What the release's ``tools/test.py --eval`` names, by the 3.x evaluator that computes it.
EVAL_METRICS = {'CocoMetric': ('metric', ('bbox', 'segm', 'proposal', 'proposal_fast')),
                'IoUMetric': ('iou_metrics', ('mIoU', 'mDice', 'mFscore'))}


def parse_run_args(parser: argparse.ArgumentParser,
                   cfg_options_example: Optional[str] = None) -> argparse.Namespace:
    """Add the options that ``tools/train.py`` and ``tools/test.py`` share to ``parser`` and
    parse the command line: ``--cfg-options`` (``--options``, mmseg 0.x's name, too; its help
    shows ``cfg_options_example`` if given), ``--allow-new-keys``, ``--launcher`` and
    ``--local_rank``/``--local-rank``, which sets ``LOCAL_RANK`` when the environment has none
    (launchers that pass the rank as an argument)."""
    example = f'e.g. {cfg_options_example}; ' if cfg_options_example else ''
    parser.add_argument('--cfg-options', '--options', nargs='+', action=DictAction,
                        dest='cfg_options', help='override config settings, key=value '
                        f'({example}--options: mmseg 0.x\'s name)')
    parser.add_argument('--allow-new-keys', action='store_true',
                        help='let --cfg-options add keys the config does not have')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def load_run_config(path: str, cfg_options: Optional[dict] = None,
                    work_dir: Optional[str] = None, launcher: str = 'none',
                    allow_new_keys: bool = False) -> Config:
    """A config with command-line overrides applied and a work dir set (the command line's,
    the config's, or ``work_dirs/<config name>``), as mmdet's and mmseg's tools do. The
    release's ``model.pretrained`` is honoured (see
    :func:`~xcit_dense.engine.weights.apply_deprecated_pretrained`); a ``cfg_options`` key
    that the config does not have is an error unless ``allow_new_keys``."""
    if not os.path.isfile(path):
        raise UsageError(f'config {path} does not exist')
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    cfg_options = dict(cfg_options or {})
    pretrained = cfg_options.pop('model.pretrained', None)
    check_cfg_options(cfg, cfg_options, allow_new_keys)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if pretrained is not None:
        cfg.model['pretrained'] = pretrained
    apply_deprecated_pretrained(cfg, from_command_line=pretrained)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


# ``tools/train.py --vis-backend NAME``: mmengine's visualizer backend and the package it needs.
VIS_BACKENDS = {'tensorboard': ('TensorboardVisBackend', 'tensorboard'),
                'wandb': ('WandbVisBackend', 'wandb')}


def add_vis_backends(cfg, names: List[str]) -> None:
    """Log scalars (losses, learning rate, metrics) and pictures to these visualizer backends
    too (mmengine's ``TensorboardVisBackend`` writes under ``WORK_DIR/TIMESTAMP/vis_data``,
    ``WandbVisBackend`` to Weights & Biases), beside the config's own. A backend whose package
    is not installed is an error before the run starts."""
    visualizer = cfg.get('visualizer')
    if visualizer is None:
        raise UsageError('--vis-backend needs a visualizer in the config (mmdet\'s and mmseg\'s '
                         'default_runtime.py have one)')
    backends = list(visualizer.get('vis_backends') or [])
    for name in names:
        backend, package = VIS_BACKENDS[name]
        if importlib.util.find_spec(package) is None:
            raise UsageError(f'--vis-backend {name} needs the {package} package, which is not '
                             f'installed: pip install {package}')
        if all(b.get('type') != backend for b in backends):
            backends.append(dict(type=backend))
    visualizer['vis_backends'] = backends


def select_metrics(cfg, metrics: List[str]) -> None:
    """The release's ``--eval bbox segm`` / ``--eval mIoU``: make the test evaluator compute
    exactly these metrics (mmdet's ``CocoMetric.metric``, mmseg's ``IoUMetric.iou_metrics``).
    A metric that the config's evaluators cannot compute is an error naming those they can."""
    evaluators = (cfg.test_evaluator if isinstance(cfg.test_evaluator, list)
                  else [cfg.test_evaluator])
    for evaluator in evaluators:
        key, valid = EVAL_METRICS.get(evaluator.get('type'), (None, ()))
        if key and set(metrics) <= set(valid):
            evaluator[key] = list(metrics)
            return
    known = {e.get('type'): EVAL_METRICS.get(e.get('type'), (None, ()))[1] for e in evaluators}
    raise ValueError(f'--eval {" ".join(metrics)}: the config\'s test evaluators cannot '
                     f'compute these; they are {known} (metrics each can compute)')


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
    warning (the statistics then come from each process's own batch)."""
    cuda = torch.cuda.is_available()
    if cuda and launcher != 'none':
        return
    replaced = _replace_sync_bn(cfg.model)
    if replaced:
        where = 'on CPU' if not cuda else 'in a single process'
        warnings.warn(f'SyncBN needs distributed GPU training; {replaced} SyncBN layers '
                      f'run as plain BN {where}.')


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


def setup_launch(cfg, launcher: str = 'none') -> None:
    """Make ``cfg`` run on this machine, in place.

    * SyncBN falls back to BN where it cannot run (:func:`fall_back_from_sync_bn`).
    * Distributed runs on CPU use gloo; the process group is created here because mmengine's
      initialisation calls ``torch.cuda.set_device``, and the model is wrapped by
      :class:`~xcit_dense.engine.distributed.CPUDistributedDataParallel`, since torch's DDP
      rejects ``device_ids`` for CPU modules.
    * AMP needs a GPU: asking for it on CPU is an error, not a silent fp32 run.
    """
    cuda = torch.cuda.is_available()
    distributed = launcher != 'none'
    fall_back_from_sync_bn(cfg, launcher)
    if (cfg.get('optim_wrapper') or {}).get('type') == 'AmpOptimWrapper' and not cuda:
        raise RuntimeError('AMP (--amp or AmpOptimWrapper) needs a CUDA GPU; none is '
                           'available. Train without --amp on CPU.')
    if cuda:
        return
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    if distributed:
        if launcher != 'pytorch':
            raise RuntimeError(f'On CPU, distributed training uses torchrun '
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
