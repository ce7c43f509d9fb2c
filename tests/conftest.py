import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def randomize_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Give every BatchNorm, LayerScale and temperature non-trivial values, so equivalence
    tests cannot pass by symmetry of the default initialisation."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.1)
                m.bias.normal_(0, 0.1)
        for name, p in model.named_parameters():
            if 'temperature' in name or 'gamma' in name:
                p.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope='session')
def randomize():
    return randomize_norms
