"""mmengine helpers for the tools and the tests:

* ``build``: a config's model, built with the registry of its codebase (mmdet or mmseg), and
  dummy data samples to run it on;
* ``launch``: the command-line options the training and test tools share, loading a run's
  config with them, and adapting it to CPU or GPU, one process or many;
* ``preflight``: command-line mistakes reported before a run starts, in one short message;
* ``data_check``: the datasets a config reads, checked before a run starts;
* ``resume``: checkpoints written atomically, and the checkpoint to resume from;
* ``hooks``: random states in checkpoints, and a stop at the first non-finite loss;
* ``optim``: the optimizer constructors that exempt the parameters the backbone names from
  weight decay and, optionally, decay the learning rate layer by layer; a table of a model's
  parameter groups (``tools/analysis_tools/print_param_groups.py``);
* ``inference``: images, folders and URLs through mmdet's ``DetInferencer`` / mmseg's
  ``MMSegInferencer`` with strict checkpoints, readable pictures and JSON (``tools/infer.py``);
* ``weights``: the release's ``model.pretrained`` and strict loading of trained checkpoints;
* ``safe_globals``: mmengine's checkpoint classes allow-listed for weights_only loading;
* ``distributed``: DistributedDataParallel for CPU processes (gloo).
"""
from .build import (build_analysis_model, build_model, config_scope, dummy_data_samples,
                    scope_models)
from .data_check import DatasetNotFoundError, check_datasets_exist
from .hooks import NonFiniteLossError, NonFiniteLossHook, RNGStateHook
from .inference import build_inferencer, run_inference
from .launch import (add_vis_backends, apply_tta, check_amp_available, fall_back_from_sync_bn,
                     finish_launch, load_run_config, make_resumable, parse_run_args,
                     resolve_resume, select_metrics, setup_launch, tta_module_as_model)
from .preflight import (UsageError, check_backbone_weights, check_cfg_options,
                        check_checkpoint_exists, check_model_builds, short_errors)
from .resume import AtomicLocalBackend, find_resume_checkpoint, is_complete_checkpoint
from .safe_globals import allow_mmengine_checkpoint_classes
from .weights import (apply_deprecated_pretrained, check_test_checkpoint, drop_ema_hooks,
                      load_checkpoint_strictly, load_model_strictly,
                      register_checkpoint_readers)

__all__ = ['add_vis_backends', 'apply_tta', 'AtomicLocalBackend', 'DatasetNotFoundError',
           'NonFiniteLossError', 'NonFiniteLossHook', 'RNGStateHook', 'UsageError',
           'allow_mmengine_checkpoint_classes', 'apply_deprecated_pretrained',
           'build_analysis_model', 'build_inferencer', 'build_model', 'check_amp_available',
           'check_backbone_weights', 'check_test_checkpoint',
           'check_cfg_options', 'check_checkpoint_exists', 'check_datasets_exist',
           'check_model_builds', 'config_scope', 'drop_ema_hooks', 'dummy_data_samples',
           'fall_back_from_sync_bn', 'find_resume_checkpoint', 'finish_launch',
           'is_complete_checkpoint', 'load_checkpoint_strictly', 'load_model_strictly',
           'load_run_config', 'make_resumable', 'parse_run_args', 'register_checkpoint_readers',
           'resolve_resume', 'run_inference', 'scope_models', 'select_metrics', 'setup_launch',
           'short_errors', 'tta_module_as_model']
