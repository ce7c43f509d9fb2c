"""Image loading that names the culprit: a missing, truncated or corrupt image is a
:class:`BadImageError` saying which file and what is wrong, or, with ``skip_bad=True``, a
warning, and the dataset draws another sample."""
import os
import warnings
from typing import Optional

from mmcv.transforms import LoadImageFromFile


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
