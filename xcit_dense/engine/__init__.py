from .safe_globals import allow_mmengine_checkpoint_classes

__all__ = ['allow_mmengine_checkpoint_classes']
