"""A run's command line and config: the options that the training and test tools share,
loading the config with their overrides, and adapting it to the machine: CPU or GPU, one
process or many."""
import argparse
import atexit
import contextlib
import copy
import functools
import importlib.util
import os
import os.path as osp
import warnings
from typing import Iterator, List, Optional

import torch
from mmengine.config import Config, ConfigDict, DictAction

from ..checkpoint.io import load_state_dict_file
from .data_check import innermost_dataset
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
    pretrained_given = 'model.pretrained' in cfg_options  # None too: drops the config's
    pretrained = cfg_options.pop('model.pretrained', None)
    check_cfg_options(cfg, cfg_options, allow_new_keys)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if pretrained_given:
        cfg.model['pretrained'] = pretrained
    apply_deprecated_pretrained(cfg, from_command_line=pretrained_given)
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


@functools.lru_cache(maxsize=None)
def _mask_tta_model() -> str:
    """Register (once) and name mmdet's ``DetTTAModel`` extended to instance masks.

    mmdet 3.3's ``DetTTAModel`` merges boxes only and asserts that the predictions carry no
    masks. Here each view's masks (already pasted at the original image size by the detector)
    are flipped back with their view, the boxes of all views go through the same class-wise NMS
    as mmdet's, and every kept box keeps the mask that its own view predicted (mmdet 2.x instead
    re-ran the mask head on the merged boxes and averaged the views' mask probabilities).
    Predictions without masks are merged by ``DetTTAModel`` unchanged."""
    from mmcv.ops import batched_nms
    from mmdet.models.test_time_augs import DetTTAModel
    from mmdet.registry import MODELS
    from mmengine.structures import InstanceData

    flip_dims = {'horizontal': (-1,), 'vertical': (-2,), 'diagonal': (-2, -1)}

    class DetTTAModelWithMasks(DetTTAModel):
        def _merge_single_sample(self, data_samples):
            if data_samples[0].pred_instances.get('masks', None) is None:
                return super()._merge_single_sample(data_samples)
            preds = [s.pred_instances for s in data_samples]
            masks = [p.masks.flip(flip_dims[s.flip_direction]) if s.metainfo.get('flip')
                     else p.masks for p, s in zip(preds, data_samples)]
            bboxes, scores = self.merge_aug_bboxes([p.bboxes for p in preds],
                                                   [p.scores for p in preds],
                                                   [s.metainfo for s in data_samples])
            if bboxes.numel() == 0:
                return data_samples[0]
            labels = torch.cat([p.labels for p in preds])
            dets, keep = batched_nms(bboxes, scores, labels, self.tta_cfg.nms)
            dets, keep = dets[:self.tta_cfg.max_per_img], keep[:self.tta_cfg.max_per_img]
            merged = data_samples[0]
            merged.pred_instances = InstanceData(bboxes=dets[:, :-1], scores=dets[:, -1],
                                                 labels=labels[keep],
                                                 masks=torch.cat(masks)[keep])
            return merged

    MODELS.register_module(module=DetTTAModelWithMasks, force=True)
    return DetTTAModelWithMasks.__name__


def apply_tta(cfg) -> None:
    """``tools/test.py --tta``, in place, as mmdet's and mmseg's test tools do it: the test
    set goes through the config's ``tta_pipeline`` (``TestTimeAug``: every image in several
    views, e.g. scales x flips) and the model is wrapped by its ``tta_model`` (mmdet's
    ``DetTTAModel``: boxes of all views flipped back, then NMS; mmseg's ``SegTTAModel``: the
    views' class probabilities averaged), which holds the config's model as ``module``.
    mmdet's ``DetTTAModel`` becomes :func:`its extension to instance masks <_mask_tta_model>`,
    since mmdet's own refuses models that predict masks (Mask R-CNN). A config without
    ``tta_pipeline`` or ``tta_model`` is a :class:`UsageError` naming what is missing."""
    missing = [key for key in ('tta_model', 'tta_pipeline') if not cfg.get(key)]
    if missing:
        raise UsageError(f'--tta needs {" and ".join(missing)} in the config, which has '
                         f'{"neither" if len(missing) == 2 else "none"} (see '
                         'configs/_base_/datasets/ for both)')
    tta_model = copy.deepcopy(cfg.tta_model)
    if tta_model.get('type') in ('DetTTAModel', 'mmdet.DetTTAModel'):
        tta_model['type'] = _mask_tta_model()
    if str(cfg.model.get('type')).rpartition('.')[2] == 'EncoderDecoder':
        cfg.model['banded_pixels'] = None  # SegTTAModel averages the views' full logits
    cfg.model = ConfigDict(**tta_model, module=cfg.model)
    innermost_dataset(cfg.test_dataloader.dataset).pipeline = copy.deepcopy(cfg.tta_pipeline)


@contextlib.contextmanager
def tta_module_as_model(runner) -> Iterator[None]:
    """While this context is open, ``runner.model`` is the model inside the runner's TTA
    wrapper (mmengine's ``BaseTTAModel``, whose weights live under ``module.``), so that a
    checkpoint of the plain model loads into it strictly and fully, through the runner
    (:func:`~xcit_dense.engine.weights.load_checkpoint_strictly`). Without a TTA wrapper it
    does nothing. (A distributed wrapper around the TTA wrapper is looked through.)"""
    from mmengine.model import BaseTTAModel, is_model_wrapper
    model = runner.model
    tta = model.module if is_model_wrapper(model) else model
    if not isinstance(tta, BaseTTAModel):
        yield
        return
    runner.model = tta.module
    try:
        yield
    finally:
        runner.model = model


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
