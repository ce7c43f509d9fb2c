"""Run a trained model on your own image and save a picture of its predictions.

    python tools/infer.py CONFIG CHECKPOINT IMAGE --out-file pred.png [--score-thr 0.3]

Detection configs (default_scope 'mmdet') draw boxes, labels and masks; segmentation configs
('mmseg') colour each pixel by its predicted class.
"""
import argparse
import os

import mmcv
from mmengine.config import Config

import xcit_dense  # noqa: F401  (registers modules)
from xcit_dense.engine import config_scope, short_errors


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('image', help='image file')
    parser.add_argument('--out-file', default='prediction.png', help='picture to write')
    parser.add_argument('--device', default='cpu', help='cpu or cuda:0')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: hide boxes scored below this')
    return parser.parse_args()


def read_image(path: str):
    """The image as a BGR array; a clear error for a missing or unreadable file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Image {path!r} does not exist')
    try:
        image = mmcv.imread(path)
    except Exception as e:
        raise ValueError(f'Image {path!r} cannot be decoded: {e}') from e
    if image is None:
        raise ValueError(f'Image {path!r} cannot be decoded (corrupt or not an image)')
    return image


def predict_and_draw(config: str, checkpoint: str, image_path: str, out_file: str,
                     device: str = 'cpu', score_thr: float = 0.3):
    """Predict on one image and save the drawing; returns the model's data sample."""
    image = read_image(image_path)
    cfg = Config.fromfile(config)
    if config_scope(cfg) == 'mmseg':
        from mmseg.apis import inference_model, init_model
        from mmseg.visualization import SegLocalVisualizer
        model = init_model(cfg, checkpoint, device=device)
        result = inference_model(model, image)
        visualizer = SegLocalVisualizer(name='xcit_dense_infer', alpha=0.6)
        visualizer.dataset_meta = model.dataset_meta
        visualizer.add_datasample('prediction', mmcv.bgr2rgb(image), result, draw_gt=False,
                                  out_file=out_file)
    else:
        from mmdet.apis import inference_detector, init_detector
        from mmdet.visualization import DetLocalVisualizer
        model = init_detector(cfg, checkpoint, device=device)
        result = inference_detector(model, image)
        visualizer = DetLocalVisualizer(name='xcit_dense_infer')
        visualizer.dataset_meta = model.dataset_meta
        visualizer.add_datasample('prediction', mmcv.bgr2rgb(image), result, draw_gt=False,
                                  pred_score_thr=score_thr, out_file=out_file)
    return result


def main():
    args = parse_args()
    predict_and_draw(args.config, args.checkpoint, args.image, args.out_file, args.device,
                     args.score_thr)
    print(f'Saved {args.out_file}')


if __name__ == '__main__':
    with short_errors(os.path.basename(__file__)):
        main()
