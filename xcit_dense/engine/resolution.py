"""The resolution images are predicted at: the config's test resize (the default), or each
image's own size, a stated fraction of it, or a cap on its long side, chosen with
``--resolution`` and ``--max-side`` in ``tools/infer.py`` and ``tools/test.py`` and with
``resolution=``/``max_side=`` in :func:`~xcit_dense.engine.inference.run_inference`.

The test pipeline's resize transforms are replaced by one
:class:`~xcit_dense.datasets.transforms.ResizeToResolution`, and a fixed-size ``Pad`` (RTMDet's
640 x 640 canvas) is dropped: the data preprocessor still pads every batch to its size divisor.
mmdet's ground-truth masks are loaded as polygons, not as a bitmap of the image per object.
Predictions are mapped back to the image's own coordinates as with any resize.
"""
import argparse
from typing import List, NamedTuple, Optional

from .data_check import innermost_dataset
from .errors import UsageError

# Transforms that set the test scale (any scope: 'Resize' and 'mmdet.Resize' alike).
RESIZE_TRANSFORMS = ('Resize', 'RandomResize', 'RandomChoiceResize', 'FixShapeResize',
                     'ResizeShortestEdge', 'ResizeToResolution')


class Resolution(NamedTuple):
    """``scale`` None keeps the config's resize; otherwise images are resized by ``scale`` of
    their own size, to at most ``max_side`` pixels on the long side."""
    scale: Optional[float] = None
    max_side: Optional[int] = None

    @property
    def from_config(self) -> bool:
        return self.scale is None

    def describe(self) -> str:
        if self.from_config:
            return "the config's test resize"
        what = 'own resolution' if self.scale == 1 else f'{self.scale:g} of its size'
        return f'each image at its {what}' + (
            f', long side capped at {self.max_side} px' if self.max_side else '')


def parse_resolution(resolution: Optional[str] = None,
                     max_side: Optional[int] = None) -> Resolution:
    """``resolution`` 'config' (or None), 'native' or a positive factor such as '0.5';
    ``max_side`` caps the long side and implies 'native' when no factor is given. A
    :class:`UsageError` names a value that is none of these."""
    text = 'config' if resolution is None else str(resolution).strip().lower()
    if max_side is not None and max_side < 32:
        raise UsageError(f'--max-side is the longest image side in pixels (32 or more), got '
                         f'{max_side}')
    if text == 'config':
        return Resolution(1.0, max_side) if max_side is not None else Resolution()
    if text == 'native':
        return Resolution(1.0, max_side)
    try:
        scale = float(text)
    except ValueError:
        scale = float('nan')
    if not 0 < scale <= 16:  # also refuses nan and inf
        raise UsageError(f"--resolution is 'config', 'native' or a factor of each image's size "
                         f"(0 < factor <= 16, e.g. 0.5), got {resolution!r}")
    return Resolution(scale, max_side)


def add_resolution_args(parser: argparse.ArgumentParser) -> None:
    """The ``--resolution`` and ``--max-side`` options of the inference and test tools."""
    parser.add_argument('--resolution', default='config', metavar='config|native|FACTOR',
                        help="the size images are predicted at: 'config' (the config's test "
                        "resize, e.g. 1333x800), 'native' (each image at its own size, "
                        'whole), or a factor of its own size (0.5)')
    parser.add_argument('--max-side', type=int, metavar='PIXELS',
                        help='cap the long side of each image at this many pixels (implies '
                        '--resolution native unless a factor is given)')


def set_test_resolution(cfg, resolution: Resolution) -> List[dict]:
    """Make ``cfg``'s test pipeline resize images to ``resolution`` (nothing to do for the
    config's own); returns the new pipeline. A pipeline without a resize gets one after its
    image loading."""
    if resolution.from_config:
        return innermost_dataset(cfg.test_dataloader.dataset)['pipeline']
    dataset = innermost_dataset(cfg.test_dataloader.dataset)
    resize = dict(type='ResizeToResolution', scale=resolution.scale,
                  max_side=resolution.max_side)
    pipeline: List[dict] = []
    for transform in dataset['pipeline']:
        name = str(transform.get('type', '')).rpartition('.')[2]
        if name in RESIZE_TRANSFORMS:
            if resize not in pipeline:
                pipeline.append(resize)
        elif name == 'Pad' and transform.get('size') is not None:
            continue  # a fixed canvas (RTMDet's 640 x 640) cannot hold a larger image
        elif name == 'LoadAnnotations' and transform.get('with_mask'):  # mmdet's
            # ground-truth masks stay polygons: as bitmaps, each object of a large image
            # would cost the whole image's pixels (400 at 3072 px: 3.8 GB); the metrics read
            # the annotation file, not these
            pipeline.append(dict(transform, poly2mask=False))
        else:
            pipeline.append(transform)
    if resize not in pipeline:
        loaders = [i for i, t in enumerate(pipeline) if 'LoadImage' in str(t.get('type', ''))]
        if not loaders:
            raise UsageError('the test pipeline has no image loading transform to resize after')
        pipeline.insert(loaders[0] + 1, resize)
    dataset['pipeline'] = pipeline
    return pipeline
