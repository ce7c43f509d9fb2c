"""Stop early, with one clear message, when a config's dataset is not where it points."""
import os
from typing import List

DATASET_HELP = {
    'CocoDataset': 'COCO 2017 (train2017/, val2017/, annotations/instances_*2017.json)',
    'ADE20KDataset': 'ADEChallengeData2016 (images/ and annotations/, training and validation)',
}


class DatasetNotFoundError(FileNotFoundError):
    """A config's dataset files are missing."""


def _dataset_paths(dataset: dict) -> List[str]:
    """The files and folders a dataset config reads (annotation file, image/label folders)."""
    if 'dataset' in dataset:  # wrappers such as RepeatDataset
        return _dataset_paths(dataset['dataset'])
    root = dataset.get('data_root') or ''
    paths = []
    if dataset.get('ann_file'):
        paths.append(os.path.join(root, dataset['ann_file']))
    for prefix in (dataset.get('data_prefix') or {}).values():
        if isinstance(prefix, str) and prefix:
            paths.append(os.path.join(root, prefix))
    if not paths and root:
        paths.append(root)
    return paths


def check_datasets_exist(cfg, loaders=('train_dataloader', 'val_dataloader',
                                       'test_dataloader')) -> None:
    """Raise :class:`DatasetNotFoundError` naming the missing paths of the given dataloaders,
    where the data must be, and how to run the bundled toy demo instead."""
    for loader in loaders:
        dataset = (cfg.get(loader) or {}).get('dataset')
        if not dataset:
            continue
        missing = [p for p in _dataset_paths(dataset) if not os.path.exists(p)]
        if missing:
            kind = dataset.get('type', 'dataset')
            expected = DATASET_HELP.get(kind, kind)
            root = dataset.get('data_root') or os.path.dirname(missing[0])
            raise DatasetNotFoundError(
                f'{loader}: the {kind} data is not where the config points: missing '
                f'{", ".join(missing)}.\nPut {expected} under {os.path.abspath(root)} (or '
                'set data_root with --cfg-options), or run the toy demo, which needs no '
                'download: make demo (detection) or make demo-seg (segmentation).')
