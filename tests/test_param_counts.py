"""Each preset has the XCiT paper's size (Table 1), and the backbone keeps exactly the
classification model's trunk plus the pyramid adapters."""
import pytest
import timm
import torch

from xcit_dense.models import XCiT

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
        model = XCiT(arch, patch_size=patch_size)
    total = count(ref.parameters())
    assert round(total / 1e6) == PAPER_MILLIONS[arch]
    dropped = count(p for n, p in ref.named_parameters() if n.startswith(DROPPED))
    assert count(model.parameters()) == total - dropped + count(model.pyramid.parameters())
