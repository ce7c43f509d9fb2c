from .crossvit import BranchPyramid, CrossViT
from .pyramid import SimplePyramid
from .xcit import ARCH_ZOO, XCA, LPI, XCABlock, XCiT, resolve_arch

__all__ = ['ARCH_ZOO', 'BranchPyramid', 'CrossViT', 'LPI', 'SimplePyramid', 'XCA', 'XCABlock',
           'XCiT', 'resolve_arch']
