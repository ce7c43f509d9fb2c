"""model-index.yml and its metafiles: well formed, every Config exists and is named after its
file, and the 24 release dense checkpoints of facebookresearch/xcit are each listed once, on
the config of their own variant, with exactly the numbers of the release READMEs (``PAPER``
below, the one copy of them outside the metafiles, which the docs' tables are made from)."""
import glob
import os
import re

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
URL = 'https://dl.fbaipublicfiles.com/xcit/'
SIZES = {'t12': 'tiny_12', 's12': 'small_12', 's24': 'small_24', 'm24': 'medium_24'}
# folder: (release config pattern, release weights file, expected model Metadata)
RELEASE = {
    'mask_rcnn': (r'mask-rcnn_xcit-(t12|s12|s24|m24)-p(\d+)_fpn_ms-crop-3x_coco',
                  'coco/maskrcnn_xcit_{}_p{}.pth', {'Epochs': 36, 'Training Data': 'COCO'}),
    'sem_fpn': (r'fpn_xcit-(\w+)-p(\d+)_8xb2-80k_ade20k-512x512', 'ade/sem_fpn_xcit_{}_p{}.pth',
                {'Iterations': 80000, 'Training Data': 'ADE20K'}),
    'upernet': (r'upernet_xcit-(\w+)-p(\d+)_8xb2-160k_ade20k-512x512',
                'ade/upernet_xcit_{}_p{}.pth', {'Iterations': 160000, 'Training Data': 'ADE20K'}),
}
# The independent reference, typed from facebookresearch/xcit's release READMEs (the tables
# "XCiT + Mask R-CNN models (3x schedule)" of detection/README.md: bbox mAP, mask mAP; "XCiT +
# Semantic FPN models (80k schedule)" and "XCiT + UperNet models (160k schedule)" of
# semantic_segmentation/README.md: mIoU), per (size, patch): COCO box AP, mask AP; ADE20k mIoU
# of Semantic FPN, of UperNet. Every metafile value must equal its entry here.
PAPER = {('t12', '16'): (42.7, 38.5, 38.1, 41.5), ('t12', '8'): (44.5, 40.3, 39.9, 43.5),
         ('s12', '16'): (45.3, 40.8, 43.9, 45.9), ('s12', '8'): (47.0, 42.3, 44.2, 46.6),
         ('s24', '16'): (46.5, 41.8, 44.6, 46.9), ('s24', '8'): (48.1, 43.0, 47.1, 48.1),
         ('m24', '16'): (46.7, 42.0, 45.9, 47.6), ('m24', '8'): (48.5, 43.7, 46.9, 48.4)}


def load(path):
    with open(os.path.join(ROOT, path)) as f:
        return yaml.safe_load(f)


INDEX = load('model-index.yml')
METAFILES = {path: load(path) for path in INDEX['Import']}
MODELS = [m for meta in METAFILES.values() for m in meta['Models']]


def release_variant(folder, config):
    """(size, patch) of a release config of ``folder`` (e.g. ``('s12', '8')``), None for any
    other config."""
    match = re.fullmatch(RELEASE[folder][0] + r'\.py', os.path.basename(config))
    return match.groups() if match else None


def paper_results(folder, size, patch):
    """The Results a metafile must give a release config: the README's numbers, exactly."""
    box, mask, fpn, upernet = PAPER[size, patch]
    if folder == 'mask_rcnn':
        return [dict(Task='Object Detection', Dataset='COCO', Metrics={'box AP': box}),
                dict(Task='Instance Segmentation', Dataset='COCO', Metrics={'mask AP': mask})]
    miou = {'sem_fpn': fpn, 'upernet': upernet}[folder]
    return [dict(Task='Semantic Segmentation', Dataset='ADE20K', Metrics={'mIoU': miou})]


def test_index_imports_the_three_metafiles():
    assert INDEX['Import'] == ['configs/mask_rcnn/metafile.yml', 'configs/sem_fpn/metafile.yml',
                               'configs/upernet/metafile.yml']


@pytest.mark.parametrize('path', sorted(METAFILES))
def test_metafile_structure(path):
    meta = METAFILES[path]
    collections = {c['Name'] for c in meta['Collections']}
    assert len(collections) == len(meta['Collections']) >= 1
    for model in meta['Models']:
        assert model['In Collection'] in collections
        assert os.path.dirname(model['Config']) == os.path.dirname(path)
        assert os.path.isfile(os.path.join(ROOT, model['Config'])), model['Config']
        assert model['Name'] == os.path.splitext(os.path.basename(model['Config']))[0]
        # every listed model is a release checkpoint's config, with the release README's
        # numbers: exactly, per model (its tasks, datasets, metric names and values)
        folder = os.path.basename(os.path.dirname(path))
        variant = release_variant(folder, model['Config'])
        assert variant is not None, model['Config']
        assert model['Results'] == paper_results(folder, *variant), model['Name']


def test_names_and_weights_are_unique():
    names = [m['Name'] for m in MODELS]
    weights = [m['Weights'] for m in MODELS if 'Weights' in m]
    assert len(names) == len(set(names)) == 24
    assert len(weights) == len(set(weights)) == 24


@pytest.mark.parametrize('folder', sorted(RELEASE))
def test_every_release_config_carries_its_release_weights(folder):
    _, weights, metadata = RELEASE[folder]
    listed = {m['Config']: m for m in MODELS}
    configs = sorted(os.path.relpath(p, ROOT) for p in glob.glob(f'{ROOT}/configs/{folder}/*.py'))
    found = [c for c in configs if release_variant(folder, c)]
    assert len(found) == 8, found
    # the eight variants of the README, each once
    assert sorted(release_variant(folder, c) for c in found) == sorted(PAPER)
    assert sorted(c for c in listed if c.startswith(f'configs/{folder}/')) == found
    for config in found:
        size, patch = release_variant(folder, config)
        model = listed[config]
        assert model['Weights'] == URL + weights.format(SIZES[size], patch)
        assert {k: model['Metadata'][k] for k in metadata} == metadata
        assert model['Results'] == paper_results(folder, size, patch), config


def test_release_config_names_are_aliases_of_the_listed_configs():
    """``configs/xcit/`` mirrors the release's config paths (so its commands run as they are):
    one alias per release checkpoint, each giving exactly the config listed with its weights:
    its only statement is ``_base_ = <that config>`` (read from the file's syntax tree, which
    is exact and spares resolving 48 configs with mmdet's and mmseg's bases)."""
    import ast
    aliases = sorted(glob.glob(f'{ROOT}/configs/xcit/**/*.py', recursive=True))
    by_weights = {os.path.basename(m['Weights'])[:-len('.pth')]: m['Config'] for m in MODELS}
    names = [os.path.basename(a)[:-len('.py')] for a in aliases]
    # release config name -> release weights name: drop the schedule, maskrcnn without '_'
    weights = [re.sub(r'_(3x_coco|80k_ade20k|160k_ade20k)$', '', n).replace(
        'mask_rcnn_', 'maskrcnn_') for n in names]
    assert sorted(weights) == sorted(by_weights)
    for alias, name in zip(aliases, weights):
        folder = os.path.relpath(os.path.dirname(alias), f'{ROOT}/configs/xcit')
        assert folder == {'mask': '.', 'sem_': 'sem_fpn', 'uper': 'upernet'}[name[:4]]
        with open(alias) as f:
            body = ast.parse(f.read()).body
        assert len(body) == 1 and isinstance(body[0], ast.Assign), alias
        (target,), base = body[0].targets, body[0].value
        assert target.id == '_base_' and isinstance(base.value, str), alias
        assert os.path.normpath(os.path.join(os.path.dirname(alias), base.value)) == (
            os.path.join(ROOT, by_weights[name])), alias


def test_eval_option_selects_the_release_metrics():
    from mmengine.config import Config

    import xcit_dense  # noqa: F401
    from xcit_dense.engine import select_metrics
    det = Config.fromfile(os.path.join(ROOT, 'configs/xcit/mask_rcnn_xcit_small_12_p8_3x_coco.py'))
    select_metrics(det, ['bbox'])
    assert det.test_evaluator.metric == ['bbox'] and det.test_evaluator.type == 'CocoMetric'
    seg = Config.fromfile(os.path.join(
        ROOT, 'configs/xcit/sem_fpn/sem_fpn_xcit_small_12_p8_80k_ade20k.py'))
    select_metrics(seg, ['mIoU', 'mDice'])
    assert seg.test_evaluator.iou_metrics == ['mIoU', 'mDice']
    with pytest.raises(ValueError, match=re.escape(
            "--eval mIoU: the config's test evaluators cannot compute these; they are "
            "{'CocoMetric': ('bbox', 'segm', 'proposal', 'proposal_fast')}")):
        select_metrics(det, ['mIoU'])
