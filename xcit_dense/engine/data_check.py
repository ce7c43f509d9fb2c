"""Stop early, with one clear message, when a config's dataset is not where it points or its
COCO annotations are broken: before the run writes anything.

What is checked depends on how the dataset type reads its files (:func:`annotation_format`):
a COCO instance file (mmdet's ``CocoDataset`` and the subclasses that read the file as it
does) and a COCO panoptic file (``CocoPanopticDataset`` and the like) are checked in full;
any other type (LVIS, Objects365 v2, ADE20k, a custom type) only has its paths checked, so
that the check never refuses a file it does not understand.

The check costs little at COCO scale (train2017: 118k images, 860k annotations, 450 MB of
JSON), where it runs before mmdet parses the same file again in every process:

* **Once per job.** Only the process of rank 0 checks; see :func:`check_datasets_exist`.
* **Lean.** The annotation file is parsed without building its floats
  (:func:`~xcit_dense.datasets.validate.check_coco_annotations`), ids are matched with sets,
  and image existence is read from one ``os.scandir`` per image folder instead of one
  ``stat`` per image (:func:`find_missing_files`). On a file of COCO train2017's size this
  takes about a quarter of the time and half the peak memory of pycocotools'
  ``COCO(ann_file)``, a sixth of the time of mmdet's ``CocoDataset`` loading
  (``tools/analysis_tools/benchmark_data_check.py``). Nothing is kept: the parsed
  file is freed as soon as it is checked and, with glibc, its memory given back to the
  system.
* **Once per file version.** A check that passes leaves a stamp in
  ``~/.cache/xcit_dense/data_check`` (``$XDG_CACHE_HOME`` is honoured; the environment
  variable ``XCIT_DENSE_DATA_CHECK_CACHE`` names another folder, or ``off``): the annotation
  file's size, modification and change times, inode and a hash of its first and last MiB,
  and the modification and change times of the image folders. While all of these are the
  same, later runs skip the parse (a few milliseconds); editing, replacing or touching the
  file, or adding or removing an image, makes the next run check again.
"""
import ctypes
import gc
import hashlib
import json
import os
import pickle
import tempfile
import time
import warnings
from typing import Dict, Iterable, List, Optional, Set, Tuple

from ..datasets.validate import AnnotationError, _read_json, _sample, check_coco_annotations
from .errors import DatasetNotFoundError

DATASET_HELP = {
    'CocoDataset': 'COCO 2017 (train2017/, val2017/, annotations/instances_*2017.json)',
    'CocoPanopticDataset': 'COCO panoptic 2017 (train2017/, val2017/, '
                           'annotations/panoptic_*2017.json and annotations/panoptic_*2017/)',
    'ADE20KDataset': 'ADEChallengeData2016 (images/ and annotations/, training and validation)',
}
# Part of every stamp: a change to what the check verifies invalidates the stamps written
# before it.
CHECK_VERSION = 1
CACHE_ENV = 'XCIT_DENSE_DATA_CHECK_CACHE'
MAX_STAMPS = 256


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


# --- image existence --------------------------------------------------------------------

def _regular_files(folder: str) -> Optional[Set[str]]:
    """The names of the regular files (or links to them) in ``folder``, from one directory
    read; ``None`` where it cannot be listed though it may exist (no read permission)."""
    try:
        with os.scandir(folder) as entries:
            return {e.name for e in entries if e.is_file()}
    except (FileNotFoundError, NotADirectoryError):
        return set()
    except OSError:
        return None


def find_missing_files(folder: str, names: Iterable[str],
                       folders: Optional[Dict[str, List[int]]] = None) -> List[str]:
    """The ``names`` (paths relative to ``folder``, as COCO's ``file_name``) that are not
    files, in their order: what ``not os.path.isfile(os.path.join(folder, name))`` gives,
    but from one ``os.scandir`` per folder rather than one ``stat`` per name. Only a name
    absent from its listing is ``stat``-ed, to confirm it (case-insensitive file systems, a
    file that appeared meanwhile). ``folders``, a dict, receives the real path of each folder
    listed and its stat (taken before it is listed, so that a later change shows)."""
    listed: Dict[str, Optional[Set[str]]] = {}
    missing = []
    for name in names:
        if type(name) is not str or '/' in name or os.sep in name:
            head, base = os.path.split(os.path.join(folder, name))
        else:
            head, base = folder, name
        if head in listed:
            files = listed[head]
        else:
            if folders is not None:
                try:
                    folders[os.path.realpath(head)] = _stat_key(head)
                except OSError:
                    pass
            files = listed[head] = _regular_files(head)
        if (files is None or base not in files) and not os.path.isfile(
                os.path.join(folder, name)):
            missing.append(name)
    return missing


# --- stamps -----------------------------------------------------------------------------

def _cache_dir() -> Optional[str]:
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ('', '0', 'off', 'no', 'false') else value
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'xcit_dense', 'data_check')


def _stat_key(path: str) -> List[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _file_fingerprint(path: str) -> Dict:
    """What identifies a version of the file: its stat and a hash of its first and last
    MiB (which catches a same-size edit on file systems with coarse time stamps)."""
    key = _stat_key(path)
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        digest.update(f.read(1 << 20))
        if key[0] > 1 << 20:
            f.seek(max(1 << 20, key[0] - (1 << 20)))
            digest.update(f.read(1 << 20))
    return dict(stat=key, sha256=digest.hexdigest())


def _stamp_path(ann_file: str, img_dir: str, seg_dir: Optional[str] = None) -> Optional[str]:
    folder = _cache_dir()
    if folder is None:
        return None
    key = f'{os.path.realpath(ann_file)}\0{os.path.realpath(img_dir)}'
    if seg_dir is not None:  # a panoptic check ('': no PNG folder): not an instance one's
        key += '\0panoptic\0' + (os.path.realpath(seg_dir) if seg_dir else '')
    key = hashlib.sha256(key.encode()).hexdigest()[:32]
    return os.path.join(folder, key + '.json')


def _stamp_is_current(stamp_path: Optional[str], ann_file: str) -> bool:
    if stamp_path is None:
        return False
    try:
        with open(stamp_path) as f:
            stamp = json.load(f)
        return (stamp.get('version') == CHECK_VERSION
                and stamp.get('ann_file') == os.path.realpath(ann_file)
                and stamp.get('file') == _file_fingerprint(ann_file)
                and bool(stamp.get('folders'))
                and all(_stat_key(d) == k for d, k in stamp['folders'].items()))
    except (OSError, ValueError, TypeError, AttributeError):
        return False


def _write_stamp(stamp_path: Optional[str], stamp: Dict) -> None:
    """Write atomically; never fail the run over it (read-only home, full disk). Keeps the
    folder to the :data:`MAX_STAMPS` most recent stamps."""
    if stamp_path is None:
        return
    folder = os.path.dirname(stamp_path)
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile('w', dir=folder, suffix='.tmp', delete=False) as f:
            json.dump(stamp, f)
        os.replace(f.name, stamp_path)
        stamps = [os.path.join(folder, n) for n in os.listdir(folder) if n.endswith('.json')]
        if len(stamps) > MAX_STAMPS:
            stamps.sort(key=lambda p: os.stat(p).st_mtime_ns)
            for old in stamps[:len(stamps) - MAX_STAMPS]:
                os.remove(old)
    except OSError:
        pass


def _release_memory() -> None:
    """Hand the freed heap back to the system (glibc's ``malloc_trim``), so the check leaves
    the process as large as it found it. The parsed file was freed as it was dropped (JSON
    makes no reference cycles): a full ``gc.collect()`` would find nothing of it, and costs
    a third of a second in a process holding torch and mmdet."""
    try:
        ctypes.CDLL(None).malloc_trim(0)  # the process's own symbols: glibc's, on Linux
    except (OSError, AttributeError, TypeError):
        pass


# --- the checks -------------------------------------------------------------------------

def check_coco_panoptic_annotations(path: str, profile: Optional[Dict] = None
                                    ) -> Tuple[List[str], List[str]]:
    """Check a COCO panoptic annotation file as mmdet reads it: ``images`` (with a
    ``file_name``), ``categories`` (marked ``isthing``) and ``annotations``, each for an image
    of the file, whose ``segments_info`` have an ``id``, a ``bbox``, an ``area`` and a
    category of the file. Returns the ``file_name`` of each image and the segment PNG of each
    annotated image, named as mmdet's ``CocoPanopticDataset`` and ``CocoPanopticMetric`` read
    it: its image's ``file_name`` with ``.jpg`` made ``.png`` (in COCO, the annotation's own
    ``file_name``). Raises :class:`~xcit_dense.datasets.validate.AnnotationError` naming the
    culprits.

    ``profile``, a dict, receives the seconds spent reading (``'parse'``) and checking
    (``'validate'``). The file is read as it is (``json.loads``): a panoptic file has no
    polygons, so few of the floats that :func:`check_coco_annotations` avoids building.
    """
    profile = {} if profile is None else profile
    start = time.perf_counter()
    gc_enabled = gc.isenabled()
    gc.disable()  # as check_coco_annotations does: no cycles in parsed JSON to collect
    try:
        data = _read_json(path)
    finally:
        if gc_enabled:
            gc.enable()
    profile['parse'] = time.perf_counter() - start
    start = time.perf_counter()
    if not isinstance(data, dict):
        raise AnnotationError(f'Annotation file {path} holds a JSON {type(data).__name__}, '
                              'not a COCO panoptic object')
    bad = [k for k in ('images', 'annotations', 'categories') if not isinstance(
        data.get(k), list) or not all(isinstance(item, dict) for item in data[k])]
    if bad:
        raise AnnotationError(f'Annotation file {path} has no list of objects under {bad} (a '
                              'COCO panoptic file has images, annotations and categories)')

    def fail(culprits: List, what: str, note: str = '') -> None:
        if culprits:
            raise AnnotationError(f'Annotation file {path}: {len(culprits)} {what}: '
                                  f'{_sample(culprits)}{note}')
    annotations = data['annotations']
    fail([a.get('image_id') for a in annotations if not isinstance(a.get('segments_info'), list)
          or not all(isinstance(s, dict) for s in a['segments_info'])],
         'annotations have no segments_info list (image_id)',
         ' (is this a COCO instance file? CocoDataset reads those)')
    fail([c.get('id') for c in data['categories'] if 'isthing' not in c],
         'categories are not marked isthing (category id)',
         '; a COCO panoptic file marks each category thing (1) or stuff (0)')
    fail([i.get('id') for i in data['images'] if type(i.get('file_name')) is not str],
         'images have no file_name (image id)')
    images = {i.get('id'): i['file_name'] for i in data['images']}
    fail([a.get('image_id') for a in annotations if a.get('image_id') not in images],
         'annotations refer to unknown images (image_id)')
    fail([(a['image_id'], s.get('id')) for a in annotations for s in a['segments_info']
          if not all(k in s for k in ('id', 'bbox', 'area'))],
         'segments have no id, bbox or area (image_id, segment id)')
    category_ids = {c.get('id') for c in data['categories']}
    fail([(a['image_id'], s['id'], s.get('category_id')) for a in annotations
          for s in a['segments_info'] if s.get('category_id') not in category_ids],
         'segments refer to unknown categories (image_id, segment id, category_id)',
         '; the file defines categories '
         f'{sorted(category_ids, key=lambda c: (type(c).__name__, c))}')
    names = [i['file_name'] for i in data['images']]
    pngs = [images[a['image_id']].replace('.jpg', '.png') for a in annotations]
    profile['validate'] = time.perf_counter() - start
    return names, pngs


def _missing(absent: List[str], what: str, ann_file: str, folder: str) -> str:
    return (f'{len(absent)} {what} listed in {ann_file} are missing from {folder}: '
            f'{", ".join(absent[:10])}{" ..." if len(absent) > 10 else ""}')


def _check_files(dataset: dict, profile: Optional[Dict], panoptic: bool) -> None:
    """:func:`check_coco_dataset` and :func:`check_coco_panoptic_dataset`."""
    if 'dataset' in dataset:
        return _check_files(dataset['dataset'], profile, panoptic)
    profile = {} if profile is None else profile
    root = dataset.get('data_root') or ''
    prefix = dataset.get('data_prefix') or {}
    ann_file = os.path.join(root, dataset['ann_file'])
    img_dir = os.path.join(root, prefix.get('img') or '')
    seg_dir = os.path.join(root, prefix['seg']) if prefix.get('seg') else ''
    start = time.perf_counter()
    stamp_path = _stamp_path(ann_file, img_dir, seg_dir if panoptic else None)
    profile['cached'] = _stamp_is_current(stamp_path, ann_file)
    if profile['cached']:
        profile['stamp'] = time.perf_counter() - start
        return
    fingerprint = None
    if stamp_path is not None:
        try:
            fingerprint = _file_fingerprint(ann_file)  # before reading: a later edit shows
        except OSError:
            pass
    profile['stamp'] = time.perf_counter() - start
    if panoptic:
        names, pngs = check_coco_panoptic_annotations(ann_file, profile)
    else:
        names, pngs = check_coco_annotations(ann_file, profile), []
    start = time.perf_counter()
    folders: Optional[Dict[str, List[int]]] = {} if fingerprint is not None else None
    absent = find_missing_files(img_dir, names, folders)
    absent_pngs = find_missing_files(seg_dir, pngs, folders) if seg_dir else []
    del names, pngs
    profile['scan'] = time.perf_counter() - start
    start = time.perf_counter()
    _release_memory()
    profile['release'] = time.perf_counter() - start
    if absent_pngs:  # the pipeline's skip_bad is for images
        raise AnnotationError(_missing(absent_pngs, 'segment PNGs', ann_file, seg_dir))
    if absent:
        message = _missing(absent, 'images', ann_file, img_dir)
        skips = any(t.get('type') == 'LoadImageChecked' and t.get('skip_bad')
                    for t in dataset.get('pipeline') or [])
        if not skips:
            raise AnnotationError(message)
        warnings.warn(message + '; they will be skipped (skip_bad=True).')
    elif fingerprint is not None and folders:
        _write_stamp(stamp_path, dict(version=CHECK_VERSION,
                                      ann_file=os.path.realpath(ann_file),
                                      file=fingerprint, folders=folders))


def check_coco_dataset(dataset: dict, profile: Optional[Dict] = None) -> None:
    """Check a COCO-format dataset config's annotation file
    (:func:`~xcit_dense.datasets.validate.check_coco_annotations`, the errors of
    :func:`~xcit_dense.datasets.validate.load_coco_annotations`) and that every image it
    lists exists (:func:`find_missing_files`); raises
    :class:`~xcit_dense.datasets.validate.AnnotationError` naming the culprits, or warns
    where the pipeline skips bad images (``LoadImageChecked(skip_bad=True)``).

    Skipped, in a few milliseconds, where a stamp shows that this file and these image
    folders passed before, unchanged since (see the module's documentation). ``profile``, a
    dict, receives the seconds of each step (``'stamp'``; ``'parse'``, ``'validate'``,
    ``'free'`` and, rarely, ``'exact'``, see
    :func:`~xcit_dense.datasets.validate.check_coco_annotations`; ``'scan'``, the image
    folders; ``'release'``, handing the freed memory back) and ``'cached'``, whether the
    stamp spared the check.
    """
    _check_files(dataset, profile, panoptic=False)


def check_coco_panoptic_dataset(dataset: dict, profile: Optional[Dict] = None) -> None:
    """Check a COCO panoptic dataset config as :func:`check_coco_dataset` checks an instance
    one: its annotation file (:func:`check_coco_panoptic_annotations`), that every image it
    lists exists and, where the config names the folder of segment PNGs
    (``data_prefix['seg']``), that every annotated image's PNG exists there (a missing PNG
    is an error even with ``skip_bad``). Stamped and profiled alike.
    """
    _check_files(dataset, profile, panoptic=True)


def innermost_dataset(dataset: dict) -> dict:
    """The dataset config inside wrappers (``RepeatDataset``, ``MultiImageMixDataset``...)."""
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    return dataset


def annotation_format(dataset_type, default_scope: Optional[str] = None) -> Optional[str]:
    """How the data check reads the annotation file of a dataset ``type`` (a name, scoped or
    under ``default_scope``, or a class): ``'coco'`` for mmdet's ``CocoDataset`` and the
    subclasses that read their file as it does (Cityscapes, Objects365 v1, ADE20k
    instances...), ``'coco_panoptic'`` for ``CocoPanopticDataset`` and the subclasses that
    read theirs as it does, and ``None`` for any other type: not mmdet's, or reading its
    file in its own way (LVIS: images named by ``coco_url``; Objects365 v2: renamed
    ``file_name``, three images skipped), which only has its paths checked."""
    cls = dataset_type
    if not isinstance(cls, type):
        scope, _, name = str(dataset_type).rpartition('.')
        if (scope or default_scope or 'mmdet') != 'mmdet':
            return None
        try:
            import mmdet.datasets  # noqa: F401 (registers mmdet's dataset types)
            from mmdet.registry import DATASETS
        except ImportError:
            return None
        cls = DATASETS.module_dict.get(name)
    try:
        from mmdet.datasets import CocoDataset, CocoPanopticDataset, Objects365V1Dataset
    except ImportError:
        return None
    if not (isinstance(cls, type) and issubclass(cls, CocoDataset)):
        return None
    reading = (cls.load_data_list, cls.parse_data_info)
    if reading == (CocoDataset.load_data_list, CocoPanopticDataset.parse_data_info):
        return 'coco_panoptic'
    if reading[1] is CocoDataset.parse_data_info and reading[0] in (
            CocoDataset.load_data_list, Objects365V1Dataset.load_data_list):
        return 'coco'  # Objects365 v1 only sorts the categories
    return None


CHECKS = {'coco': check_coco_dataset, 'coco_panoptic': check_coco_panoptic_dataset}


def _check_loaders(cfg, loaders) -> None:
    done = set()
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
        inner = innermost_dataset(dataset)
        fmt = annotation_format(inner.get('type'), cfg.get('default_scope'))
        key = (fmt, os.path.join(inner.get('data_root') or '', inner.get('ann_file') or ''),
               json.dumps(inner.get('data_prefix'), sort_keys=True, default=str),
               json.dumps(inner.get('pipeline'), sort_keys=True, default=str))
        if fmt is not None and key not in done:  # val and test often read the same files
            done.add(key)
            CHECKS[fmt](dataset)


def job_rank() -> int:
    """This process's rank in the job: torch.distributed's where it is initialised, else
    what the launcher put in the environment (``RANK``: torchrun; ``SLURM_PROCID``: srun;
    ``OMPI_COMM_WORLD_RANK``: mpirun; ``LOCAL_RANK``, where nothing else is set), else 0."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    for name in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK', 'LOCAL_RANK'):
        value = os.environ.get(name, '').strip()
        if value.isdigit():
            return int(value)
    return 0


def check_datasets_exist(cfg, loaders=('train_dataloader', 'val_dataloader',
                                       'test_dataloader')) -> None:
    """Raise :class:`DatasetNotFoundError` naming the missing paths of the given dataloaders,
    where the data must be, and how to run the bundled toy demo instead; then check COCO
    annotation files (:func:`check_coco_dataset`). The val and test loaders' dataset, when
    the same, is checked once.

    Once per job: only the process of rank 0 checks (:func:`job_rank`).

    * Where torch.distributed is initialised, the other processes wait for rank 0's verdict
      (a broadcast, which is the barrier) and raise the same error, so none goes on alone.
    * Where it is not yet (the tools call this before the runner is built, and on GPU
      mmengine initialises the process group only then), the other processes return at
      once, without reading anything: rank 0's error ends the job. torchrun tears the whole
      group down when one process fails; ``tools/slurm_train.sh`` runs srun with
      ``--kill-on-bad-exit=1``; mpirun aborts the job. The others meanwhile wait for rank 0
      in the process group's initialisation: on CPU in
      :func:`~xcit_dense.engine.launch.setup_launch`, right after this check, so nothing is
      written; on GPU in mmengine's runner, which first creates the work dir (empty, if
      rank 0's check then fails).

    In a multi-node job, only rank 0's node has its paths checked; the others' data is read
    by mmdet/mmseg as usual (a missing file there fails when it is read).
    """
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        if job_rank() == 0:
            _check_loaders(cfg, loaders)
        return
    error = None
    if dist.get_rank() == 0:
        try:
            _check_loaders(cfg, loaders)
        except Exception as e:  # handed to the others, then raised here too
            error = e
    box = [error]
    try:
        pickle.dumps(error)
    except Exception:
        box = [RuntimeError(f'{type(error).__name__}: {error}')]
    dist.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    if box[0] is not None:
        raise box[0]
