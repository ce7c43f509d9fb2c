"""Weights into a run's model: mmengine's checkpoint readers, the release's deprecated
``model.pretrained`` and strict whole-model loading (evaluation, inference, export)."""
import warnings
from typing import Any, Dict, Optional

from mmengine.dist import barrier, get_dist_info
from mmengine.model import is_model_wrapper
from mmengine.runner import CheckpointLoader

from ..checkpoint import (CheckpointMismatchError, CheckpointReadError, describe_checkpoint,
                          load_state_dict_file)
from .data_check import job_rank
from .errors import UsageError
from .preflight import check_model_builds


def load_from_local(filename: str, map_location: Any = None) -> Dict:
    """mmengine's reader for local files, replaced by xcit_dense's: weights_only loading,
    ``.safetensors`` files, errors that name the file. Ours: mmengine's leaves
    ``weights_only`` to torch's default (off before torch 2.6), reads no safetensors and its
    errors do not name the file."""
    return load_state_dict_file(filename, map_location=map_location or 'cpu')


def load_from_http(filename: str, map_location: Any = None) -> Dict:
    """mmengine's reader for http(s) URLs, replaced by xcit_dense's: the file is downloaded
    once into torch's hub cache (by the first process of a distributed run while the others
    wait), read like a local file, and a failed download names the URL and the reason. Ours:
    mmengine's has the same gaps as its local reader's (see :func:`load_from_local`)."""
    rank, world_size = get_dist_info()
    if rank == 0:
        checkpoint = load_state_dict_file(filename, map_location=map_location or 'cpu')
    if world_size > 1:
        barrier()
        if rank > 0:
            checkpoint = load_state_dict_file(filename, map_location=map_location or 'cpu')
    return checkpoint


def register_checkpoint_readers() -> None:
    """Make every checkpoint that mmengine reads from a path or URL (``load_from``,
    ``--resume``, ``init_cfg`` of any module, the inferencers) go through xcit_dense's reader."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://'), loader=load_from_http,
                                     force=True)


# Checkpoint names that mmengine resolves to other backbones' weights (ResNet, HRNet, ViT...),
# which OpenMMLab base configs set as model.pretrained.
OTHER_BACKBONE_SCHEMES = ('open-mmlab://', 'openmmlab://', 'torchvision://', 'modelzoo://',
                          'mmcls://', 'mmpretrain://', 'pavi://')


def apply_deprecated_pretrained(cfg, from_command_line: bool = False) -> None:
    """Support the release's ``model.pretrained`` (mmdet 2.x / mmseg 0.x), in place.

    mmdet 3.x's detectors no longer take ``pretrained`` and mmseg 1.x passes it to the
    backbone, where it clashes with the backbone's own ``init_cfg``. So a checkpoint given as
    ``--cfg-options model.pretrained=PATH_OR_URL`` (``from_command_line``) replaces the
    backbone's ``init_cfg`` checkpoint, with a warning naming the 3.x way, and
    ``model.pretrained=None`` there drops whatever the config sets. ``model.pretrained`` set by
    a config file moves to the backbone's ``init_cfg`` when that has none.

    Raises:
        UsageError: The config file sets both (one of them would be ignored), or sets, for an
            XCiT or CrossViT backbone, a checkpoint name of another backbone's
            (``open-mmlab://resnet50_v1c``, as mmseg's PSPNet, DeepLabV3 and FCN bases do),
            which it inherits when XCiT replaces that backbone.
    """
    model = cfg.get('model')
    if not model:
        return
    pretrained = model.get('pretrained')
    backbone = model.get('backbone')
    if 'pretrained' in model:
        if cfg.get('default_scope') == 'mmseg':
            model['pretrained'] = None
        else:
            del model['pretrained']
    if pretrained is None or backbone is None:
        return
    fix = ('set model.pretrained=None in your config (or --cfg-options model.pretrained=None) '
           "and give the backbone's weights with model.backbone.init_cfg")
    ours = str(backbone.get('type', '')).split('.')[-1] in ('XCiT', 'CrossViT')
    if not from_command_line and ours and str(pretrained).startswith(OTHER_BACKBONE_SCHEMES):
        raise UsageError(f'model.pretrained={pretrained!r}, set by the config or a base config '
                         f'it inherits, names another backbone\'s checkpoint, which '
                         f'{backbone["type"]} cannot load: {fix}')
    init_cfg = backbone.get('init_cfg')
    if not from_command_line and (init_cfg or backbone.get('pretrained')):
        raise UsageError(f'the config sets both model.pretrained ({pretrained!r}) and the '
                         f'backbone\'s weights (model.backbone.init_cfg={init_cfg!r}), so one '
                         f'would be ignored: {fix}, or drop model.backbone.init_cfg')
    backbone['init_cfg'] = dict(type='Pretrained', checkpoint=pretrained)
    backbone.pop('pretrained', None)
    warnings.warn(
        f'model.pretrained is deprecated (mmdet 2.x / mmseg 0.x); the backbone loads '
        f'{pretrained!r} through model.backbone.init_cfg, which is how to set it from now on: '
        f'--cfg-options model.backbone.init_cfg.checkpoint={pretrained}')


def check_test_checkpoint(cfg, path: str) -> Optional[str]:
    """``tools/test.py``'s checkpoint, checked before the run prints anything: read safely and
    loaded strictly into the config's model, by the first process of a job (its error ends
    the job; see :func:`~xcit_dense.engine.data_check.job_rank`); the config's EMA hooks are
    dropped in every process (:func:`drop_ema_hooks`). Returns what is evaluated, to tell the
    user (``None`` where EMA plays no part, and in the other processes).

    Raises:
        CheckpointReadError: The file cannot be read safely; names it.
        CheckpointMismatchError: It does not fit the model; names it, as
            :func:`checkpoint_mismatch`.
    """
    if job_rank() != 0:
        drop_ema_hooks(cfg, {})
        return None
    checkpoint = load_state_dict_file(path)
    load_model_strictly(check_model_builds(cfg), checkpoint, path,
                        'be evaluated at its initialisation')
    return drop_ema_hooks(cfg, checkpoint)


def _is_ema_hook(hook_type) -> bool:
    """Whether a hook config's ``type`` (a registered name, scoped or not, or a class) is
    mmengine's ``EMAHook`` or a subclass of it."""
    from mmengine.hooks import EMAHook
    from mmengine.registry import HOOKS
    cls = HOOKS.get(hook_type) if isinstance(hook_type, str) else hook_type
    return isinstance(cls, type) and issubclass(cls, EMAHook)


def drop_ema_hooks(cfg, checkpoint: Dict) -> Optional[str]:
    """Evaluate the weights that a checkpoint's ``state_dict`` holds, without the config's
    ``EMAHook``, in place; returns what is evaluated, to tell the user (``None`` where EMA
    plays no part).

    mmengine's ``EMAHook`` saves the averaged weights as the checkpoint's ``state_dict`` (the
    raw ones go to ``ema_state_dict``), so at test time it only swaps a second copy of the
    same weights in: mmdet's test tool evaluates exactly ``state_dict``. The hook also builds
    that copy in ``before_run``, before any checkpoint is loaded, and cannot map its keys
    through a TTA wrapper; without it, strict loading puts ``state_dict`` in the model, which
    is what gets evaluated.
    """
    hooks = list(cfg.get('custom_hooks') or [])
    kept = [h for h in hooks if not _is_ema_hook(h.get('type'))]
    has_ema = 'ema_state_dict' in checkpoint
    if len(kept) == len(hooks) and not has_ema:
        return None
    cfg.custom_hooks = kept
    if has_ema:
        return ('the EMA-averaged weights (the checkpoint\'s state_dict, where EMAHook saves '
                'them; the raw weights in ema_state_dict are not used)')
    return ('the checkpoint\'s state_dict, where EMAHook saves the averaged weights; the file '
            'has no ema_state_dict (published checkpoints keep state_dict only), so whether '
            'they are an average cannot be told from it')


def checkpoint_mismatch(model, name: str, checkpoint: Dict, error: Exception,
                        consequence: str) -> CheckpointMismatchError:
    """The error for a whole-model checkpoint that does not fit the config's ``model``: the
    file, what it holds (library versions, modules, classes), what would go wrong and torch's
    list of missing, unexpected and other-shaped keys."""
    return CheckpointMismatchError(
        f'Checkpoint {name} does not fit the {type(model).__name__} of the config, so part of '
        f'the model would {consequence}. The checkpoint is {describe_checkpoint(checkpoint)}.'
        f'\n{error}')


def load_model_strictly(model, checkpoint: Dict, name: str,
                        consequence: str = 'run at its initialisation') -> None:
    """Load a whole-model (detector or segmentor) checkpoint, already read, into ``model``,
    insisting that every tensor of the model is in it with the right shape (mmengine's
    loading would only warn).

    Raises:
        CheckpointMismatchError: Names ``name`` (the file), as :func:`checkpoint_mismatch`.
    """
    from mmengine.runner.checkpoint import _load_checkpoint_to_model
    try:
        _load_checkpoint_to_model(model, checkpoint, strict=True)
    except CheckpointMismatchError as e:  # a backbone's own check, which cannot know the file
        raise CheckpointMismatchError(f'Checkpoint {name}: {e}') from e
    except RuntimeError as e:
        raise checkpoint_mismatch(model, name, checkpoint, e, consequence) from e


def load_checkpoint_strictly(runner, filename: str) -> None:
    """Load a whole-model checkpoint for evaluation through the runner (so hooks such as EMA
    see it), insisting that every tensor of the model is in it with the right shape.

    Raises:
        CheckpointMismatchError: Names the file, as :func:`checkpoint_mismatch`.
    """
    try:
        runner.load_checkpoint(filename, map_location='cpu', strict=True)
    except (CheckpointMismatchError, CheckpointReadError):
        raise  # a backbone's own check, or the file's reader: they name the file already
    except RuntimeError as e:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        raise checkpoint_mismatch(model, filename, load_state_dict_file(filename), e,
                                  'be evaluated at its initialisation') from e
