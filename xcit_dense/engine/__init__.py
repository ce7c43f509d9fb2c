"""mmengine helpers: launching on CPU or GPU, data checks, weights_only-safe checkpoints."""
from .data_check import DatasetNotFoundError, check_datasets_exist
from .launch import fall_back_from_sync_bn, load_run_config, setup_launch
from .safe_globals import allow_mmengine_checkpoint_classes

__all__ = ['DatasetNotFoundError', 'allow_mmengine_checkpoint_classes', 'check_datasets_exist',
           'fall_back_from_sync_bn', 'load_run_config', 'setup_launch']
