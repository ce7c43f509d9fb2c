"""The pre-flight data check at scale (issue 13): the same verdicts and messages as the plain
``json.load`` check it replaced, image existence from folder listings (no stat per image),
once per job (rank 0), once per file version (stamps), and the benchmark tool. By dataset
type (issue 21): COCO panoptic files checked as such, and the types the check does not
understand (LVIS, Objects365 v2, custom) never refused."""
import importlib.util
import json
import os
import re
import shutil
import tracemalloc
import warnings

import pytest

from xcit_dense.datasets import generate_toy_coco, generate_toy_coco_panoptic
from xcit_dense.datasets.validate import AnnotationError, check_coco_annotations
from xcit_dense.engine import DatasetNotFoundError, check_datasets_exist, data_check
from xcit_dense.engine.data_check import (annotation_format, check_coco_dataset,
                                          check_coco_panoptic_dataset, find_missing_files)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, 'tools', 'analysis_tools', 'benchmark_data_check.py')


def load_bench():
    spec = importlib.util.spec_from_file_location('benchmark_data_check', BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_bench()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Stamps in the test's folder, and no launcher's rank in the environment."""
    monkeypatch.setenv(data_check.CACHE_ENV, str(tmp_path / 'stamps'))
    for name in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK', 'LOCAL_RANK'):
        monkeypatch.delenv(name, raising=False)


def make_coco(tmp_path, images=12, annotations=60, name='coco'):
    root = str(tmp_path / name)
    bench.generate_coco(root, images, annotations, seed=3)
    return root


def dataset_cfg(root, skip_bad=False):
    cfg = bench._dataset_cfg(root)
    cfg['pipeline'] = [dict(type='LoadImageChecked', skip_bad=skip_bad)]
    return cfg


def ann_path(root):
    return os.path.join(root, 'annotations', 'instances_train2017.json')


def previous_check(dataset):
    """The check as it was before issue 13 (json.load, one isfile per image): the oracle."""
    root = dataset.get('data_root') or ''
    path = os.path.join(root, dataset['ann_file'])
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(f'Annotation file {path} is not valid JSON: {e.msg} at line '
                              f'{e.lineno}, column {e.colno}') from e
    except UnicodeDecodeError as e:
        raise AnnotationError(f'Annotation file {path} is not UTF-8 text (binary or '
                              f'corrupt?): {e}') from e
    if not isinstance(data, dict):
        raise AnnotationError(f'Annotation file {path} holds a JSON {type(data).__name__}, '
                              'not a COCO object')
    missing = [k for k in ('images', 'annotations', 'categories') if k not in data]
    if missing:
        raise AnnotationError(f'Annotation file {path} has no {missing} (a COCO instance '
                              'file has images, annotations and categories)')

    def sample(items, limit=10):
        return ', '.join(map(str, items[:limit])) + (f' (and {len(items) - limit} more)'
                                                     if len(items) > limit else '')
    category_ids = {c['id'] for c in data['categories']}
    image_ids = {i['id'] for i in data['images']}
    unknown_cat = [(a.get('id'), a.get('category_id')) for a in data['annotations']
                   if a.get('category_id') not in category_ids]
    if unknown_cat:
        raise AnnotationError(
            f'Annotation file {path}: {len(unknown_cat)} annotations refer to unknown '
            f'categories (annotation id, category_id): {sample(unknown_cat)}; the file '
            f'defines categories {sorted(category_ids)}')
    unknown_img = [(a.get('id'), a.get('image_id')) for a in data['annotations']
                   if a.get('image_id') not in image_ids]
    if unknown_img:
        raise AnnotationError(
            f'Annotation file {path}: {len(unknown_img)} annotations refer to unknown images '
            f'(annotation id, image_id): {sample(unknown_img)}')
    img_dir = os.path.join(root, (dataset.get('data_prefix') or {}).get('img', ''))
    absent = [i['file_name'] for i in data['images']
              if not os.path.isfile(os.path.join(img_dir, i['file_name']))]
    if absent:
        message = (f'{len(absent)} images listed in {path} are missing from {img_dir}: '
                   f'{", ".join(absent[:10])}{" ..." if len(absent) > 10 else ""}')
        if not any(t.get('type') == 'LoadImageChecked' and t.get('skip_bad')
                   for t in dataset.get('pipeline') or []):
            raise AnnotationError(message)
        warnings.warn(message + '; they will be skipped (skip_bad=True).')


def outcome(check, dataset):
    """('ok' | 'warn' | exception type name, message)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        try:
            check(dataset)
        except Exception as e:  # noqa: BLE001 - the verdict is what is compared
            return type(e).__name__, str(e)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    return ('warn', messages[0]) if messages else ('ok', '')


def text_edit(edit):
    def apply(root):
        path = ann_path(root)
        with open(path, encoding='utf-8') as f:
            text = f.read()
        with open(path, 'w', encoding='utf-8') as f:
            f.write(edit(text))
    return apply


def json_edit(edit):
    def apply(root):
        path = ann_path(root)
        with open(path) as f:
            data = json.load(f)
        edit(data)
        with open(path, 'w') as f:
            json.dump(data, f)
    return apply


def remove_images(count):
    def apply(root):
        for name in sorted(os.listdir(os.path.join(root, 'train2017')))[:count]:
            os.remove(os.path.join(root, 'train2017', name))
    return apply


def polygon_comma(text):  # a comma gone inside the first polygon
    i = text.index('"segmentation":[[') + 25
    i = text.index(',', i)
    return text[:i] + text[i + 1:]


def set_ann(index, **values):
    return json_edit(lambda d: d['annotations'][index].update(values))


def unknown_many(d):
    for a in d['annotations'][:13]:
        a['category_id'] = 1000 + a['id'] % 7


def float_image_ids(d):  # 1.0 == 1: valid for json.load's reading too
    for image in d['images']:
        image['id'] = float(image['id'])


def other_float_ids(d):
    d['images'][0]['id'] = 2.5
    for a in d['annotations']:
        if a['image_id'] == d['images'][1]['id']:
            a['image_id'] = 7.5


def image_is_a_folder(root):
    folder = os.path.join(root, 'train2017')
    name = sorted(os.listdir(folder))[0]
    os.remove(os.path.join(folder, name))
    os.mkdir(os.path.join(folder, name))


def subfolder(d):
    d['images'][0]['file_name'] = 'sub/' + d['images'][0]['file_name']


CASES = {
    'valid': lambda root: None,
    'one_character_gone': text_edit(lambda t: t.replace('"file_name":', '"file_name"', 1)),
    'comma_gone_in_a_polygon': text_edit(polygon_comma),
    'number_broken_in_a_polygon': text_edit(
        lambda t: t.replace('"segmentation":[[', '"segmentation":[[1..5,', 1)),
    'truncated': text_edit(lambda t: t[:len(t) * 2 // 3]),
    'windows_lines': text_edit(lambda t: t.replace('},{', '},\r\n{')[:-5000]),
    'byte_order_mark': text_edit(lambda t: '\ufeff' + t),
    'not_utf8': lambda root: open(ann_path(root), 'r+b').write(b'{"images": "\xff\xfe'),
    'empty': text_edit(lambda t: ''),
    'a_list': text_edit(lambda t: '[' + t + ']'),
    'a_float': text_edit(lambda t: '1.5'),
    'no_categories': json_edit(lambda d: d.pop('categories')),
    'unknown_category': set_ann(0, category_id=99, id=1),
    'unknown_categories_many': json_edit(unknown_many),
    'float_category': set_ann(3, category_id=1.5),
    'unknown_image': set_ann(0, image_id=12345, id=1),
    'float_image_ids': json_edit(float_image_ids),
    'other_float_ids': json_edit(other_float_ids),
    'image_without_id': json_edit(lambda d: d['images'][2].pop('id')),
    'float_file_name': json_edit(lambda d: d['images'][0].update(file_name=3.5)),
    'missing_image': remove_images(1),
    'missing_images_many': remove_images(11),
    'image_in_a_subfolder': json_edit(subfolder),
    'image_is_a_folder': lambda root: image_is_a_folder(root)}


@pytest.mark.parametrize('case,skip_bad', [(c, False) for c in CASES] + [
    (c, True) for c in ('valid', 'missing_image', 'missing_images_many', 'image_is_a_folder')])
def test_same_verdicts_and_messages_as_the_json_load_check(tmp_path, case, skip_bad):
    root = make_coco(tmp_path)
    CASES[case](root)
    dataset = dataset_cfg(root, skip_bad)
    expected = outcome(previous_check, dataset)
    assert outcome(check_coco_dataset, dataset) == expected
    assert outcome(check_coco_dataset, dataset) == expected  # with a stamp, if it passed
    if case == 'valid':
        assert expected == ('ok', '')
    elif case in ('missing_image', 'missing_images_many') and skip_bad:
        assert expected[0] == 'warn'
    elif case not in ('float_image_ids', 'image_in_a_subfolder'):
        assert expected[0] != 'ok', case


def test_lean_reading_keeps_no_floats_and_no_memory(tmp_path):
    root = make_coco(tmp_path, images=50, annotations=400)
    tracemalloc.start()
    names = check_coco_annotations(ann_path(root))
    current, peak = tracemalloc.get_traced_memory()
    del names
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert peak > 100_000 and after < 20_000  # the parsed file is gone when it returns
    tracemalloc.start()
    check_coco_dataset(dataset_cfg(root))
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert held < 20_000


def count_stats(monkeypatch):
    calls = []
    for module, name in ((os, 'stat'), (os, 'lstat'), (os.path, 'isfile'),
                         (os.path, 'exists'), (os.path, 'getsize')):
        real = getattr(module, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls.append((_name, args[0]))
            return _real(*args, **kwargs)
        monkeypatch.setattr(module, name, spy)
    return calls


def test_image_existence_without_a_stat_per_image(tmp_path, monkeypatch):
    counts = []
    for images in (5, 80):
        root = make_coco(tmp_path, images=images, annotations=2 * images, name=f'c{images}')
        for stamps in ('off', str(tmp_path / 'stamps')):  # with a stamp to write, or none
            monkeypatch.setenv(data_check.CACHE_ENV, stamps)
            with pytest.MonkeyPatch.context() as patch:
                calls = count_stats(patch)
                check_coco_dataset(dataset_cfg(root))
            assert not [c for c in calls if str(c[1]).endswith('.jpg')], calls
            counts.append(len(calls))
    # as many for 5 images as for 80: none without a stamp to write; with one, the stamp's
    # (the annotation file's and the folder's, real paths and cache folder)
    assert counts[0] == counts[2] == 0 and abs(counts[1] - counts[3]) <= 2, counts

    monkeypatch.setenv(data_check.CACHE_ENV, 'off')
    img_dir = os.path.join(root, 'train2017')
    os.remove(os.path.join(img_dir, sorted(os.listdir(img_dir))[0]))
    calls = count_stats(monkeypatch)
    with pytest.raises(AnnotationError, match='1 images listed in'):
        check_coco_dataset(dataset_cfg(root))
    assert len([c for c in calls if c[0] == 'isfile']) == 1  # the absent one, confirmed


def test_find_missing_files_agrees_with_isfile(tmp_path):
    folder = tmp_path / 'images'
    (folder / 'sub').mkdir(parents=True)
    for name in ('a.jpg', 'sub/b.jpg', 'target.jpg'):
        (folder / name).write_bytes(b'')
    (folder / 'dir.jpg').mkdir()
    os.symlink(folder / 'target.jpg', folder / 'link.jpg')
    os.symlink(folder / 'gone.jpg', folder / 'broken.jpg')
    names = ['a.jpg', 'sub/b.jpg', 'sub/c.jpg', 'dir.jpg', 'link.jpg', 'broken.jpg',
             'none/x.jpg', '', 'sub', './a.jpg', 'sub/../a.jpg', str(folder / 'a.jpg')]
    expected = [n for n in names if not os.path.isfile(os.path.join(str(folder), n))]
    folders = {}
    assert find_missing_files(str(folder), names, folders) == expected
    assert os.path.realpath(folder) in folders and os.path.realpath(folder / 'sub') in folders


def spy_parse(monkeypatch):
    calls = []
    real = data_check.check_coco_annotations

    def spy(path, *args):
        calls.append(path)
        return real(path, *args)
    monkeypatch.setattr(data_check, 'check_coco_annotations', spy)
    return calls


def job_cfg(root, dataset=None, **options):
    """A run's config whose three loaders read the generated COCO files (or ``dataset``)."""
    from mmengine.config import Config
    return Config({loader: dict(dataset=dataset or dataset_cfg(root)) for loader in (
        'train_dataloader', 'val_dataloader', 'test_dataloader')}, **options)


@pytest.mark.parametrize('variable', ['RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK',
                                      'LOCAL_RANK'])
def test_only_rank_0_checks(tmp_path, monkeypatch, variable):
    root = make_coco(tmp_path)
    CASES['one_character_gone'](root)
    cfg = job_cfg(root)
    calls = spy_parse(monkeypatch)
    monkeypatch.setenv(variable, '1')
    check_datasets_exist(cfg)  # returns at once: rank 0's error ends the job
    assert calls == []
    monkeypatch.setenv(variable, '0')
    with pytest.raises(AnnotationError, match='is not valid JSON'):
        check_datasets_exist(cfg)
    assert calls == [ann_path(root)]


def test_loaders_on_the_same_files_are_checked_once(tmp_path, monkeypatch):
    root = make_coco(tmp_path)
    monkeypatch.setenv(data_check.CACHE_ENV, 'off')
    calls = spy_parse(monkeypatch)
    check_datasets_exist(job_cfg(root))
    assert calls == [ann_path(root)]


def fake_process_group(monkeypatch, rank, received=None):
    """torch.distributed initialised, this process of ``rank``; the broadcast records what
    rank 0 sends, or hands out ``received``."""
    import torch.distributed as dist
    sent = []

    def broadcast_object_list(box, src=0):
        assert src == 0
        if rank == 0:
            sent.append(box[0])
        else:
            box[0] = received
    monkeypatch.setattr(dist, 'is_available', lambda: True)
    monkeypatch.setattr(dist, 'is_initialized', lambda: True)
    monkeypatch.setattr(dist, 'get_rank', lambda *a: rank)
    monkeypatch.setattr(dist, 'broadcast_object_list', broadcast_object_list)
    return sent


def test_with_a_process_group_the_others_wait_for_rank_0s_verdict(tmp_path, monkeypatch):
    root = make_coco(tmp_path)
    CASES['one_character_gone'](root)
    cfg = job_cfg(root)
    calls = spy_parse(monkeypatch)
    monkeypatch.setenv('RANK', '1')  # the process group's rank wins
    sent = fake_process_group(monkeypatch, 0)
    with pytest.raises(AnnotationError, match='is not valid JSON') as info:
        check_datasets_exist(cfg)
    assert calls == [ann_path(root)] and sent == [info.value]

    calls.clear()
    fake_process_group(monkeypatch, 1, received=info.value)
    with pytest.raises(AnnotationError, match='is not valid JSON'):
        check_datasets_exist(cfg)
    fake_process_group(monkeypatch, 1, received=None)
    check_datasets_exist(cfg)  # rank 0 found nothing wrong
    assert calls == []


def test_a_real_process_group_of_one(tmp_path):
    import torch.distributed as dist
    root = make_coco(tmp_path)
    cfg = job_cfg(root)
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0,
                            world_size=1)
    try:
        check_datasets_exist(cfg)
        remove_images(1)(root)
        with pytest.raises(AnnotationError, match='1 images listed in'):
            check_datasets_exist(cfg)
    finally:
        dist.destroy_process_group()


def test_a_stamp_spares_the_check_until_the_file_or_the_images_change(
        tmp_path, monkeypatch):
    root = make_coco(tmp_path)
    dataset = dataset_cfg(root)
    calls = spy_parse(monkeypatch)
    profile = {}
    check_coco_dataset(dataset, profile)
    assert calls == [ann_path(root)] and profile['cached'] is False
    assert len(os.listdir(tmp_path / 'stamps')) == 1
    check_coco_dataset(dataset, profile)
    assert len(calls) == 1 and profile['cached'] is True

    stat = os.stat(ann_path(root))  # same size and times, other content
    text_edit(lambda t: t.replace('"iscrowd":0', '"iscrowd":1', 1))(root)
    os.utime(ann_path(root), ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.path.getsize(ann_path(root)) == stat.st_size
    check_coco_dataset(dataset, profile)
    assert len(calls) == 2 and profile['cached'] is False
    check_coco_dataset(dataset, profile)
    assert len(calls) == 2

    os.utime(ann_path(root))  # touched
    check_coco_dataset(dataset, profile)
    assert len(calls) == 3

    remove_images(1)(root)  # an image gone: checked again, and caught
    with pytest.raises(AnnotationError, match='1 images listed in'):
        check_coco_dataset(dataset)
    with pytest.warns(UserWarning, match='1 images listed in'):  # no stamp after a warning
        check_coco_dataset(dataset_cfg(root, skip_bad=True))
    with pytest.raises(AnnotationError, match='1 images listed in'):
        check_coco_dataset(dataset)

    monkeypatch.setenv(data_check.CACHE_ENV, 'off')
    check_coco_dataset(dataset_cfg(make_coco(tmp_path, name='other')))
    assert len(os.listdir(tmp_path / 'stamps')) == 1


def test_benchmark_tool_smoke(tmp_path, capsys):
    results = bench.main(['--root', str(tmp_path / 'bench'), '--images', '6',
                          '--annotations', '30', '--in-process'])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith('| ')][1:]
    assert [r.split(' | ')[0][2:] for r in rows] == list(bench.ROWS.values())
    for row in rows:
        cells = row.strip('| ').split(' | ')[1:]
        assert len(cells) == 6 and all(re.fullmatch(r'\d+\.\d+', c) for c in cells), row
    assert results['check-warm']['profile']['cached'] is True
    assert results['check-cold']['profile']['cached'] is False
    assert results['check-cold']['held'] < 0.05  # MB, tracemalloc
    assert 'cold data check, by step: stamp' in out
    assert '(0.0 MB, 6 images, 30 annotations; image files present)' in out


# --- by dataset type (issue 21) -----------------------------------------------------------

def make_panoptic(tmp_path):
    root = str(tmp_path / 'panoptic')
    generate_toy_coco_panoptic(root, num_train=4, num_val=2, size=64, seed=0)
    return root


def panoptic_cfg(root):
    return dict(type='CocoPanopticDataset', data_root=os.path.join(root, ''),
                ann_file='annotations/panoptic_train.json',
                data_prefix=dict(img='train/', seg='annotations/panoptic_train/'), pipeline=[])


def edit_json(path, edit):
    with open(path) as f:
        data = json.load(f)
    edit(data)
    with open(path, 'w') as f:
        json.dump(data, f)


def test_a_panoptic_file_is_checked_as_one(tmp_path, monkeypatch):
    root = make_panoptic(tmp_path)
    # what the check did before: an instance check, which refuses the valid file
    with pytest.raises(AnnotationError, match=r'annotations refer to unknown categories '
                                              r'\(annotation id, category_id\): \(None, None\)'):
        check_coco_dataset(panoptic_cfg(root))
    calls = spy_parse(monkeypatch)
    check_datasets_exist(job_cfg(root, panoptic_cfg(root)))
    assert calls == []  # not read as an instance file
    profile = {}
    check_coco_panoptic_dataset(panoptic_cfg(root), profile)
    assert profile['cached'] is True  # stamped by the first check


PANOPTIC_FAULTS = {
    'unknown_category': (
        lambda root: edit_json(os.path.join(root, 'annotations/panoptic_train.json'),
                               lambda d: d['annotations'][0]['segments_info'][1].update(
                                   category_id=99)),
        r'panoptic_train\.json: 1 segments refer to unknown categories \(image_id, segment '
        r'id, category_id\): \(1, 200001, 99\); the file defines categories \[1, 2, 3, 4\]'),
    'missing_png': (
        lambda root: os.remove(os.path.join(root, 'annotations/panoptic_train/000000000002.png')),
        r'1 segment PNGs listed in .*panoptic_train\.json are missing from '
        r'.*annotations/panoptic_train/: 000000000002\.png'),
    'missing_image': (
        lambda root: os.remove(os.path.join(root, 'train/000000000003.png')),
        r'1 images listed in .*panoptic_train\.json are missing from .*/train/: '
        r'000000000003\.png'),
    'no_isthing': (
        lambda root: edit_json(os.path.join(root, 'annotations/panoptic_train.json'),
                               lambda d: d['categories'][3].pop('isthing')),
        r'1 categories are not marked isthing \(category id\): 4'),
    'an_instance_file': (
        lambda root: shutil.copy(generate_toy_coco(os.path.join(root, 'instances'), 4, 1,
                                                   size=64)['train'],
                                 os.path.join(root, 'annotations/panoptic_train.json')),
        r'panoptic_train\.json: \d+ annotations have no segments_info list \(image_id\): 1, '
        r'.* \(is this a COCO instance file\? CocoDataset reads those\)')}


@pytest.mark.parametrize('fault', list(PANOPTIC_FAULTS))
def test_a_broken_panoptic_dataset_is_named(tmp_path, fault):
    root = make_panoptic(tmp_path)
    cfg = job_cfg(root, panoptic_cfg(root))
    check_datasets_exist(cfg)  # a stamp, which the fault must void
    breaks, message = PANOPTIC_FAULTS[fault]
    breaks(root)
    with pytest.raises(AnnotationError, match=message):
        check_datasets_exist(cfg)


def lvis_v1(root):
    """An LVIS v1 layout: images named by ``coco_url``, no ``file_name``."""
    os.makedirs(os.path.join(root, 'train2017'))
    open(os.path.join(root, 'train2017', '000000000009.jpg'), 'wb').close()
    os.makedirs(os.path.join(root, 'annotations'))
    with open(os.path.join(root, 'annotations', 'lvis_v1_train.json'), 'w') as f:
        json.dump(dict(images=[dict(
            id=9, width=64, height=64, neg_category_ids=[], not_exhaustive_category_ids=[],
            coco_url='http://images.cocodataset.org/train2017/000000000009.jpg')],
            annotations=[dict(id=1, image_id=9, category_id=1, bbox=[1, 1, 9, 9], area=81,
                              segmentation=[[1, 1, 10, 1, 10, 10]])],
            categories=[dict(id=1, name='aerosol_can', synonyms=['aerosol_can'],
                             frequency='c', image_count=1, instance_count=1)]), f)
    return dict(type='LVISV1Dataset', data_root=os.path.join(root, ''),
                ann_file='annotations/lvis_v1_train.json', data_prefix=dict(img=''))


def objects365_v2(root):
    """Objects365 v2: ``file_name`` images/v1/patch0/x.jpg, read as patch0/x.jpg."""
    os.makedirs(os.path.join(root, 'train', 'patch0'))
    open(os.path.join(root, 'train', 'patch0', 'objects365_v1_00000001.jpg'), 'wb').close()
    os.makedirs(os.path.join(root, 'annotations'))
    with open(os.path.join(root, 'annotations', 'zhiyuan_objv2_train.json'), 'w') as f:
        json.dump(dict(images=[dict(id=1, width=64, height=64,
                                    file_name='images/v1/patch0/objects365_v1_00000001.jpg')],
                       annotations=[dict(id=1, image_id=1, category_id=1, bbox=[1, 1, 9, 9],
                                         area=81, iscrowd=0)],
                       categories=[dict(id=1, name='Person')]), f)
    return dict(type='Objects365V2Dataset', data_root=os.path.join(root, ''),
                ann_file='annotations/zhiyuan_objv2_train.json', data_prefix=dict(img='train/'))


def custom(root):
    """A type of the user's own, its annotations in a format of its own."""
    os.makedirs(os.path.join(root, 'images'))
    with open(os.path.join(root, 'labels.txt'), 'w') as f:
        f.write('a.jpg 1 2 3 4\n')
    return dict(type='MyDataset', data_root=os.path.join(root, ''), ann_file='labels.txt',
                data_prefix=dict(img='images/'))


def coco_semantic(root):
    """mmdet's CocoSegDataset ('Coco' in its name): a semantic layout, no ann_file."""
    for folder in ('images/train2017', 'annotations/train2017'):
        os.makedirs(os.path.join(root, folder))
    return dict(type='CocoSegDataset', data_root=os.path.join(root, ''),
                data_prefix=dict(img_path='images/train2017/',
                                 seg_map_path='annotations/train2017/'))


@pytest.mark.parametrize('layout', [lvis_v1, objects365_v2, custom, coco_semantic])
def test_types_the_check_does_not_understand_only_have_their_paths_checked(tmp_path, layout):
    dataset = layout(str(tmp_path / 'data'))
    if layout in (lvis_v1, objects365_v2):  # read as instance files, they would be refused
        with pytest.raises((AnnotationError, KeyError)):
            check_coco_dataset(dataset)
    check_datasets_exist(job_cfg(None, dataset))
    os.rename(tmp_path / 'data', tmp_path / 'gone')
    with pytest.raises(DatasetNotFoundError, match='is not where the config points'):
        check_datasets_exist(job_cfg(None, dataset))


def test_the_format_follows_mmdets_class_hierarchy():
    from mmdet.datasets import CocoDataset, CocoPanopticDataset

    class Renamed(CocoDataset):  # reads its file in its own way
        def load_data_list(self):
            return []

    class Plain(CocoDataset):
        pass

    class Panoptic(CocoPanopticDataset):
        pass
    expected = {
        'coco': ['CocoDataset', 'mmdet.CocoDataset', 'CityscapesDataset', 'DeepFashionDataset',
                 'Objects365V1Dataset', 'ADE20KInstanceDataset', 'V3DetDataset', Plain,
                 CocoDataset],
        'coco_panoptic': ['CocoPanopticDataset', 'mmdet.ADE20KPanopticDataset', Panoptic],
        None: ['LVISV1Dataset', 'LVISV05Dataset', 'LVISDataset', 'Objects365V2Dataset',
               'CocoSegDataset', 'CocoCaptionDataset', 'RefCocoDataset', 'MyDataset',
               'mmseg.ADE20KDataset', 'mmpretrain.CocoDataset', Renamed, None, dict]}
    assert {fmt: [t for t in types if annotation_format(t) == fmt]
            for fmt, types in expected.items()} == expected
    assert annotation_format('CocoDataset', default_scope='mmseg') is None
    assert annotation_format('CocoDataset', default_scope='mmdet') == 'coco'
