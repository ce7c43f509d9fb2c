from .toy_coco import CATEGORIES as TOY_COCO_CLASSES
from .toy_coco import generate_toy_coco

__all__ = ['TOY_COCO_CLASSES', 'generate_toy_coco']
