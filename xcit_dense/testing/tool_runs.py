"""Any detection or segmentation config through the tools a user runs, on the generated toy
data: ``tools/train.py`` for a few iterations, then ``tools/test.py`` on the checkpoint it
wrote, each in its own process.

A config is shrunk to the toy data by :func:`shrink_to_toy`: its datasets point at the toy
split (the dataset types, pipelines, model and hooks stay the config's own), every image size
in its pipelines and preprocessing is scaled from COCO's or ADE20k's to the toy images', the
heads predict the toy classes, the backbone starts from random weights (no download) and the
schedule is cut to a few iterations. The shrunk config is written as one self-contained file,
which the tools then run as a user's config.

The suite runs the configs that take different paths through the tools
(``tests/test_tool_runs.py``); ``tools/analysis_tools/head_matrix.py`` runs every shipped
config and heads this project does not ship.
"""
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config

from ..engine.data_check import innermost_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class ToyData:
    """A generated toy dataset and what a config needs to read it.

    Attributes:
        classes: The class names (``metainfo.classes``).
        scale: Toy image size over the full dataset's (160 px shapes over COCO's 800 px short
            side; 128 px over ADE20k's 512 px crops): every image size in a config is scaled
            by it.
        splits: Per split (``'train'``, ``'test'``), the dataset keys that point at the data.
        evaluators: Per test evaluator type, its keys that point at the data (COCO's ground
            truth).
        num_classes: Per head key (``num_classes``, ``num_things_classes``...), the value the
            full dataset's configs set and the toy data's.
    """
    classes: Sequence[str]
    scale: float
    splits: Dict[str, Dict]
    evaluators: Dict[str, Dict] = field(default_factory=dict)
    num_classes: Dict[str, Dict[int, int]] = field(default_factory=dict)


def _coco_split(split: str, prefix: str = 'instances') -> Dict:
    return dict(ann_file=f'annotations/{prefix}_{split}.json', data_prefix=dict(img=f'{split}/'))


TOY_DATA = {
    # tools/make_toy_data.py coco
    'coco': ToyData(
        classes=('circle', 'square', 'triangle'), scale=0.2,
        splits=dict(train=_coco_split('train'), test=_coco_split('val')),
        evaluators=dict(CocoMetric=dict(ann_file='annotations/instances_val.json')),
        num_classes=dict(num_classes={80: 3}, num_things_classes={80: 3})),
    # tools/make_toy_data.py coco-panoptic: 3 things and 1 stuff class
    'coco-panoptic': ToyData(
        classes=('circle', 'square', 'triangle', 'background'), scale=0.2,
        splits={split: dict(ann_file=f'annotations/panoptic_{name}.json',
                            data_prefix=dict(img=f'{name}/',
                                             seg=f'annotations/panoptic_{name}/'))
                for split, name in (('train', 'train'), ('test', 'val'))},
        evaluators=dict(CocoPanopticMetric=dict(ann_file='annotations/panoptic_val.json',
                                                seg_prefix='annotations/panoptic_val/'),
                        CocoMetric=dict(ann_file='annotations/instances_val.json')),
        num_classes=dict(num_classes={133: 4, 80: 3}, num_things_classes={80: 3},
                         num_stuff_classes={53: 1})),
    # tools/make_toy_data.py ade
    'ade': ToyData(
        classes=('background', 'circle', 'square', 'triangle'), scale=0.25,
        splits={split: dict(data_prefix=dict(img_path=f'images/{name}',
                                             seg_map_path=f'annotations/{name}'))
                for split, name in (('train', 'training'), ('test', 'validation'))},
        num_classes=dict(num_classes={150: 4})),
}

# Keys that hold an image size (pixels) in pipelines, data preprocessors and slide inference
# (not in the rest of a model, where e.g. an anchor generator's ``scales`` are not pixels).
SIZE_KEYS = ('scale', 'img_scale', 'scales', 'crop_size', 'size', 'border', 'stride',
             'random_size_range')

# Object queries of DETR-style detectors at the toy images' size: DINO takes its 900 queries
# from the encoder's tokens, of which a 160 x 267 image has about 900.
MAX_QUERIES = 100


def _scaled(value, factor: float):
    """Sizes (ints, or tuples and lists of them) times ``factor``, multiples of 32 where they
    were (at least 32); other values (ratios, None) as they are."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        sign, size = (1 if value >= 0 else -1), abs(value)  # YOLOX's borders are negative
        if size % 32 == 0 and size:
            return sign * max(32, round(size * factor / 32) * 32)
        return round(value * factor) or value
    if isinstance(value, (list, tuple)):
        return type(value)(_scaled(v, factor) for v in value)
    return value


def scale_image_sizes(node, factor: float) -> None:
    """Scale every image size in a config subtree (see :data:`SIZE_KEYS`) by ``factor``, in
    place; relative crops (``crop_type='relative...'``) keep their fractions."""
    if isinstance(node, dict):
        relative = str(node.get('crop_type', '')).startswith('relative')
        for key, value in node.items():
            if key in SIZE_KEYS and not (relative and key == 'crop_size'):
                node[key] = _scaled(value, factor)
            else:
                scale_image_sizes(value, factor)
    elif isinstance(node, (list, tuple)):
        for value in node:
            scale_image_sizes(value, factor)


def set_num_classes(node, toy: ToyData) -> None:
    """Make the heads predict the toy classes: each ``num_classes``-like key that holds the
    full dataset's count gets the toy data's, and a per-class loss weight list with one entry
    per class and one for "no object" (Mask2Former's ``class_weight``) is cut to match."""
    full = {count + 1 for counts in toy.num_classes.values() for count in counts}
    if isinstance(node, dict):
        for key, value in node.items():
            if key in toy.num_classes and value in toy.num_classes[key]:
                node[key] = toy.num_classes[key][value]
            elif key == 'class_weight' and isinstance(value, list) and len(value) in full:
                node[key] = value[:len(toy.classes)] + value[-1:]
            else:
                set_num_classes(value, toy)
    elif isinstance(node, (list, tuple)):
        for value in node:
            set_num_classes(value, toy)


# The widths a neck or head reads from the backbone.
WIDTH_KEYS = ('in_channels', 'c1_in_channels')


def _replace_widths(node, old: int, new: int) -> None:
    """Every input width (:data:`WIDTH_KEYS`) of ``old`` channels, alone or in a list, becomes
    ``new``, in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in WIDTH_KEYS and (value == old or (
                    isinstance(value, (list, tuple)) and value and set(value) == {old})):
                node[key] = new if value == old else type(value)([new] * len(value))
            else:
                _replace_widths(value, old, new)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _replace_widths(value, old, new)


def use_small_xcit(model: Dict, arch: str = 'nano_12') -> None:
    """A 12-block XCiT backbone of a model config becomes the 12-block preset ``arch`` (by
    default XCiT-N12, width 128), in place, with the neck's and heads' input widths changed
    to match; other backbones and depths are left as they are."""
    from ..models.xcit import resolve_arch
    backbone = model.get('backbone') or {}
    if str(backbone.get('type', '')).split('.')[-1] != 'XCiT':
        return
    old, new = resolve_arch(backbone.arch), resolve_arch(arch)
    if old['depth'] != new['depth']:
        return
    backbone.arch = arch
    _replace_widths({k: v for k, v in model.items() if k != 'backbone'}, old['embed_dim'],
                    new['embed_dim'])


def shrink_to_toy(cfg: Config, kind: str, data_root: str, iters: int = 2,
                  num_test: int = 2, small_arch: bool = False) -> Config:
    """``cfg`` on the toy data of ``kind`` (:data:`TOY_DATA`) at ``data_root``, in place: a
    train run of ``iters`` iterations of batch 2 writing one checkpoint, a test run on the
    first ``num_test`` validation images, data loaded in the main process; with
    ``small_arch``, XCiT-S12 and T12 become N12 (:func:`use_small_xcit`)."""
    toy = TOY_DATA[kind]
    model = cfg.model
    if small_arch:
        use_small_xcit(model)
    if 'backbone' in model:
        model.backbone.init_cfg = None  # random weights: nothing to download
    set_num_classes(model, toy)
    if model.get('num_queries', 0) > MAX_QUERIES:  # DINO picks them among the image's tokens
        model.num_queries = MAX_QUERIES
    for key in ('data_preprocessor', 'test_cfg'):  # batch padding and cropping, slide windows
        scale_image_sizes(model.get(key), toy.scale)
    for key in ('train_pipeline', 'test_pipeline'):
        if key in cfg:
            scale_image_sizes(cfg[key], toy.scale)
    for loader_key, split in (('train_dataloader', 'train'), ('val_dataloader', 'test'),
                              ('test_dataloader', 'test')):
        loader = cfg.get(loader_key)
        if not loader:
            continue
        loader.batch_size = 2 if split == 'train' else 1
        loader.num_workers, loader.persistent_workers = 0, False
        scale_image_sizes(loader.dataset, toy.scale)
        dataset = innermost_dataset(loader.dataset)
        if dataset.get('type', '').split('.')[-1] == 'ADE20KDataset':  # fixes ADE's classes
            dataset.update(type='BaseSegDataset', img_suffix='.jpg', seg_map_suffix='.png',
                           reduce_zero_label=True)
        settings = dict(data_root=data_root, metainfo=dict(classes=tuple(toy.classes)),
                        indices=2 * iters if split == 'train' else num_test,
                        **toy.splits[split])
        for key, value in settings.items():  # replaced, not merged (a COCO dataset's
            dataset[key] = value             # data_prefix may name a panoptic folder too)
    for key in ('val_evaluator', 'test_evaluator'):
        evaluators = cfg.get(key)
        for evaluator in evaluators if isinstance(evaluators, list) else [evaluators]:
            paths = toy.evaluators.get(str((evaluator or {}).get('type')).split('.')[-1], {})
            evaluator.update({k: os.path.join(data_root, v) for k, v in paths.items()})
    loop = cfg.train_cfg
    by_epoch = 'max_epochs' in loop
    if by_epoch:  # `iters` batches make one epoch
        loop.update(max_epochs=1, val_interval=2)
    else:
        loop.update(max_iters=iters, val_interval=iters + 1)
    cfg.default_hooks.checkpoint.update(interval=1 if by_epoch else iters, by_epoch=by_epoch)
    cfg.default_hooks.logger.interval = 1
    cfg.randomness = dict(seed=0)
    return cfg


@dataclass
class ToolRun:
    """The outcome of one config's train and test runs."""
    train_rc: int
    test_rc: Optional[int] = None
    metrics: Dict[str, float] = field(default_factory=dict)
    checkpoint: Optional[str] = None
    train_log: str = ''
    test_log: str = ''

    @property
    def ok(self) -> bool:
        return self.train_rc == 0 and self.test_rc == 0


# mmengine's test log line: "Epoch(test) [2/2]    coco/bbox_mAP: 0.0000  coco/bbox_mAP_50: ..."
_METRIC = re.compile(r'([\w./-]+): (-?\d+(?:\.\d+)?(?:e-?\d+)?)')


def parse_test_metrics(log: str) -> Dict[str, float]:
    """The metrics of mmengine's final test log line (``Epoch(test)``/``Iter(test)``)."""
    lines = [line for line in log.splitlines() if '(test) [' in line and ': ' in line]
    if not lines:
        return {}
    tail = lines[-1].split(']', 2)[-1]
    return {k: float(v) for k, v in _METRIC.findall(tail)
            if not k.startswith(('data_time', 'time'))}


def run_tool(tool: str, args: List[str], timeout: float = 900) -> subprocess.CompletedProcess:
    """``python tools/TOOL ARGS`` from the repository root, as a user runs it."""
    return subprocess.run([sys.executable, os.path.join(ROOT, 'tools', tool), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def train_and_test(config: str, work_dir: str, test_args: Sequence[str] = ()) -> ToolRun:
    """``tools/train.py CONFIG --work-dir WORK_DIR/train``, then ``tools/test.py CONFIG
    CHECKPOINT --work-dir WORK_DIR/test`` on the checkpoint it wrote (``last_checkpoint``)."""
    train_dir, test_dir = os.path.join(work_dir, 'train'), os.path.join(work_dir, 'test')
    train = run_tool('train.py', [config, '--work-dir', train_dir])
    run = ToolRun(train.returncode, train_log=train.stdout + train.stderr)
    pointer = os.path.join(train_dir, 'last_checkpoint')
    if train.returncode != 0 or not os.path.isfile(pointer):
        return run
    with open(pointer) as f:
        run.checkpoint = f.read().strip()
    test = run_tool('test.py', [config, run.checkpoint, '--work-dir', test_dir, *test_args])
    run.test_rc, run.test_log = test.returncode, test.stdout + test.stderr
    run.metrics = parse_test_metrics(run.test_log)
    return run


def write_toy_config(config: str, kind: str, data_root: str, out: str, **shrink) -> str:
    """Load ``config`` (a path, or a config's text, e.g. a user's lines with ``_base_``),
    shrink it to the toy data (:func:`shrink_to_toy`) and write it to ``out``, a
    self-contained config; returns ``out``."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if os.path.isfile(config):
        cfg = Config.fromfile(config)
    else:
        source = os.path.splitext(out)[0] + '_source.py'
        with open(source, 'w') as f:
            f.write(config)
        cfg = Config.fromfile(source)
    shrink_to_toy(cfg, kind, data_root, **shrink)
    cfg.dump(out)
    return out
