"""Reading a checkpoint file safely (torch ``weights_only`` loading or safetensors)."""
import os
import pickle
from typing import Dict

import torch


def load_state_dict_file(path: str) -> Dict:
    """Read ``path`` (``.pth``/``.pt``/``.bin``, ``.safetensors`` or an http(s) URL) on CPU.

    Pickles are read with ``weights_only=True``: a file that carries arbitrary Python objects is
    refused, never executed. Errors name the file and say what is wrong with it.
    """
    if path.startswith(('http://', 'https://')):
        return torch.hub.load_state_dict_from_url(path, map_location='cpu', weights_only=True)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Checkpoint file {path!r} does not exist')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        try:
            return load_file(path, device='cpu')
        except Exception as e:  # safetensors raises its own error types
            raise RuntimeError(f'{path!r} is not a readable safetensors file '
                               f'(truncated or corrupt?): {e}') from e
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        if 'unsupported global' not in str(e).lower():  # garbage bytes, not a refused class
            raise RuntimeError(f'{path!r} is not a readable PyTorch checkpoint '
                               f'(truncated or not a checkpoint?): {e}') from e
        raise RuntimeError(
            f'{path!r} holds Python objects that weights_only loading does not allow, so it '
            'was refused and nothing in it was executed. Re-save it with tensors only, or '
            f'allow-list its classes with torch.serialization.add_safe_globals. ({e})') from e
    except Exception as e:  # zip/pickle readers raise RuntimeError, EOFError, ValueError...
        raise RuntimeError(f'{path!r} is not a readable PyTorch checkpoint '
                           f'(truncated or not a checkpoint?): {type(e).__name__}: {e}') from e
    if not isinstance(ckpt, dict):
        raise RuntimeError(f'{path!r} holds a {type(ckpt).__name__}, not a checkpoint dict')
    return ckpt
