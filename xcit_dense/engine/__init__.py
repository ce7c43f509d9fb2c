"""mmengine helpers: launching on CPU or GPU, data checks, weights_only-safe checkpoints,
resumable runs."""
from .checkpoints import AtomicLocalBackend, find_resume_checkpoint, is_complete_checkpoint
from .data_check import DatasetNotFoundError, check_datasets_exist
from .hooks import NonFiniteLossError, NonFiniteLossHook, RNGStateHook
from .launch import (fall_back_from_sync_bn, finish_launch, load_run_config, make_resumable,
                     resolve_resume, select_metrics, setup_launch)
from .preflight import (UsageError, build_model, check_cfg_options, check_checkpoint_exists,
                        check_model_builds, short_errors)
from .safe_globals import allow_mmengine_checkpoint_classes
from .weights import (apply_deprecated_pretrained, load_checkpoint_strictly,
                      register_checkpoint_readers)

__all__ = ['AtomicLocalBackend', 'DatasetNotFoundError', 'NonFiniteLossError',
           'NonFiniteLossHook', 'RNGStateHook', 'UsageError',
           'allow_mmengine_checkpoint_classes', 'apply_deprecated_pretrained', 'build_model',
           'check_cfg_options', 'check_checkpoint_exists', 'check_datasets_exist',
           'check_model_builds', 'fall_back_from_sync_bn', 'find_resume_checkpoint',
           'finish_launch', 'is_complete_checkpoint', 'load_checkpoint_strictly',
           'load_run_config', 'make_resumable', 'register_checkpoint_readers',
           'resolve_resume', 'select_metrics', 'setup_launch', 'short_errors']
