"""Predictions on images, a folder or URLs with mmdet's ``DetInferencer`` or mmseg's
``MMSegInferencer`` (chosen by the config's ``default_scope``): what ``tools/infer.py`` runs.

Unlike the plain inferencers, a checkpoint must fit the config's model (every tensor, as in
``tools/test.py``), inputs are checked before the model is built (an unreadable image, an empty
folder, a folder where a file is expected, a wrong config: one :class:`UsageError` naming the
path), and the pictures are readable at the size they are saved: small images are drawn on an
enlarged canvas, labels stay inside the picture and print scores on the 0-1 scale of
``score_thr``, and segmentation gets a legend of the classes present instead of one label per
class on an arbitrary object.

The JSON written for each image (:func:`detection_record`, :func:`segmentation_record`) holds
every prediction of the model (after the config's ``test_cfg``), not only the drawn ones.
"""
import math
import os
import os.path as osp
import urllib.parse
import warnings
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import mmcv
import mmengine
import numpy as np
from mmengine.config import Config

from .build import config_scope
from .errors import UsageError
from .preflight import check_checkpoint_exists
from .resolution import Resolution, set_test_resolution
from .slicing import Slicing, detections_cap, set_test_slicing
from .weights import load_model_strictly

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.tif', '.tiff', '.webp')
SMALL_IMAGE = 512  # images whose long side is under this are drawn enlarged ...
CANVAS = 640  # ... to this long side
LARGE_PICTURE = 4096  # pictures of larger images are drawn reduced to this long side
URL_PREFIXES = ('http://', 'https://')


# ---------------------------------------------------------------------------- checks


def load_inference_config(config: str) -> Config:
    """The config file, checked: a file that mmengine reads, with a model, a test pipeline and
    ``default_scope`` 'mmdet' or 'mmseg' (otherwise a :class:`UsageError` naming the path)."""
    if osp.isdir(config):
        raise UsageError(f'config {config} is a folder, not a config file')
    if not osp.isfile(config):
        raise UsageError(f'config {config} does not exist')
    try:
        cfg = Config.fromfile(config)
    except Exception as e:
        raise UsageError(f'config {config} cannot be read: {type(e).__name__}: {e}') from e
    try:
        config_scope(cfg)
    except UsageError as e:
        raise UsageError(f'config {config} is not a detection or segmentation config: {e}') \
            from None
    if not cfg.get('model') or not cfg.get('test_dataloader'):
        raise UsageError(f'config {config} has no model or no test_dataloader (its test '
                         'pipeline prepares the images)')
    return cfg


def check_checkpoint_file(checkpoint: str) -> None:
    """A local checkpoint must be an existing file (URLs are checked when downloaded)."""
    if not checkpoint.startswith(URL_PREFIXES) and osp.isdir(checkpoint):
        raise UsageError(f'checkpoint {checkpoint} is a folder, not a checkpoint file')
    check_checkpoint_exists(checkpoint)


def list_inputs(source: str) -> List[str]:
    """The images of ``source``: an image file, a URL, or a folder (its image files, sorted,
    not recursive). A missing path or a folder without images is a :class:`UsageError`."""
    if source.startswith(URL_PREFIXES):
        return [source]
    if osp.isdir(source):
        names = sorted(n for n in os.listdir(source)
                       if n.lower().endswith(IMAGE_EXTENSIONS)
                       and osp.isfile(osp.join(source, n)))
        if not names:
            raise UsageError(f"folder {source} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        return [osp.join(source, n) for n in names]
    if not osp.isfile(source):
        raise UsageError(f'Image {source!r} does not exist')
    return [source]


def read_image(source: str) -> np.ndarray:
    """An image file or URL as a BGR array; a :class:`UsageError` naming it when it cannot be
    read or decoded."""
    try:
        data = mmengine.fileio.get(source)
    except Exception as e:
        what = 'downloaded' if source.startswith(URL_PREFIXES) else 'read'
        raise UsageError(f'Image {source!r} cannot be {what}: {e}') from e
    try:
        image = mmcv.imfrombytes(data)
    except Exception:
        image = None
    del data  # the encoded bytes: not held beside the decoded image
    if image is None:
        raise UsageError(f'Image {source!r} cannot be decoded (corrupt or not an image)')
    return image


def _bits_per_sample(path: str, image) -> int:
    """Bits per colour sample of a PNG (its header) or TIFF (its tag); 8 for other formats."""
    if image.format == 'PNG':
        with open(path, 'rb') as f:
            return f.read(25)[24]  # IHDR bit depth
    if image.format == 'TIFF':
        bits = image.tag_v2.get(258, (8,))
        return max(bits) if isinstance(bits, tuple) else int(bits)
    return 8


def check_image_file(path: str) -> Tuple[int, int]:
    """An image file's height and width from its header, without decoding it (PIL's pixel
    limit does not apply: large images are what this toolkit is for). A
    :class:`UsageError` names a file with several pages or more than 8 bits per sample, which
    the models (trained on 8-bit RGB) cannot take as they are; a file PIL cannot identify is
    decoded in full instead (OpenCV reads more formats)."""
    from PIL import Image, UnidentifiedImageError
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as image:
            width, height = image.size
            pages = getattr(image, 'n_frames', 1)
            bits = _bits_per_sample(path, image)
    except (UnidentifiedImageError, OSError, ValueError):
        return read_image(path).shape[:2]
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if pages > 1 and path.lower().endswith(('.tif', '.tiff')):
        raise UsageError(f'Image {path!r} is a TIFF of {pages} pages; give one page per file '
                         '(e.g. tiffsplit, or PIL: Image.open(f).seek(i) then save)')
    if bits > 8:
        raise UsageError(f'Image {path!r} has {bits} bits per sample; the models take 8-bit '
                         'RGB images: convert it to 8 bits with the scaling that suits your '
                         'data (e.g. its 0.1-99.9 percentile range) and save it as PNG or JPEG')
    return height, width


# ---------------------------------------------------------------------------- inferencers

_INFERENCER_CLASSES: Dict[str, type] = {}


def inferencer_class(scope: str) -> type:
    """mmdet's ``DetInferencer`` ('mmdet') or mmseg's ``MMSegInferencer`` ('mmseg') with
    strict checkpoint loading and xcit_dense's ``LoadImageChecked`` accepted in the test
    pipeline (the plain inferencers look for ``LoadImageFromFile``)."""
    if scope in _INFERENCER_CLASSES:
        return _INFERENCER_CLASSES[scope]
    if scope == 'mmseg':
        from mmseg.apis import MMSegInferencer as Base
    else:
        from mmdet.apis import DetInferencer as Base

    class StrictInferencer(Base):
        def _init_model(self, cfg, weights, device='cpu'):
            self.weights_name = weights
            return super()._init_model(cfg, weights, device)

        def _load_weights_to_model(self, model, checkpoint, cfg):
            from mmengine.model import BaseTTAModel
            # a wrapper of the model (SlicedDetector) holds the checkpoint's model as .module
            inner = model.module if isinstance(model, BaseTTAModel) else model
            if checkpoint is not None:
                load_model_strictly(inner, checkpoint, self.weights_name,
                                    'predict from its random initialisation')
            # loads the same tensors again (once per inferencer) and sets dataset_meta
            super()._load_weights_to_model(inner, checkpoint, cfg)
            model.dataset_meta = inner.dataset_meta

        def _init_pipeline(self, cfg):
            for transform in cfg.test_dataloader.dataset.pipeline:
                if transform['type'] == 'LoadImageChecked':
                    transform['type'] = 'LoadImageFromFile'
                    transform.pop('skip_bad', None)
            return super()._init_pipeline(cfg)

    StrictInferencer.__name__ = StrictInferencer.__qualname__ = f'Strict{Base.__name__}'
    _INFERENCER_CLASSES[scope] = StrictInferencer
    return StrictInferencer


def build_inferencer(cfg: Config, checkpoint: str, device: str = 'cpu'):
    """The strict inferencer of the config's codebase with the checkpoint loaded."""
    scope = config_scope(cfg)
    if cfg.get('visualizer'):
        cfg.visualizer.pop('vis_backends', None)  # pictures are saved by run_inference
    kwargs = dict(show_progress=False) if scope == 'mmdet' else {}
    inferencer = inferencer_class(scope)(model=cfg, weights=checkpoint, device=device,
                                         scope=scope, **kwargs)
    inferencer.show_progress = False
    return inferencer


def predict(inferencer, images: Sequence[np.ndarray], batch_size: int = 1) -> list:
    """The inferencer's data samples for BGR images, ``batch_size`` images per forward."""
    result = inferencer(list(images), batch_size=batch_size, return_datasamples=True)
    if isinstance(result, dict):  # mmdet: {'predictions': [...], 'visualization': [...]}
        result = result['predictions']
    return list(result) if isinstance(result, (list, tuple)) else [result]


# ---------------------------------------------------------------------------- pictures


def class_palette(meta: Dict, num_classes: int) -> List[Tuple[int, int, int]]:
    """One RGB colour per class: the dataset's palette when it has one per class, otherwise
    mmdet's fixed random palette."""
    from mmdet.visualization.palette import get_palette
    palette = meta.get('palette')
    if isinstance(palette, (list, tuple)) and len(palette) >= num_classes and all(
            isinstance(c, (list, tuple)) and len(c) == 3 for c in palette):
        return [tuple(int(v) for v in c) for c in palette[:num_classes]]
    if isinstance(palette, str) and palette not in ('random', 'none'):
        return [tuple(c) for c in get_palette(palette, num_classes)]
    return [tuple(c) for c in get_palette('random', num_classes)]


def canvas_scale(height: int, width: int, small: int = SMALL_IMAGE,
                 canvas: int = CANVAS, large: int = LARGE_PICTURE) -> float:
    """How much a picture of an image is scaled: enlarged to ``canvas`` on the long side when
    that is under ``small`` pixels, reduced to ``large`` when it is over it (the JSON and
    label maps keep the image's own resolution), else not at all."""
    long_side = max(height, width)
    if 0 < long_side < small:
        return canvas / long_side
    return large / long_side if long_side > large else 1.0


def _resized_picture(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if (height, width) == image.shape[:2]:
        return image
    reduce = width < image.shape[1]
    return mmcv.imresize(image, (width, height), interpolation='area' if reduce else 'bicubic')


class _Painter:
    """Text drawn with a visualizer: sizes in pixels, extents measured by its renderer."""

    def __init__(self, visualizer, image: np.ndarray):
        self.visualizer = visualizer
        visualizer.set_image(image)
        self.height, self.width = image.shape[:2]
        self.font_px = max(12, round(max(self.height, self.width) / 45))
        self.pad = max(2, self.font_px // 5)

    def text_size(self, text: str) -> Tuple[int, int]:
        """Width and height in pixels of ``text`` in its padded box, as it will be drawn."""
        ax = self.visualizer.ax_save
        probe = ax.text(0, 0, text, size=self.font_px * 72. / self.visualizer.dpi,
                        family='sans-serif')
        extent = probe.get_window_extent(renderer=ax.figure.canvas.get_renderer())
        probe.remove()
        return (math.ceil(extent.width) + 2 * self.pad,
                max(math.ceil(extent.height), round(1.25 * self.font_px)) + 2 * self.pad)

    def texts(self, texts: List[str], corners: List[Tuple[int, int]],
              backgrounds: List[Optional[tuple]]) -> None:
        """Texts with their top-left corners (of the padded box) at ``corners``."""
        if not texts:
            return
        points = 72. / self.visualizer.dpi  # matplotlib sizes fonts in points
        colors, boxes = [], []
        for background in backgrounds:
            if background is None:
                colors.append((0, 0, 0))
                boxes.append(dict(facecolor='none', edgecolor='none', pad=0))
            else:
                luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * \
                    background[2]
                colors.append((0, 0, 0) if luminance > 140 else (255, 255, 255))
                boxes.append(dict(facecolor=[c / 255 for c in background], alpha=0.85,
                                  edgecolor='none', pad=self.pad * points))
        positions = np.array([[x + self.pad, y + self.pad] for x, y in corners], dtype=float)
        self.visualizer.draw_texts(texts, positions, font_sizes=self.font_px * points,
                                   colors=colors, vertical_alignments='top',
                                   horizontal_alignments='left', bboxes=boxes)


def _overlaps(box, boxes) -> bool:
    x, y, w, h = box
    return any(x < bx + bw and bx < x + w and y < by + bh and by < y + h
               for bx, by, bw, bh in boxes)


def place_labels(anchors: List[Tuple[float, float]], sizes: List[Tuple[int, int]],
                 width: int, height: int) -> List[Tuple[int, int]]:
    """Top-left corners for labels of the given sizes: just above their anchor (a box's
    top-left corner), or inside the box under its top edge when there is no room above, moved
    down past labels placed before, and always inside the ``width`` x ``height`` picture."""
    placed, corners = [], []
    for (ax, ay), (w, h) in zip(anchors, sizes):
        x = int(min(max(ax, 0), max(width - w, 0)))
        candidates = [ay - h, ay] + [ay + s * k * h for k in range(1, 16) for s in (1, -1)]
        fitting = [int(min(max(y, 0), max(height - h, 0))) for y in candidates]
        y = next((y for y in fitting if not _overlaps((x, y, w, h), placed)), fitting[0])
        placed.append((x, y, w, h))
        corners.append((x, y))
    return corners


def draw_detections(visualizer, image: np.ndarray, sample, classes: Sequence[str],
                    palette: List[tuple], score_thr: float = 0.3) -> np.ndarray:
    """A picture (RGB) of a ``DetDataSample``'s instances scored ``score_thr`` or more on an RGB
    image: masks, boxes and a label per instance, 'class 0.87' in the class colour."""
    scale = canvas_scale(*image.shape[:2])
    height, width = round(image.shape[0] * scale), round(image.shape[1] * scale)
    canvas = _resized_picture(image, width, height)
    painter = _Painter(visualizer, canvas)
    instances = sample.pred_instances.cpu()
    keep = (instances.scores >= score_thr).numpy()
    order = np.argsort(-instances.scores.numpy()[keep], kind='stable')
    labels = instances.labels.numpy()[keep][order]
    scores = instances.scores.numpy()[keep][order]
    colors = [palette[int(label) % len(palette)] for label in labels]
    if 'masks' in instances and len(labels):
        masks = instances.masks.numpy()[keep][order].astype(np.uint8)
        masks = np.stack([mmcv.imresize(m, (width, height), interpolation='nearest')
                          for m in masks]).astype(bool)
        visualizer.draw_binary_masks(masks, colors=colors, alphas=0.45)
    if 'bboxes' in instances and len(labels):
        bboxes = instances.bboxes.numpy()[keep][order] * scale
        bboxes[:, 0::2] = bboxes[:, 0::2].clip(0, width - 1)
        bboxes[:, 1::2] = bboxes[:, 1::2].clip(0, height - 1)
        visualizer.draw_bboxes(bboxes, edge_colors=colors, line_widths=2, alpha=0.9)
        texts = [f'{_class_name(classes, label)} {score:.2f}'
                 for label, score in zip(labels, scores)]
        sizes = [painter.text_size(t) for t in texts]
        corners = place_labels([(b[0], b[1]) for b in bboxes], sizes, width, height)
        painter.texts(texts, corners, colors)
    return visualizer.get_image()


def draw_segmentation(visualizer, image: np.ndarray, sample, classes: Sequence[str],
                      palette: List[tuple], opacity: float = 0.5) -> np.ndarray:
    """A picture (RGB) of a ``SegDataSample``'s class map over an RGB image, with a legend
    below it: a swatch, the name and the share of the pixels of each class present, most
    frequent first."""
    label_map = sample.pred_sem_seg.data[0].cpu().numpy()
    scale = canvas_scale(*image.shape[:2])
    height, width = round(image.shape[0] * scale), round(image.shape[1] * scale)
    canvas = _resized_picture(image, width, height)
    labels = label_map if scale == 1 else mmcv.imresize(
        label_map.astype(np.uint16), (width, height), interpolation='nearest').astype(np.int64)
    colors = np.array(palette, dtype=np.float32)
    known = labels < len(colors)
    overlay = canvas.astype(np.float32)
    overlay[known] = (1 - opacity) * overlay[known] + opacity * colors[labels[known]]
    counts = np.bincount(label_map.ravel(), minlength=len(colors))[:len(colors)]
    present = [int(c) for c in np.argsort(-counts, kind='stable') if counts[c] > 0]
    # lay the legend out in rows under the picture
    probe = _Painter(visualizer, canvas)
    swatch = probe.text_size('x')[1]
    items, x, y, row_height = [], probe.pad, probe.pad, swatch + probe.pad
    for c in present:
        share = 100 * counts[c] / label_map.size
        text = f'{_class_name(classes, c)} ' + (f'{share:.0f}%' if share >= 1 else '<1%')
        w = swatch + probe.text_size(text)[0]
        if x > probe.pad and x + w > width:
            x, y = probe.pad, y + row_height
        items.append((c, text, x, y))
        x += w + probe.font_px  # an em between items
    strip = np.full((y + row_height + probe.pad, width, 3), 255, dtype=np.uint8)
    painter = _Painter(visualizer, np.concatenate([overlay.astype(np.uint8), strip]))
    if items:
        swatches = np.array([[x, height + y, x + swatch, height + y + swatch]
                             for _, _, x, y in items], dtype=float)
        visualizer.draw_bboxes(swatches, edge_colors=[(0, 0, 0)] * len(items),
                               face_colors=[palette[c] for c, *_ in items], line_widths=1,
                               alpha=1.0)
        painter.texts([t for _, t, _, _ in items],
                      [(x + swatch, height + y) for _, _, x, y in items], [None] * len(items))
    return visualizer.get_image()


def _class_name(classes: Sequence[str], label: int) -> str:
    return str(classes[label]) if 0 <= label < len(classes) else f'class {label}'


# ---------------------------------------------------------------------------- JSON


def predicted_size(sample) -> List[int]:
    """The [height, width] the image was resized to for the model (before padding)."""
    return [int(v) for v in sample.metainfo['img_shape'][:2]]


def detection_record(sample, source: str, classes: Sequence[str]) -> Dict:
    """A ``DetDataSample`` as JSON-ready data: the image, its size, the size the model saw
    (``predicted_at``), the class names and one
    entry per instance (label, class, score, box ``[x1, y1, x2, y2]`` in image pixels and, for
    instance masks, the mask as COCO RLE and its area in pixels), most confident first."""
    import pycocotools.mask as mask_util
    instances = sample.pred_instances.cpu()
    height, width = sample.ori_shape[:2]
    order = np.argsort(-instances.scores.numpy(), kind='stable')
    masks = instances.masks.numpy() if 'masks' in instances else None
    records = []
    for i in order:
        label = int(instances.labels[i])
        entry = dict(label=label, **{'class': _class_name(classes, label)},
                     score=float(instances.scores[i]))
        if 'bboxes' in instances:
            entry['bbox'] = [float(v) for v in instances.bboxes[i]]
        if masks is not None:
            rle = mask_util.encode(np.asfortranarray(masks[i].astype(np.uint8)))
            entry['mask'] = dict(size=[int(v) for v in rle['size']],
                                 counts=rle['counts'].decode())
            entry['mask_area'] = int(masks[i].sum())
        records.append(entry)
    return dict(image=source, height=int(height), width=int(width),
                predicted_at=predicted_size(sample), task='detection', classes=list(classes),
                instances=records)


def segmentation_record(sample, source: str, classes: Sequence[str],
                        label_map_file: Optional[str] = None) -> Dict:
    """A ``SegDataSample`` as JSON-ready data: the image, its size, the size the model saw
    (``predicted_at``), the class names, the number
    of pixels of each class present, and the file of the class-index map (a PNG whose pixel
    values are class indices), when one was written."""
    label_map = sample.pred_sem_seg.data[0].cpu().numpy()
    counts = np.bincount(label_map.ravel().astype(np.int64))
    pixels = {_class_name(classes, c): int(n) for c, n in enumerate(counts) if n}
    record = dict(image=source, height=int(label_map.shape[0]), width=int(label_map.shape[1]),
                  predicted_at=predicted_size(sample), task='segmentation',
                  classes=list(classes), pixels=pixels)
    if label_map_file is not None:
        record['label_map'] = label_map_file
    return record


# ---------------------------------------------------------------------------- the run


def output_names(sources: Sequence[str]) -> List[str]:
    """A distinct file stem per input (its file name without the extension, numbered when two
    inputs share one)."""
    names, seen = [], {}
    for source in sources:
        path = urllib.parse.urlparse(source).path if source.startswith(URL_PREFIXES) \
            else source
        stem = osp.splitext(osp.basename(path.rstrip('/')))[0] or 'image'
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        names.append(stem if count == 0 else f'{stem}_{count}')
    return names


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def run_inference(config: str, checkpoint: str, source: str, out_dir: Optional[str] = None,
                  out_file: Optional[str] = None, batch_size: int = 1, device: str = 'cpu',
                  score_thr: float = 0.3, resolution: Resolution = Resolution(),
                  slicing: Slicing = Slicing()) -> List[Dict]:
    """Predict on ``source`` (an image, a folder of images or a URL) and write, per image, a
    picture ``OUT_DIR/vis/NAME.png`` and the predictions ``OUT_DIR/preds/NAME.json`` (and, for
    segmentation, the class-index map ``OUT_DIR/preds/NAME_labels.png``); ``out_file`` names
    the picture of a single image instead (the JSON beside it). ``resolution`` (see
    :func:`~xcit_dense.engine.resolution.parse_resolution`) sets the size images are
    predicted at, ``slicing`` (see :func:`~xcit_dense.engine.slicing.parse_slicing`) predicts
    them in slices at their own resolution instead; predictions are in each image's own
    coordinates in any case. Everything
    given is checked before the model is built. Returns, per image, the JSON data with the
    written ``picture`` and ``json`` paths added."""
    import torch
    if batch_size < 1:
        raise UsageError(f'--batch-size must be at least 1, got {batch_size}')
    if not 0 <= score_thr <= 1:
        raise UsageError(f'--score-thr is a score between 0 and 1, got {score_thr}')
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise UsageError(f'--device {device}: CUDA is not available on this machine')
    cfg = load_inference_config(config)
    check_checkpoint_file(checkpoint)
    sources = list_inputs(source)
    if out_file is not None:
        if osp.isdir(out_file):
            raise UsageError(f'--out-file {out_file} is a folder, not a picture file; use '
                             '--out-dir for a folder')
        if len(sources) != 1:
            raise UsageError(f'--out-file takes one image, but {source} holds {len(sources)}; '
                             'use --out-dir')
    # Every image must be readable before the model is built: files by their headers (a
    # large image is decoded once, in its batch); a URL (always the only input) is downloaded
    # once and kept.
    downloaded = {s: read_image(s) for s in sources if s.startswith(URL_PREFIXES)}
    for s in sources:
        if s not in downloaded:
            check_image_file(s)
    scope = config_scope(cfg)
    set_test_resolution(cfg, resolution)
    cap_key, cap = detections_cap(cfg.model.get('test_cfg') or {})  # also the merged slices'

    set_test_slicing(cfg, slicing, resolution)
    inferencer = build_inferencer(cfg, checkpoint, device)
    classes = list(inferencer.model.dataset_meta.get('classes') or [])
    palette = class_palette(inferencer.model.dataset_meta, len(classes))
    names = output_names(sources)
    if out_file is not None:
        pictures = [out_file]
        jsons = [osp.splitext(out_file)[0] + '.json']
    else:
        out_dir = out_dir or 'work_dirs/infer'
        pictures = [osp.join(out_dir, 'vis', f'{n}.png') for n in names]
        jsons = [osp.join(out_dir, 'preds', f'{n}.json') for n in names]
    outputs = []
    for chunk in _chunks(list(range(len(sources))), batch_size):
        images = [downloaded[sources[i]] if sources[i] in downloaded else read_image(sources[i])
                  for i in chunk]
        samples = predict(inferencer, images, batch_size=len(chunk))
        for i, image, sample in zip(chunk, images, samples):
            rgb = mmcv.bgr2rgb(image)
            if scope == 'mmseg':
                label_file = osp.splitext(jsons[i])[0] + '_labels.png'
                label_map = sample.pred_sem_seg.data[0].cpu().numpy()
                mmcv.imwrite(label_map.astype(np.uint8 if len(classes) <= 256 else np.uint16),
                             label_file)
                record = segmentation_record(sample, sources[i], classes, label_file)
                picture = draw_segmentation(inferencer.visualizer, rgb, sample, classes, palette)
            else:
                record = detection_record(sample, sources[i], classes)
                picture = draw_detections(inferencer.visualizer, rgb, sample, classes, palette,
                                          score_thr)
            mmcv.imwrite(mmcv.rgb2bgr(picture), pictures[i])
            mmengine.mkdir_or_exist(osp.dirname(osp.abspath(jsons[i])))
            mmengine.dump(record, jsons[i], indent=1)
            outputs.append(dict(record, picture=pictures[i], json=jsons[i]))
            if scope == 'mmdet' and cap is not None and len(record['instances']) >= cap:
                warnings.warn(f"{sources[i]}: {len(record['instances'])} instances, the "
                              f"most the config's test_cfg keeps per image ({cap_key} = {cap}); "
                              'the image may hold more objects: raise it with a config of '
                              'your own (a large image at its own resolution often does)')
    return outputs
