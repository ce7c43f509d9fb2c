"""xcit_dense: XCiT (and CrossViT, for comparison) backbones for detection and segmentation on
OpenMMLab 3.x.

Importing the package registers its modules into mmdet and mmseg (when installed) and
allow-lists mmengine's checkpoint classes for torch's ``weights_only`` loading.
"""
import importlib.util

from .checkpoint import load_crossvit_checkpoint, load_xcit_checkpoint
from .models import CrossViT, XCiT
from .version import __version__

if importlib.util.find_spec('mmengine') is not None:
    from .engine import allow_mmengine_checkpoint_classes
    from .registry import register_all

    register_all()
    allow_mmengine_checkpoint_classes()

__all__ = ['CrossViT', 'XCiT', 'load_crossvit_checkpoint', 'load_xcit_checkpoint',
           '__version__']
