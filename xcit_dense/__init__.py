"""xcit_dense: XCiT (and CrossViT, for comparison) backbones for detection and segmentation on
OpenMMLab 3.x.

Importing the package registers its modules into mmdet and mmseg (when installed) and
allow-lists mmengine's checkpoint classes for torch's ``weights_only`` loading.
"""
import importlib.util
import os

# OpenCV reads its pixel limit (2**30) when it is imported: raise it before mmcv imports it, so
# that images of more than a gigapixel decode (their size is checked where they are read).
os.environ.setdefault('OPENCV_IO_MAX_IMAGE_PIXELS', str(2**40))

from .checkpoint import load_crossvit_checkpoint, load_xcit_checkpoint  # noqa: E402
from .models import CrossViT, XCiT  # noqa: E402
from .version import __version__  # noqa: E402

if importlib.util.find_spec('mmengine') is not None:
    from .engine import allow_mmengine_checkpoint_classes
    from .registry import register_all

    register_all()
    allow_mmengine_checkpoint_classes()

__all__ = ['CrossViT', 'XCiT', 'load_crossvit_checkpoint', 'load_xcit_checkpoint',
           '__version__']
