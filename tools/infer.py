"""Run a trained model on your own images and save pictures and JSON of its predictions.

    python tools/infer.py CONFIG CHECKPOINT_OR_URL IMAGE_FOLDER_OR_URL [--out-dir DIR]
        [--out-file pred.png] [--batch-size N] [--device cpu|cuda:0] [--score-thr 0.3]
        [--resolution config|native|FACTOR] [--max-side PIXELS]
        [--slice SIZE [--overlap 0.2] [--slice-merge nmm|nms] [--slice-with-whole]]

mmdet's DetInferencer runs detection configs (default_scope 'mmdet'), mmseg's MMSegInferencer
segmentation configs ('mmseg'). Per image it writes DIR/vis/NAME.png (detection: masks, boxes
and 'class score' labels of the instances scored --score-thr or more; segmentation: the class
colours with a legend of the classes present; images under 512 px are drawn enlarged to 640
px) and DIR/preds/NAME.json (every prediction; see xcit_dense/engine/inference.py), plus, for
segmentation, the class-index map DIR/preds/NAME_labels.png. The checkpoint must fit the config
(every tensor, as in tools/test.py).

Images are resized by the config's test pipeline (e.g. to 1333x800) unless --resolution
native runs each at its own size, whole (a factor such as 0.5 scales it, --max-side caps its
long side), and --slice 512 predicts it in overlapping slices of 512 pixels at its own
resolution, merged (detection: SAHI's merge of the pieces of an object; segmentation: mmseg's
slide inference); predictions are in the image's own coordinates either way. Pictures of images
over 4096 px are drawn reduced; the JSON and label maps keep full resolution.
"""
import argparse
import os

import xcit_dense  # noqa: F401  (registers modules and checkpoint readers)
from xcit_dense.engine import short_errors
from xcit_dense.engine.inference import run_inference
from xcit_dense.engine.resolution import add_resolution_args, parse_resolution
from xcit_dense.engine.slicing import add_slicing_args, slicing_from_args


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file or http(s) URL')
    parser.add_argument('image', help='an image file, a folder of images or an http(s) URL')
    parser.add_argument('--out-dir', default='work_dirs/infer',
                        help='write DIR/vis/NAME.png and DIR/preds/NAME.json per image')
    parser.add_argument('--out-file', help='one image: write its picture here (and the JSON '
                        'beside it, same name with .json) instead of into --out-dir')
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward pass')
    parser.add_argument('--device', default='cpu', help='cpu or cuda:0')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: draw the instances scored this or more (0-1; the '
                        'JSON holds them all)')
    add_resolution_args(parser)
    add_slicing_args(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    resolution = parse_resolution(args.resolution, args.max_side)
    outputs = run_inference(args.config, args.checkpoint, args.image, args.out_dir,
                            args.out_file, args.batch_size, args.device, args.score_thr,
                            resolution, slicing_from_args(args))
    for out in outputs:
        if out['task'] == 'detection':
            shown = sum(i['score'] >= args.score_thr for i in out['instances'])
            what = (f"{len(out['instances'])} instances, {shown} scored "
                    f'>= {args.score_thr:.2f} drawn')
        else:
            what = ', '.join(f'{name} {n}' for name, n in out['pixels'].items()) + ' pixels'
        size = 'x'.join(str(v) for v in out['predicted_at'][::-1])
        print(f"{out['image']} (predicted at {size}): {what} -> {out['picture']}, "
              f"{out['json']}")


if __name__ == '__main__':
    with short_errors(os.path.basename(__file__)):
        main()
