"""Sliced inference in the tools: ``--slice SIZE --overlap RATIO`` in ``tools/infer.py`` and
``tools/test.py``, ``slicing=`` in :func:`~xcit_dense.engine.inference.run_inference`.

Each image is cut into square slices of SIZE pixels that overlap by RATIO of a slice (SAHI's
layout, :func:`~xcit_dense.slice_grid.slice_windows`), every slice is predicted at the image's
own resolution, and the predictions are put together in the image's coordinates:

* detection: the model is wrapped by :class:`~xcit_dense.sliced_det.SlicedDetector` (SAHI's
  greedy non-maximum merging of the slices' instances; ``--slice-merge nms`` for NMS;
  ``--slice-with-whole`` adds one pass of the whole image resized as the config's test pipeline
  resizes it, as SAHI does by default);
* segmentation: mmseg's own ``slide`` inference (``test_cfg=dict(mode='slide', crop_size,
  stride)``), which averages the class scores where slices overlap.
"""
import argparse
from typing import Dict, NamedTuple, Optional, Tuple

from .build import config_scope
from .data_check import innermost_dataset
from .errors import UsageError
from .resolution import RESIZE_TRANSFORMS, Resolution, set_test_resolution


class Slicing(NamedTuple):
    """``size`` None: no slicing (the default); otherwise slices of ``size`` pixels sharing
    ``overlap`` of a slice with their neighbours, merged by ``merge`` (detection), with one
    resized whole-image pass joining the merge if ``with_whole``."""
    size: Optional[int] = None
    overlap: float = 0.2
    merge: str = 'nmm'
    with_whole: bool = False

    @property
    def enabled(self) -> bool:
        return self.size is not None

    @property
    def stride(self) -> int:
        from ..slice_grid import slice_stride
        return slice_stride(self.size, self.overlap)

    def describe(self) -> str:
        return (f'slices of {self.size} px overlapping by {self.overlap:g}, at the image\'s own '
                'resolution' + (' plus the resized whole image' if self.with_whole else ''))


def parse_slicing(size: Optional[int] = None, overlap: float = 0.2, merge: str = 'nmm',
                  with_whole: bool = False) -> Slicing:
    """The slicing options, checked (a :class:`UsageError` names a wrong value)."""
    from ..sliced_det import MERGES
    if size is None:
        if with_whole:
            raise UsageError('--slice-with-whole needs --slice SIZE')
        return Slicing()
    if size < 32:
        raise UsageError(f'--slice is the side of a slice in pixels (32 or more), got {size}')
    if not 0 <= overlap < 1:
        raise UsageError(f'--overlap is the fraction of a slice its neighbours share '
                         f'(0 <= overlap < 1), got {overlap}')
    if merge not in MERGES:
        raise UsageError(f"--slice-merge is one of {', '.join(MERGES)}, got {merge!r}")
    return Slicing(int(size), float(overlap), merge, bool(with_whole))


def add_slicing_args(parser: argparse.ArgumentParser) -> None:
    """The ``--slice``, ``--overlap``, ``--slice-merge`` and ``--slice-with-whole`` options."""
    parser.add_argument('--slice', type=int, metavar='SIZE', help='predict each image in '
                        'square slices of SIZE pixels at its own resolution and merge them '
                        '(detection: SAHI-style merge; segmentation: mmseg slide inference)')
    parser.add_argument('--overlap', type=float, default=0.2, metavar='RATIO',
                        help='with --slice: the fraction of a slice its neighbours share')
    parser.add_argument('--slice-merge', default='nmm', metavar='nmm|nms',
                        help='with --slice, detection: merge the pieces of an object (nmm, '
                        "SAHI's default) or keep the best-scored one (nms)")
    parser.add_argument('--slice-with-whole', action='store_true',
                        help='with --slice, detection: also predict the whole image resized '
                        "by the config's test pipeline and merge it with the slices")


def slicing_from_args(args: argparse.Namespace) -> Slicing:
    return parse_slicing(args.slice, args.overlap, args.slice_merge, args.slice_with_whole)


def set_test_slicing(cfg, slicing: Slicing, resolution: Resolution = Resolution()) -> None:
    """Make ``cfg`` predict its test images in slices (nothing to do without slicing): the test
    pipeline keeps each image at its own resolution, and the detector is wrapped or the
    segmentor's ``test_cfg`` set to slide (see the module's description). Slicing with a
    ``resolution`` other than the config's is a :class:`UsageError`."""
    if not slicing.enabled:
        return
    if not resolution.from_config:
        raise UsageError('--slice predicts every slice at the image\'s own resolution; it '
                         'cannot be combined with --resolution or --max-side')
    whole_scale = _config_test_scale(cfg) if slicing.with_whole else None
    set_test_resolution(cfg, Resolution(1.0))
    if config_scope(cfg) == 'mmseg':
        if slicing.with_whole or slicing.merge != 'nmm':
            raise UsageError('--slice-with-whole and --slice-merge are detection options; '
                             "segmentation slices are merged by mmseg's slide inference")
        cfg.model.test_cfg = dict(cfg.model.get('test_cfg') or {}, mode='slide',
                                  crop_size=(slicing.size, slicing.size),
                                  stride=(slicing.stride, slicing.stride))
        return
    _, cap = detections_cap(cfg.model.get('test_cfg') or {})
    cfg.model = dict(type='SlicedDetector', module=cfg.model, slice_size=slicing.size,
                     overlap=slicing.overlap, merge=slicing.merge, whole_scale=whole_scale,
                     max_per_img=cap)


def detections_cap(test_cfg: Dict) -> Tuple[Optional[str], Optional[int]]:
    """The key and value of the most detections a detector's ``test_cfg`` keeps per image
    (``rcnn.max_per_img`` for two-stage detectors, ``max_per_img`` for the others)."""
    for key in ('rcnn', None):
        node = test_cfg.get(key) if key else test_cfg
        if isinstance(node, dict) and node.get('max_per_img') is not None:
            return (f'model.test_cfg.{key}.max_per_img' if key else
                    'model.test_cfg.max_per_img'), int(node['max_per_img'])
    return None, None


def _config_test_scale(cfg) -> tuple:
    """The ``scale`` of the config's test resize, for the whole-image pass."""
    for transform in innermost_dataset(cfg.test_dataloader.dataset)['pipeline']:
        if str(transform.get('type', '')).rpartition('.')[2] in RESIZE_TRANSFORMS and \
                transform.get('scale'):
            scale = transform['scale']
            return tuple(scale) if isinstance(scale, (list, tuple)) else (scale, scale)
    raise UsageError('--slice-with-whole resizes the whole image as the test pipeline does, '
                     'but the test pipeline has no Resize with a scale')
