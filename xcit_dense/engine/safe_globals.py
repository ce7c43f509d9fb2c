"""Allow-list mmengine's checkpoint classes for torch's ``weights_only`` loading.

torch >= 2.6 loads checkpoints with ``weights_only=True``. mmengine 0.10.7 saves its message
hub (``HistoryBuffer`` with numpy arrays, and its statistics methods, which pickle as
``getattr(HistoryBuffer, 'mean')``) and config objects into checkpoints, so ``--resume`` fails
with "Unsupported global". Allow-listing exactly these keeps weights_only on: any other pickled
object is still refused. Ours: mmengine 0.10.7 allow-lists none of its own classes.
"""
import pickle

import numpy as np
import torch


def _numpy_globals() -> list:
    """The numpy reconstructors and dtypes that a pickled array or scalar needs."""
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = [type(np.dtype(t)) for t in
              ('float16', 'float32', 'float64', 'int8', 'int16', 'int32', 'int64', 'uint8',
               'bool')]
    return [_reconstruct, scalar, np.ndarray, np.dtype, *dtypes]


def _class_method_getter(*classes):
    """A ``getattr`` that only returns methods defined on ``classes`` (not ``builtins.getattr``,
    which would hand a pickle any attribute of any allowed object)."""
    def getattr_method(obj, name: str):
        if (obj in classes and not name.startswith('_') and callable(vars(obj).get(name))):
            return getattr(obj, name)
        raise pickle.UnpicklingError(
            f'weights_only loading refused getattr({obj!r}, {name!r}): only methods of '
            f'{[c.__name__ for c in classes]} are allowed')
    return getattr_method


def allow_mmengine_checkpoint_classes() -> None:
    """Add mmengine's own checkpoint classes (and the numpy types they hold) to torch's
    weights_only allow-list."""
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer
    torch.serialization.add_safe_globals([
        HistoryBuffer, ConfigDict, *_numpy_globals(),
        (_class_method_getter(HistoryBuffer), 'builtins.getattr'),
    ])
