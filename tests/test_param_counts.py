"""Each preset has the XCiT paper's size (Table 1), and the backbone keeps exactly the
classification model's trunk plus the pyramid adapters (XCiT and CrossViT); the preset tables
of docs/backbones.md are the generated ones, and their counts the built models'."""
from pathlib import Path

import pytest
import timm
import torch

from xcit_dense.models import BranchPyramid, CrossViT, SimplePyramid
from xcit_dense.models.crossvit import ARCH_ZOO as CROSSVIT_ARCHS
from xcit_dense.models.summary import (FAMILIES, README_HEADINGS, backbone_params,
                                       markdown_table)
from xcit_dense.models.xcit import ARCH_ZOO as XCIT_ARCHS

# the page holding the preset tables, under the headings README_HEADINGS names
README = Path(__file__).resolve().parents[1] / 'docs' / 'backbones.md'

PAPER_MILLIONS = {'nano_12': 3, 'tiny_12': 7, 'tiny_24': 12, 'small_12': 26, 'small_24': 48,
                  'medium_24': 84, 'large_24': 189}
DROPPED = ('cls_token', 'cls_attn_blocks.', 'norm.', 'head.')


def count(params):
    return sum(p.numel() for p in params)


@pytest.mark.parametrize('patch_size', [8, 16])
@pytest.mark.parametrize('arch', list(PAPER_MILLIONS))
def test_param_counts(arch, patch_size):
    with torch.device('meta'):  # shapes only: no memory, no initialisation cost
        ref = timm.create_model(f'xcit_{arch}_p{patch_size}_224')
        pyramid = SimplePyramid(XCIT_ARCHS[arch]['embed_dim'], patch_size)
    total = count(ref.parameters())
    assert round(total / 1e6) == PAPER_MILLIONS[arch]
    dropped = count(p for n, p in ref.named_parameters() if n.startswith(DROPPED))
    # the backbone, built once (on the meta device) for this test and the docs' table
    built = backbone_params('xcit', arch, patch_size=patch_size)
    assert built == total - dropped + count(pyramid.parameters())


@pytest.mark.parametrize('arch', list(CROSSVIT_ARCHS))
def test_crossvit_param_counts(arch):
    """timm's classification model less its final norms, heads and last fusion (which only
    updates the class tokens), plus the pyramid; the stride-8 embedding has the same weights."""
    name = f'crossvit_{arch}' if arch.endswith('_408') else f'crossvit_{arch}_240'
    with torch.device('meta'):
        ref = timm.create_model(name)
        pyramid = BranchPyramid(CROSSVIT_ARCHS[arch]['embed_dim'], (8, 16))
    last = len(ref.blocks) - 1
    dropped = count(p for n, p in ref.named_parameters() if n.startswith(
        ('norm.', 'head.', f'blocks.{last}.projs.', f'blocks.{last}.fusion.',
         f'blocks.{last}.revert_projs.')))
    expected = count(ref.parameters()) - dropped + count(pyramid.parameters())
    assert backbone_params('crossvit', arch) == expected


def test_crossvit_counts_built_on_the_meta_device_are_the_cpu_builds():
    """``backbone_params`` builds CrossViT on the meta device, its drop-path schedule on the
    CPU: the same count as the CPU build's."""
    assert backbone_params('crossvit', 'tiny') == count(CrossViT('tiny').parameters())


def readme_table(family):
    """The lines of the first table under the family's heading in docs/backbones.md."""
    lines = README.read_text(encoding='utf-8').splitlines()
    heading = README_HEADINGS[family]
    assert heading in lines, f'docs/backbones.md has no heading {heading!r}'
    table = []
    for line in lines[lines.index(heading) + 1:]:
        if line.startswith('#') or (table and not line.startswith('|')):
            break
        if line.startswith('|'):
            table.append(line)
    assert table, f'docs/backbones.md has no table under {heading!r}'
    return table


def cells(line):
    return [c.strip() for c in line.strip().strip('|').split('|')]


@pytest.mark.parametrize('family', FAMILIES)
def test_readme_preset_tables_are_generated(family):
    """Regenerate with ``python tools/analysis_tools/param_table.py``."""
    assert '\n'.join(readme_table(family)) == markdown_table(family)


@pytest.mark.parametrize('family', FAMILIES)
def test_readme_param_counts_are_the_built_models(family):
    """Every preset has a row, and every count in the last column is the model's as built
    (XCiT: patch sizes 8 / 16; CrossViT: one count per preset of the row, default strides)."""
    header, separator, *rows = map(cells, readme_table(family))
    assert 'params' in header[-1] and set(separator) == {'---'}
    listed = []
    for row in rows:
        if family == 'xcit':
            archs, settings = [row[0]] * 2, [dict(patch_size=8), dict(patch_size=16)]
        else:
            archs = row[0].split(' / ')
            settings = [{}] * len(archs)
        listed += dict.fromkeys(archs)
        built = [backbone_params(family, a, **kw) for a, kw in zip(archs, settings)]
        assert row[-1].split(' / ') == [f'{n / 1e6:.1f}M' for n in built], row
    assert sorted(listed) == sorted(XCIT_ARCHS if family == 'xcit' else CROSSVIT_ARCHS)
