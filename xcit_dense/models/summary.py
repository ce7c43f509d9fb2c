"""The README's preset tables, generated from the presets and the models as built.

``tools/analysis_tools/param_table.py`` prints them; ``tests/test_param_counts.py`` checks
that the README's tables are these, and their numbers the built models' counts. Parameter
counts are of the backbone as built with its defaults (the trunk plus the pyramid adapter;
the classification models' heads and final norms, XCiT's class-attention blocks and
CrossViT's last fusion are not part of it), in millions with one decimal. The norm of the
pyramid (BN, SyncBN, GN) does not change them.
"""
import functools
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from . import crossvit, xcit

FAMILIES = ('xcit', 'crossvit')
# The README section whose first table lists each family's presets.
README_HEADINGS = {'xcit': '## The backbone', 'crossvit': '## CrossViT, for comparison'}
HEADERS: Dict[str, Tuple[str, ...]] = {
    'xcit': ('arch', 'short', 'embed_dim', 'depth', 'heads', 'eta',
             'backbone params, patch_size 8 / 16 (trunk + pyramid, as built here)'),
    'crossvit': ('arch', 'embed_dim', 'blocks per multi-scale block (small, large)', 'heads',
                 'MLP ratio',
                 'backbone params (trunk + pyramid, as built here, patch_strides=(8, 16))'),
}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def millions(n: int) -> str:
    """A parameter count as the tables print it: ``6500832`` -> ``'6.5M'``."""
    return f'{n / 1e6:.1f}M'


class _LinspaceOnCPU(TorchFunctionMode):
    """Inside ``torch.device('meta')``, keep ``torch.linspace`` on the CPU: CrossViT (as
    timm's models) reads its drop-path schedule back as floats, which a meta tensor cannot
    give. Every parameter is still created on the meta device."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.linspace and kwargs.get('device') is None:
            kwargs['device'] = 'cpu'
        return func(*args, **kwargs)


@functools.lru_cache(maxsize=None)  # a table and its test build each preset once
def backbone_params(family: str, arch: str, **kwargs) -> int:
    """Parameters of the backbone ``family`` (``'xcit'`` or ``'crossvit'``) built with the
    preset ``arch`` and ``kwargs`` (hashable; the other arguments at their defaults).

    Built on the meta device: shapes only, no memory, no initialisation cost.
    """
    builders = {'xcit': xcit.XCiT, 'crossvit': crossvit.CrossViT}
    if family not in builders:
        raise KeyError(f'Unknown backbone family {family!r}; valid ones are {FAMILIES}')
    with torch.device('meta'), _LinspaceOnCPU():
        return count_parameters(builders[family](arch, **kwargs))


def _same_or_each(values: Sequence) -> str:
    """``(3, 3)`` -> ``'3'``, ``(3, 4)`` -> ``'3, 4'`` (numbers as ``%g``)."""
    text = [f'{v:g}' for v in values]
    return text[0] if len(set(text)) == 1 else ', '.join(text)


def _eta(eta: float) -> str:
    return repr(float(eta)).replace('e-0', 'e-')  # 1.0, 1e-5


def _crossvit_depth(depth: Sequence[Sequence[int]]) -> str:
    """``((1, 4, 0),) * 3`` -> ``'1, 4'``; per multi-scale block (``'1, 4 / 1, 3'``) and
    with the fusion layers (``'1, 4, +1'``) where they are not all alike or not zero."""
    each = [', '.join(map(str, d[:-1])) + (f', +{d[-1]}' if d[-1] else '') for d in depth]
    return each[0] if len(set(each)) == 1 else ' / '.join(each)


def preset_rows(family: str) -> List[List[str]]:
    """The table rows (cells as printed) of the family's presets, in preset order.

    XCiT: one row per preset, with the counts at patch sizes 8 and 16. CrossViT: one row per
    shape (presets differing only in the patch embedding or the position grids share a row,
    ``'9 / 9_dagger'``, with one count each), counted at the default strides (8, 16).
    """
    rows = []
    if family == 'xcit':
        short = {name: alias for alias, name in xcit.ARCH_ALIASES.items()}
        for name, cfg in xcit.ARCH_ZOO.items():
            params = ' / '.join(millions(backbone_params('xcit', name, patch_size=p))
                                for p in xcit.PATCH_SIZES)
            rows.append([name, short.get(name, ''), str(cfg['embed_dim']), str(cfg['depth']),
                         str(cfg['num_heads']), _eta(cfg['eta']), params])
        return rows
    if family == 'crossvit':
        groups: Dict[Tuple, List[str]] = {}
        for name, cfg in crossvit.ARCH_ZOO.items():
            shape = (tuple(cfg['embed_dim']), tuple(map(tuple, cfg['depth'])),
                     tuple(cfg['num_heads']), tuple(cfg['mlp_ratio']))
            groups.setdefault(shape, []).append(name)
        for (embed_dim, depth, num_heads, mlp_ratio), names in groups.items():
            params = ' / '.join(millions(backbone_params('crossvit', n)) for n in names)
            rows.append([' / '.join(names), ', '.join(map(str, embed_dim)),
                         _crossvit_depth(depth), _same_or_each(num_heads),
                         _same_or_each(mlp_ratio), params])
        return rows
    raise KeyError(f'Unknown backbone family {family!r}; valid ones are {FAMILIES}')


def markdown_table(family: str) -> str:
    """The family's preset table in markdown, as in the README (no trailing newline)."""
    header = HEADERS[family]
    lines = ['| ' + ' | '.join(header) + ' |', '| ' + ' | '.join(['---'] * len(header)) + ' |']
    lines += ['| ' + ' | '.join(row) + ' |' for row in preset_rows(family)]
    return '\n'.join(lines)
