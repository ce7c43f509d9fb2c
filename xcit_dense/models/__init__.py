"""The backbones (XCiT, CrossViT), their shared base class, pyramid adapters and streamed CPU
inference; each family's presets are ``xcit.ARCH_ZOO`` and ``crossvit.ARCH_ZOO``."""
from .base import DenseBackbone
from .crossvit import CrossViT, resolve_crossvit_arch
from .pyramid import BranchPyramid, SimplePyramid
from .xcit import XCA, LPI, XCABlock, XCiT, resolve_arch

__all__ = ['BranchPyramid', 'CrossViT', 'DenseBackbone', 'LPI', 'SimplePyramid', 'XCA',
           'XCABlock', 'XCiT', 'resolve_arch', 'resolve_crossvit_arch']
