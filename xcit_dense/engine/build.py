"""A config's model, built with the registry of its codebase (mmdet or mmseg, chosen by the
config's ``default_scope``), and dummy data samples to run it on: what the tools and the tests
share."""
import copy
import importlib
from typing import List, Union

from mmengine.config import Config
from mmengine.registry import DefaultScope, Registry
from mmengine.structures import BaseDataElement
from torch import nn

from .errors import UsageError
from .launch import fall_back_from_sync_bn

SCOPES = ('mmdet', 'mmseg')


def config_scope(cfg: Config) -> str:
    """The codebase a config runs in: its ``default_scope``, which must be 'mmdet' or 'mmseg'
    (a :class:`UsageError` naming the value otherwise)."""
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise UsageError(f"default_scope must be 'mmdet' or 'mmseg', got {scope!r}")
    return scope


def scope_models(scope: str) -> Registry:
    """The ``MODELS`` registry of a codebase ('mmdet' or 'mmseg')."""
    return importlib.import_module(f'{scope}.registry').MODELS


def build_model(cfg: Config) -> nn.Module:
    """Build ``cfg.model`` with the registry of the config's scope (mmdet or mmseg), from a
    copy: some constructors write into the config they are given (mmdet's ``DeformableDETR``
    sets ``share_pred_layer``, ``num_pred_layer`` and ``as_two_stage`` in its ``bbox_head``
    and refuses a config that already has them), so building must leave ``cfg`` as it was
    for the runner's own build."""
    scope = config_scope(cfg)
    with DefaultScope.overwrite_default_scope(scope):
        return scope_models(scope).build(copy.deepcopy(cfg.model))


def build_analysis_model(config: Union[str, Config]) -> nn.Module:
    """The model of a config (a file path, or a :class:`Config`, changed in place) in eval
    mode, for measuring or testing it: pretrained loading off (``model.backbone.init_cfg =
    None``) and SyncBN falling back to BN where it cannot run."""
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    cfg.model.backbone.init_cfg = None
    fall_back_from_sync_bn(cfg)
    return build_model(cfg).eval()


def dummy_data_samples(scope: str, height: int, width: int,
                       num: int = 1) -> List[BaseDataElement]:
    """``num`` empty data samples of a codebase (mmdet's ``DetDataSample``, mmseg's
    ``SegDataSample``) describing an unpadded, unscaled ``height`` x ``width`` image.

    Ours, not mmdet's ``mmdet.testing.demo_mm_inputs``: that one draws a random image of the
    full size and random ground truth (wasted at the sizes measured here) and describes the
    image as scaled by 1.1 x 1.2, which moves rescaled predictions; mmseg has no counterpart.
    """
    if scope == 'mmseg':
        from mmseg.structures import SegDataSample as Sample
    else:
        from mmdet.structures import DetDataSample as Sample
    shape = (height, width)
    meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape, batch_input_shape=shape,
                scale_factor=(1., 1.), padding_size=[0, 0, 0, 0])
    return [Sample(metainfo=meta) for _ in range(num)]
