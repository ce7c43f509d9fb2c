"""Stop early, with one clear message, when a config's dataset is not where it points or its
COCO annotations are broken: before the run writes anything."""
import os
import warnings
from typing import List

from ..datasets.validate import AnnotationError, load_coco_annotations

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


def check_coco_dataset(dataset: dict) -> None:
    """Check a COCO-format dataset config's annotation file
    (:func:`~xcit_dense.datasets.validate.load_coco_annotations`) and that every image it lists
    exists; raises :class:`~xcit_dense.datasets.validate.AnnotationError` naming the
    culprits."""
    if 'dataset' in dataset:
        return check_coco_dataset(dataset['dataset'])
    root = dataset.get('data_root') or ''
    ann_file = os.path.join(root, dataset['ann_file'])
    data = load_coco_annotations(ann_file)
    img_dir = os.path.join(root, (dataset.get('data_prefix') or {}).get('img', ''))
    absent = [i['file_name'] for i in data['images']
              if not os.path.isfile(os.path.join(img_dir, i['file_name']))]
    if absent:
        message = (f'{len(absent)} images listed in {ann_file} are missing from {img_dir}: '
                   f'{", ".join(absent[:10])}{" ..." if len(absent) > 10 else ""}')
        skips = any(t.get('type') == 'LoadImageChecked' and t.get('skip_bad')
                    for t in dataset.get('pipeline') or [])
        if not skips:
            raise AnnotationError(message)
        warnings.warn(message + '; they will be skipped (skip_bad=True).')


def check_datasets_exist(cfg, loaders=('train_dataloader', 'val_dataloader',
                                       'test_dataloader')) -> None:
    """Raise :class:`DatasetNotFoundError` naming the missing paths of the given dataloaders,
    where the data must be, and how to run the bundled toy demo instead; then check COCO
    annotation files (:func:`check_coco_dataset`)."""
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
        if 'Coco' in str(dataset.get('type', '')) or 'Coco' in str(
                (dataset.get('dataset') or {}).get('type', '')):
            check_coco_dataset(dataset)
