"""Evaluate a trained detector (box/mask mAP) or segmentor (mIoU) on the test set.

    python tools/test.py CONFIG CHECKPOINT_OR_URL [--out results.pkl] [--show-dir vis] [--tta]
        [--resolution config|native|FACTOR] [--max-side PIXELS]
        [--slice SIZE [--overlap 0.2] [--slice-merge nmm|nms] [--slice-with-whole]]

The checkpoint may be one of the XCiT release's (mmdet 2.11 / mmseg 0.11 files) or ours, a
local file or a URL (downloaded once into torch's hub cache). Every tensor of the model must
come from it: a checkpoint that leaves part of the model at its initialisation is an error
listing the missing and unexpected keys. The release's ``--eval bbox segm`` / ``--eval mIoU``
and mmseg 0.x's ``--options`` are accepted. ``--tta`` evaluates with test-time augmentation:
the config's ``tta_pipeline`` (scales x flips) and ``tta_model`` (mmdet's ``DetTTAModel``,
extended to masks, or mmseg's ``SegTTAModel``) merge each image's views. ``--resolution
native`` evaluates every test image at its own size, whole, instead of the config's test resize
(a factor such as 0.5 scales it, ``--max-side`` caps the long side). ``--slice 512`` evaluates
every test image in overlapping slices of 512 pixels at its own resolution, merged in its
coordinates (detection: SAHI's merge; segmentation: mmseg's slide inference; see
:mod:`xcit_dense.engine.slicing`).
"""
import argparse
import os

from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import xcit_dense  # noqa: F401  (registers modules, allow-lists mmengine checkpoint classes)
from xcit_dense.engine import (apply_tta, check_checkpoint_exists, check_datasets_exist,
                               check_test_checkpoint, config_scope, finish_launch,
                               load_checkpoint_strictly, load_run_config, parse_run_args,
                               select_metrics, setup_launch, short_errors, tta_module_as_model,
                               UsageError)
from xcit_dense.engine.resolution import (add_resolution_args, parse_resolution,
                                          set_test_resolution)
from xcit_dense.engine.slicing import add_slicing_args, set_test_slicing, slicing_from_args


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file or http(s) URL')
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument('--out', help='dump the raw predictions to a pickle file (.pkl)')
    parser.add_argument('--json-prefix', help='detection: also write the COCO-format results '
                        'to PREFIX.bbox.json and PREFIX.segm.json (pycocotools loadRes format)')
    parser.add_argument('--show-dir', help='save pictures of the predictions in this folder '
                        '(detection: inside the run\'s timestamped folder; segmentation: '
                        'inside the work dir)')
    parser.add_argument('--eval', nargs='+', metavar='METRIC',
                        help='the release\'s metric choice: bbox segm (detection), mIoU '
                        '(segmentation); by default the config\'s test evaluator decides')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation: the '
                        'config\'s tta_pipeline (e.g. scales x flips) and tta_model, which '
                        'merges the views of each image')
    add_resolution_args(parser)
    add_slicing_args(parser)
    return parse_run_args(parser)


def enable_visualization(cfg, show_dir: str) -> None:
    """Turn on the codebase's visualisation hook to draw the predictions: mmdet's hook writes to
    ``test_out_dir`` (inside the run's folder), mmseg's through the visualizer's ``save_dir``."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise RuntimeError('--show-dir needs a visualization hook in default_hooks')
    hook['draw'] = True
    if config_scope(cfg) == 'mmseg':
        hook['interval'] = 1  # every test image, not one in 50
        cfg.visualizer['save_dir'] = os.path.join(cfg.work_dir, show_dir)
    else:
        hook['test_out_dir'] = show_dir


def main():
    args = parse_args()
    cfg = load_run_config(args.config, args.cfg_options, args.work_dir, args.launcher,
                          args.allow_new_keys)
    cfg.load_from = None  # loaded strictly below
    check_checkpoint_exists(args.checkpoint)
    check_datasets_exist(cfg, loaders=('test_dataloader',))
    evaluated = check_test_checkpoint(cfg, args.checkpoint)
    resolution = parse_resolution(args.resolution, args.max_side)
    if args.tta and not resolution.from_config:
        raise UsageError('--tta and --resolution/--max-side cannot be combined: the '
                         "config's tta_pipeline sets the scales of the views")
    slicing = slicing_from_args(args)
    if args.tta and slicing.enabled:
        raise UsageError('--tta and --slice cannot be combined: each wraps the model to merge '
                         'its own views of an image')
    set_test_resolution(cfg, resolution)
    set_test_slicing(cfg, slicing, resolution)
    if args.tta:
        apply_tta(cfg)
    if args.eval:
        select_metrics(cfg, args.eval)
    if args.show_dir:
        enable_visualization(cfg, args.show_dir)
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must be a .pkl file, got {args.out}')
        cfg.test_evaluator = ([*cfg.test_evaluator] if isinstance(cfg.test_evaluator, list)
                              else [cfg.test_evaluator])
        dump = 'DumpDetResults' if config_scope(cfg) == 'mmdet' else 'DumpResults'
        cfg.test_evaluator.append(dict(type=dump, out_file_path=args.out))
    if args.json_prefix is not None:
        evaluators = (cfg.test_evaluator if isinstance(cfg.test_evaluator, list)
                      else [cfg.test_evaluator])
        coco = [e for e in evaluators if e.get('type') == 'CocoMetric']
        if not coco:
            raise ValueError('--json-prefix needs a CocoMetric test evaluator')
        for evaluator in coco:
            evaluator['outfile_prefix'] = args.json_prefix

    setup_launch(cfg, args.launcher)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    with tta_module_as_model(runner):  # the plain model's checkpoint, inside the TTA wrapper
        load_checkpoint_strictly(runner, args.checkpoint)
    if evaluated:
        runner.logger.info(f'Evaluating {evaluated}.')
    runner.test()
    finish_launch()


if __name__ == '__main__':
    with short_errors(os.path.basename(__file__)):
        main()
