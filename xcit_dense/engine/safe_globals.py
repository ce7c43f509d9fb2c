"""Allow-list mmengine's checkpoint classes for torch's ``weights_only`` loading.

torch >= 2.6 loads checkpoints with ``weights_only=True``. mmengine 0.10.7 saves its message
hub (``HistoryBuffer`` with numpy arrays) and config objects into checkpoints, so ``--resume``
fails with "Unsupported global". Allow-listing exactly these classes keeps weights_only on:
any other pickled object is still refused.
"""
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


def allow_mmengine_checkpoint_classes() -> None:
    """Add mmengine's own checkpoint classes (and the numpy types they hold) to torch's
    weights_only allow-list."""
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer
    torch.serialization.add_safe_globals([HistoryBuffer, ConfigDict, *_numpy_globals()])
