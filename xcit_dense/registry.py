"""Registers xcit_dense's modules into other libraries' registries: the backbones, the
``LoadImageChecked`` and ``ResizeToResolution`` transforms and the optimizer constructors (no
weight decay, layer-wise learning-rate decay) into mmdet's and mmseg's; subclasses of their
FPN, RPN head, Semantic FPN decoder and ``EncoderDecoder``, under the same names, whose CPU
inference of large maps streams (:mod:`xcit_dense.streamed_det`,
:mod:`xcit_dense.streamed_seg`); mmdet's ``SlicedDetector`` (:mod:`xcit_dense.sliced_det`)
and ``DetTTAModelWithMasks`` (:mod:`xcit_dense.tta_det`); the CPU DDP wrapper and training
hooks into mmengine's MODEL_WRAPPERS and HOOKS; and its checkpoint reader as mmengine's
reader of paths and URLs.

Imported by ``xcit_dense/__init__.py`` when mmengine is installed, so configs only need
``custom_imports=dict(imports=['xcit_dense'], allow_failed_imports=False)`` and
``backbone=dict(type='XCiT', ...)`` (or ``'CrossViT'``) under ``default_scope='mmdet'`` or
``'mmseg'``.
"""
import importlib

from mmengine.registry import HOOKS, MODEL_WRAPPERS

from .datasets.transforms import LoadImageChecked, ResizeToResolution
from .engine.distributed import CPUDistributedDataParallel
from .engine.hooks import NonFiniteLossHook, RNGStateHook
from .engine.optim import LayerDecayOptimWrapperConstructor, NoDecayOptimWrapperConstructor
from .engine.weights import register_checkpoint_readers
from .models import CrossViT, XCiT

BACKBONES = {'XCiT': XCiT, 'CrossViT': CrossViT}


def register_all() -> list:
    """Register the backbones, ``LoadImageChecked`` and the optimizer constructors in each
    installed OpenMMLab codebase, and the CPU DDP wrapper, training hooks and checkpoint reader
    in mmengine; returns the codebases' names."""
    register_checkpoint_readers()
    MODEL_WRAPPERS.register_module(module=CPUDistributedDataParallel, force=True)
    for hook in (RNGStateHook, NonFiniteLossHook):
        HOOKS.register_module(module=hook, force=True)
    scopes = []
    for scope in ('mmdet', 'mmseg'):
        try:
            registries = importlib.import_module(f'{scope}.registry')
        except ImportError:
            continue
        for name, module in BACKBONES.items():
            registries.MODELS.register_module(name=name, module=module, force=True)
        for transform in (LoadImageChecked, ResizeToResolution):
            registries.TRANSFORMS.register_module(module=transform, force=True)
        for constructor in (NoDecayOptimWrapperConstructor, LayerDecayOptimWrapperConstructor):
            registries.OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=constructor, force=True)
        # mmdet's and mmseg's own names: their inference of large maps streams
        streamed = importlib.import_module(f'.streamed_{scope[2:]}', __package__)
        for module in streamed.STREAMED_MODULES:
            registries.MODELS.register_module(module=module, force=True)
        if scope == 'mmdet':  # modules built on mmdet's, importable only where it is
            from .sliced_det import SlicedDetector  # --slice: detectors run on slices
            from .tta_det import DetTTAModelWithMasks  # --tta: masks merged too
            for module in (SlicedDetector, DetTTAModelWithMasks):
                registries.MODELS.register_module(module=module, force=True)
        scopes.append(scope)
    return scopes
