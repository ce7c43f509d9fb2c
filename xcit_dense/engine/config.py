"""A run's command line and config: the options that the training and test tools share,
loading the config with their overrides (``--cfg-options`` keys checked against the config),
the extra visualizer backends of ``tools/train.py`` and the metrics of ``tools/test.py
--eval``."""
import argparse
import difflib
import importlib.util
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import Config, DictAction

from .errors import UsageError
from .weights import apply_deprecated_pretrained

# What the release's ``tools/test.py --eval`` names, by the 3.x evaluator that computes it.
EVAL_METRICS = {'CocoMetric': ('metric', ('bbox', 'segm', 'proposal', 'proposal_fast')),
                'IoUMetric': ('iou_metrics', ('mIoU', 'mDice', 'mFscore'))}

# ``tools/train.py --vis-backend NAME``: mmengine's visualizer backend and the package it needs.
VIS_BACKENDS = {'tensorboard': ('TensorboardVisBackend', 'tensorboard'),
                'wandb': ('WandbVisBackend', 'wandb')}


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


def check_cfg_options(cfg, options: Optional[dict], allow_new_keys: bool = False) -> None:
    """Refuse ``--cfg-options`` keys that the config does not have (a typo would otherwise
    add a key nobody reads), naming the closest existing one; ``allow_new_keys`` lets users
    add keys on purpose. Ours: mmengine's ``Config.merge_from_dict`` adds any key it is given,
    silently."""
    tree = cfg.to_dict()
    for key in options or {}:
        node, path = tree, []
        for part in key.split('.'):
            if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node, path = node[int(part)], path + [part]
            elif isinstance(node, dict) and part in node:
                node, path = node[part], path + [part]
            elif allow_new_keys:
                break
            else:
                here = '.'.join(path) or 'the top level'
                siblings = list(node) if isinstance(node, dict) else []
                close = difflib.get_close_matches(part, siblings, n=1)
                if close:
                    hint = f"did you mean {'.'.join(path + close)}?"
                elif isinstance(node, (list, tuple)):
                    hint = f'{here} has {len(node)} items'
                elif not isinstance(node, dict):
                    hint = f'{here} is {node!r}'
                else:
                    hint = f'keys at {here}: {", ".join(sorted(siblings))}'
                raise UsageError(f'--cfg-options {key}: the config has no key '
                                 f"{'.'.join(path + [part])}; {hint} (--allow-new-keys adds "
                                 'keys on purpose)')


def load_run_config(path: str, cfg_options: Optional[dict] = None,
                    work_dir: Optional[str] = None, launcher: str = 'none',
                    allow_new_keys: bool = False) -> Config:
    """A config with command-line overrides applied and a work dir set (the command line's,
    the config's, or ``work_dirs/<config name>``), as mmdet's and mmseg's tools do. The
    release's ``model.pretrained`` is honoured (see
    :func:`~xcit_dense.engine.weights.apply_deprecated_pretrained`); a ``cfg_options`` key
    that the config does not have is an error unless ``allow_new_keys``
    (:func:`check_cfg_options`)."""
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
