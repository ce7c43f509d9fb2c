"""Reading a checkpoint file or URL safely (torch ``weights_only`` loading or safetensors), and
remembering which file each loaded tensor came from, so that errors raised far from the read
(a backbone's state-dict hook) can name the file."""
import argparse
import os
import pickle
import urllib.error
import weakref
from typing import Any, Dict, Tuple
from urllib.parse import urlparse

import torch

# Tensor id -> (weak reference to the tensor, file it was read from).
_SOURCES: Dict[int, Tuple[weakref.ref, str]] = {}
_LAST_READ: Dict[str, str] = {}


class CheckpointReadError(RuntimeError):
    """A checkpoint file or URL cannot be read: missing, not downloadable, truncated, not a
    checkpoint, or holding Python objects that weights_only loading refuses (nothing in it
    is executed). The message names the file."""


class CheckpointNotFoundError(CheckpointReadError, FileNotFoundError):
    """A local checkpoint path that is not a file."""


def _remember_source(obj: Any, source: str, depth: int = 2) -> None:
    """Record ``source`` for every tensor of a checkpoint (its values, one level of nesting
    such as ``state_dict`` or ``model``)."""
    if isinstance(obj, torch.Tensor):
        key = id(obj)
        _SOURCES[key] = (weakref.ref(obj, lambda _, key=key: _SOURCES.pop(key, None)), source)
    elif isinstance(obj, dict) and depth > 0:
        for value in obj.values():
            _remember_source(value, source, depth - 1)
    _LAST_READ['source'] = source


def source_of(state_dict: Dict[str, Any]) -> str:
    """Name the checkpoint that the tensors of ``state_dict`` were read from by
    :func:`load_state_dict_file`, for messages; without such tensors (an empty or in-memory
    state dict), say which file was read last."""
    for value in state_dict.values():
        entry = _SOURCES.get(id(value))
        if entry is not None and entry[0]() is value:
            return f'Checkpoint {entry[1]}'
    last = _LAST_READ.get('source')
    return 'The checkpoint being loaded' + (f' (the last file read was {last})' if last else '')


def download_checkpoint(url: str) -> str:
    """Download ``url`` once into torch's hub cache (``$TORCH_HOME/hub/checkpoints``, as
    ``torch.hub.load_state_dict_from_url`` does) and return the cached path; later calls read
    the cache. A failed download names the URL and the reason and leaves no partial file."""
    filename = os.path.basename(urlparse(url).path)
    if not filename:
        raise CheckpointReadError(f'Checkpoint URL {url!r} does not end with a file name')
    cached = os.path.join(torch.hub.get_dir(), 'checkpoints', filename)
    if os.path.isfile(cached):
        return cached
    os.makedirs(os.path.dirname(cached), exist_ok=True)
    try:
        # writes to a temporary file, renamed when complete
        torch.hub.download_url_to_file(url, cached, progress=False)
    except urllib.error.HTTPError as e:
        raise CheckpointReadError(f'Could not download checkpoint {url}: HTTP error {e.code} '
                                  f'({e.reason})') from e
    except urllib.error.URLError as e:
        raise CheckpointReadError(f'Could not download checkpoint {url}: {e.reason}') from e
    except OSError as e:
        raise CheckpointReadError(f'Could not download checkpoint {url}: {e}') from e
    return cached


def load_state_dict_file(path: str, map_location: Any = 'cpu') -> Dict:
    """Read a checkpoint: a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file, or an http(s)
    URL (downloaded once into torch's hub cache, see :func:`download_checkpoint`).

    Pickles are read with ``weights_only=True``: a file that carries arbitrary Python objects is
    refused, never executed (``argparse.Namespace``, which the XCiT/DeiT training script saves
    as ``args``, is allowed: it only holds plain values). Errors name the file and say what is
    wrong with it.
    """
    source = path
    if path.startswith(('http://', 'https://')):
        path = download_checkpoint(path)
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f'Checkpoint file {path!r} does not exist')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        try:
            ckpt = load_file(path, device='cpu')
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointReadError(f'{source!r} is not a readable safetensors file '
                                      f'(truncated or corrupt?): {e}') from e
        _remember_source(ckpt, source)
        return ckpt
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if 'unsupported global' not in str(e).lower():  # garbage bytes, not a refused class
            raise CheckpointReadError(f'{source!r} is not a readable PyTorch checkpoint '
                                      f'(truncated or not a checkpoint?): {e}') from e
        raise CheckpointReadError(
            f'{source!r} holds Python objects that weights_only loading does not allow, so it '
            'was refused and nothing in it was executed. Re-save it with tensors only, or '
            f'allow-list its classes with torch.serialization.add_safe_globals. ({e})') from e
    except Exception as e:  # zip/pickle readers raise RuntimeError, EOFError, ValueError...
        raise CheckpointReadError(f'{source!r} is not a readable PyTorch checkpoint (truncated '
                                  f'or not a checkpoint?): {type(e).__name__}: {e}') from e
    if not isinstance(ckpt, dict):
        raise CheckpointReadError(f'{source!r} holds a {type(ckpt).__name__}, not a checkpoint '
                                  'dict')
    _remember_source(ckpt, source)
    return ckpt
