"""mmengine helpers for the tools and the tests, one module per job, listed from the bottom up:
each imports only modules listed before it (``tests/test_imports.py`` fails on any import
cycle in the package):

* ``errors``: the error types (``UsageError``, ``DatasetNotFoundError``,
  ``NonFiniteLossError``) and the one-line report of a user's mistake (``short_errors``);
* ``data_check``: the datasets a config reads, checked before a run starts;
* ``tta``: test-time augmentation of a config (``tools/test.py --tta``; the mask-aware merge
  is :mod:`xcit_dense.tta_det`'s);
* ``launch``: adapting a config to the machine (CPU or GPU, one process or many: the SyncBN
  fallback, gloo, AMP) and ending a CPU distributed run;
* ``build``: a config's model, built with the registry of its codebase (mmdet or mmseg), and
  dummy data samples to run it on;
* ``preflight``: a model that does not build and backbone weights that cannot be read or do
  not fit, reported before a run starts;
* ``weights``: the release's ``model.pretrained``, mmengine's checkpoint readers replaced by
  weights_only ones, and strict loading of trained checkpoints;
* ``config``: the command-line options the training and test tools share, loading a run's
  config with them (``--cfg-options`` keys checked), ``--vis-backend`` and ``--eval``;
* ``resume``: checkpoints written atomically, the checkpoint to resume from, and a training
  config set up for both;
* ``hooks``: random states in checkpoints, and a stop at the first non-finite loss;
* ``optim``: the optimizer constructors that exempt the parameters the backbone names from
  weight decay and, optionally, decay the learning rate layer by layer; a table of a model's
  parameter groups (``tools/analysis_tools/print_param_groups.py``);
* ``resolution``, ``slicing``, ``inference``: the test resolution, sliced inference, and
  images, folders and URLs through mmdet's ``DetInferencer`` / mmseg's ``MMSegInferencer``
  with strict checkpoints, readable pictures and JSON (``tools/infer.py``);
* ``safe_globals``: mmengine's checkpoint classes allow-listed for weights_only loading;
* ``distributed``: DistributedDataParallel for CPU processes (gloo);
* ``stages``, ``slice_benchmark``, ``train_benchmark``: what the benchmark tools measure with.
"""
from .build import (build_analysis_model, build_model, config_scope, dummy_data_samples,
                    scope_models)
from .config import (add_vis_backends, check_cfg_options, load_run_config, parse_run_args,
                     select_metrics)
from .data_check import check_datasets_exist
from .errors import DatasetNotFoundError, NonFiniteLossError, UsageError, short_errors
from .hooks import NonFiniteLossHook, RNGStateHook
from .inference import build_inferencer, run_inference
from .launch import check_amp_available, fall_back_from_sync_bn, finish_launch, setup_launch
from .preflight import check_backbone_weights, check_checkpoint_exists, check_model_builds
from .resume import (AtomicLocalBackend, find_resume_checkpoint, is_complete_checkpoint,
                     make_resumable, resolve_resume)
from .safe_globals import allow_mmengine_checkpoint_classes
from .tta import apply_tta, tta_module_as_model
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
