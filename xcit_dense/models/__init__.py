from .pyramid import SimplePyramid
from .xcit import ARCH_ZOO, XCA, LPI, XCABlock, XCiT, resolve_arch

__all__ = ['ARCH_ZOO', 'LPI', 'SimplePyramid', 'XCA', 'XCABlock', 'XCiT', 'resolve_arch']
