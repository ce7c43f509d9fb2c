import os
from typing import Optional

# `make test` runs pytest-xdist workers (two, one per core here): each worker, and the
# tools it starts, computes on one thread (two OpenMP teams sharing two cores wait for each
# other, which makes the chunked loops several times slower).
if int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1')) > 1:
    os.environ.setdefault('OMP_NUM_THREADS', '1')

import pytest  # noqa: E402
import torch  # noqa: E402

if int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1')) > 1:
    torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope='session')
def _data_check_stamps(tmp_path_factory):
    """The dataset check's stamps (and those of the tools the tests run) go to a temporary
    folder, not the user's cache."""
    os.environ['XCIT_DENSE_DATA_CHECK_CACHE'] = str(tmp_path_factory.mktemp('data_check'))


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


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


DET_CONFIG = os.path.join(ROOT, 'configs/toy/mask-rcnn_xcit-n12-p8_fpn-64_toy-shapes.py')
SEG_CONFIG = os.path.join(ROOT, 'configs/toy/fpn_xcit-n12-p8_toy-ade-128x128.py')


def toy_config(kind: str, data_root: str, work_dir, name: str,
               config: Optional[str] = None):
    """The toy detection (``'det'``) or segmentation (``'seg'``) config (XCiT's, or
    ``config``, a path under the repository) on ``data_root``, with data loading in the main
    process (so tests are quick and fully seeded)."""
    from mmengine.config import Config
    if config is None:
        config = DET_CONFIG if kind == 'det' else SEG_CONFIG
    cfg = Config.fromfile(os.path.join(ROOT, config))
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = data_root
        loader.num_workers, loader.persistent_workers = 0, False
    if kind == 'det':
        for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
            evaluator.ann_file = os.path.join(data_root, 'annotations/instances_val.json')
    cfg.work_dir, cfg.experiment_name = str(work_dir), name
    return cfg


@pytest.fixture(scope='session')
def toy_cfg():
    return toy_config


@pytest.fixture(scope='session')
def toy_coco_root(tmp_path_factory):
    """8 training and 4 validation images of toy shapes, COCO layout."""
    from xcit_dense.datasets import generate_toy_coco
    root = tmp_path_factory.mktemp('toy_coco')
    generate_toy_coco(str(root), num_train=8, num_val=4, seed=1)
    return str(root) + '/'


@pytest.fixture(scope='session')
def toy_ade_root(tmp_path_factory):
    """8 training and 4 validation images of toy shapes, ADE20k layout."""
    from xcit_dense.datasets import generate_toy_ade
    root = tmp_path_factory.mktemp('toy_ade')
    generate_toy_ade(str(root), num_train=8, num_val=4, seed=1)
    return str(root)
