"""Train a detector (mmdet) or a segmentor (mmseg) from a config, on CPU or GPU.

    python tools/train.py configs/maskrcnn_xcit_s12_p8_coco.py [--work-dir DIR] [--resume]
    torchrun --nproc_per_node 8 tools/train.py CONFIG --launcher pytorch   # or dist_train.sh

The release's training options are accepted as they are: ``--seed 0 --deterministic`` and
``--cfg-options model.pretrained=IMAGENET_CHECKPOINT`` (``--options`` in mmseg 0.x).
"""
import argparse
import os

from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import xcit_dense  # noqa: F401  (registers modules, allow-lists mmengine checkpoint classes)
from xcit_dense.engine import (add_vis_backends, check_amp_available, check_backbone_weights,
                               check_checkpoint_exists, check_datasets_exist,
                               check_model_builds, finish_launch, load_run_config,
                               make_resumable, parse_run_args, resolve_resume, setup_launch,
                               short_errors)
from xcit_dense.engine.config import VIS_BACKENDS


def parse_args():
    parser = argparse.ArgumentParser(description='Train a detector or segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (GPU)')
    parser.add_argument('--vis-backend', nargs='+', choices=sorted(VIS_BACKENDS), default=[],
                        help='also log losses, LR and metrics to TensorBoard (under '
                        'WORK_DIR/TIMESTAMP/vis_data) or Weights & Biases')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the LR by the actual over the config\'s batch size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or, without a path, from the last '
                        'complete checkpoint in the work dir')
    parser.add_argument('--seed', type=int, help='random seed (sets randomness.seed)')
    parser.add_argument('--deterministic', action='store_true',
                        help='deterministic algorithms (sets randomness.deterministic)')
    return parse_run_args(parser, cfg_options_example='train_cfg.max_epochs=1')


def main():
    args = parse_args()
    cfg = load_run_config(args.config, args.cfg_options, args.work_dir, args.launcher,
                          args.allow_new_keys)
    if args.seed is not None or args.deterministic:
        cfg.randomness = dict(cfg.get('randomness') or {})
        if args.seed is not None:
            cfg.randomness['seed'] = args.seed
        if args.deterministic:
            cfg.randomness['deterministic'] = True
    if args.vis_backend:
        add_vis_backends(cfg, args.vis_backend)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the '
                               'config')
        cfg.auto_scale_lr.enable = True
    check_amp_available(cfg)
    check_backbone_weights(check_model_builds(cfg))
    if cfg.get('load_from'):
        check_checkpoint_exists(cfg.load_from)
    check_datasets_exist(cfg)
    make_resumable(cfg)
    resolve_resume(cfg, args.resume)
    setup_launch(cfg, args.launcher)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()
    finish_launch()


if __name__ == '__main__':
    with short_errors(os.path.basename(__file__)):
        main()
