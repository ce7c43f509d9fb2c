"""The toy dataset generators: deterministic by seed, annotations that match the pixels."""
import hashlib
import json
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from xcit_dense.datasets import TOY_ADE_CLASSES, generate_toy_ade, generate_toy_coco


def digest(root):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            with open(os.path.join(dirpath, name), 'rb') as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


def test_toy_coco_is_deterministic_by_seed(tmp_path):
    generate_toy_coco(str(tmp_path / 'a'), 4, 2, seed=3)
    generate_toy_coco(str(tmp_path / 'b'), 4, 2, seed=3)
    generate_toy_coco(str(tmp_path / 'c'), 4, 2, seed=4)
    assert digest(tmp_path / 'a') == digest(tmp_path / 'b') != digest(tmp_path / 'c')


def test_toy_coco_annotations_match_the_drawn_shapes(tmp_path):
    files = generate_toy_coco(str(tmp_path), 6, 2, size=160, seed=0)
    with open(files['train']) as f:
        coco = json.load(f)
    assert [c['name'] for c in coco['categories']] == ['circle', 'square', 'triangle']
    assert len(coco['images']) == 6 and coco['annotations']
    images = {im['id']: im for im in coco['images']}
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        assert 0 <= x and 0 <= y and x + w <= 160 and y + h <= 160 and w > 10 and h > 10
        rle = mask_utils.frPyObjects(ann['segmentation'], 160, 160)
        mask = mask_utils.decode(rle)[..., 0].astype(bool)
        assert abs(mask.sum() - ann['area']) / ann['area'] < 0.1
        # the mask covers one flat-coloured shape: most of its pixels have the same colour
        img = np.asarray(Image.open(tmp_path / 'train' / images[ann['image_id']]['file_name']))
        _, counts = np.unique(img[mask].reshape(-1, 3), axis=0, return_counts=True)
        assert counts.max() / mask.sum() > 0.8


def test_toy_ade_layout_and_labels(tmp_path):
    generate_toy_ade(str(tmp_path), 3, 2, size=128, seed=0)
    for split, count in (('training', 3), ('validation', 2)):
        images = sorted(os.listdir(tmp_path / 'images' / split))
        labels = sorted(os.listdir(tmp_path / 'annotations' / split))
        assert len(images) == len(labels) == count
        assert [i[:-4] for i in images] == [lbl[:-4] for lbl in labels]
    label = np.asarray(Image.open(tmp_path / 'annotations/training/toy_training_000001.png'))
    assert label.dtype == np.uint8 and label.shape == (128, 128)
    assert set(np.unique(label)) <= set(range(len(TOY_ADE_CLASSES) + 1))
    assert (label == 1).mean() > 0.3  # mostly background
    # label 0 ("not labelled", ignored with reduce_zero_label) only on shape outlines
    zero = label == 0
    assert zero.any() and zero.mean() < 0.1
    a = tmp_path / 'again'
    generate_toy_ade(str(a), 3, 2, size=128, seed=0)
    for part in ('images', 'annotations'):
        assert digest(a / part) == digest(tmp_path / part)
