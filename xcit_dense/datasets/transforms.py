"""Test-pipeline transforms: image loading that names the culprit (a missing, truncated or
corrupt image is a :class:`BadImageError` saying which file and what is wrong, or, with
``skip_bad=True``, a warning, and the dataset draws another sample), and the resize to an
image's own resolution (:class:`ResizeToResolution`)."""
import os
import warnings
from typing import Optional

from mmcv.transforms import BaseTransform, LoadImageFromFile


class BadImageError(RuntimeError):
    """An image of a dataset cannot be read."""


class LoadImageChecked(LoadImageFromFile):
    """``LoadImageFromFile`` (grayscale and RGBA images become 3-channel, as there) whose
    failures name the image and the reason.

    Args:
        skip_bad: Warn and return None for an unreadable image instead of raising; mmengine
            datasets then draw another sample in training (evaluation never skips: a test set
            with unreadable images is an error).
        **kwargs: ``LoadImageFromFile``'s arguments (``color_type``, ``backend_args``...).
    """

    def __init__(self, skip_bad: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.skip_bad = skip_bad

    def transform(self, results: dict) -> Optional[dict]:
        path = results['img_path']
        try:
            loaded = super().transform(results)
        except FileNotFoundError as e:
            return self._fail(path, 'does not exist', e)
        except Exception as e:  # mmcv asserts "failed to load image" on undecodable bytes
            size = os.path.getsize(path) if os.path.isfile(path) else 0
            return self._fail(path, f'cannot be decoded ({size} bytes: truncated, corrupt or '
                                    'not an image)', e)
        if loaded is None:  # ignore_empty=True in the config
            return self._fail(path, 'is empty or unreadable', None)
        return loaded

    def _fail(self, path: str, reason: str, error: Optional[Exception]) -> None:
        message = f'Image {path} {reason}'
        if self.skip_bad:
            warnings.warn(f'{message}; skipped (skip_bad=True), another sample is drawn.')
            return None
        raise BadImageError(f'{message}. Fix or remove it from the annotations, or set '
                            'skip_bad=True in LoadImageChecked to skip such images in '
                            'training.') from error

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f', skip_bad={self.skip_bad})'


class ResizeToResolution(BaseTransform):
    """Resize each image by its own factor: ``scale`` of its size, at most ``max_side`` pixels
    on its long side (the test pipeline's resize for ``--resolution``/``--max-side``).

    At factor 1 the image passes unchanged (no copy) and only the keys a resize sets are
    recorded (``img_shape``, ``scale_factor`` 1, ``keep_ratio``), so predictions come back in
    the image's own coordinates. Otherwise the codebase's ``Resize`` (mmdet's or mmseg's, by
    the default scope the pipeline is built in) resizes the image and its annotations.

    Args:
        scale: Factor of the image's own size (1: its own resolution).
        max_side: Largest long side in pixels after the resize (None: no cap).
    """

    def __init__(self, scale: float = 1.0, max_side: Optional[int] = None) -> None:
        if scale <= 0:
            raise ValueError(f'scale must be positive, got {scale}')
        if max_side is not None and max_side < 1:
            raise ValueError(f'max_side must be a positive number of pixels, got {max_side}')
        self.scale = float(scale)
        self.max_side = max_side
        from mmengine.registry import TRANSFORMS  # resolves 'Resize' in the current scope
        self.resize = TRANSFORMS.build(dict(type='Resize', scale_factor=1.0, keep_ratio=True))

    def factor(self, height: int, width: int) -> float:
        """The resize factor of an image of ``height`` x ``width`` pixels."""
        factor = self.scale
        if self.max_side is not None:
            factor = min(factor, self.max_side / max(height, width))
        return factor

    def transform(self, results: dict) -> dict:
        height, width = results['img'].shape[:2]
        factor = self.factor(height, width)
        if factor == 1.0:
            results.update(img_shape=(height, width), scale=(width, height),
                           scale_factor=(1.0, 1.0), keep_ratio=True)
            return results
        self.resize.scale_factor = (factor, factor)
        return self.resize(results)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(scale={self.scale}, max_side={self.max_side})'
