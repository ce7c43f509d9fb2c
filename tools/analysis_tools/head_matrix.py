"""Every shipped config, and heads of mmdet and mmseg this project does not ship, through
``tools/train.py`` and ``tools/test.py`` on the generated toy data (``make head-matrix``).

    python tools/analysis_tools/head_matrix.py [--only REGEX] [--out-dir work_dirs/head_matrix]

Each row's config is shrunk to the toy data (``xcit_dense.testing.tool_runs.shrink_to_toy``:
toy datasets and classes, image sizes scaled to the toy images, random backbone weights, two
training iterations), trained by ``tools/train.py`` and tested by ``tools/test.py`` on the
checkpoint it wrote, each in its own process, as a user runs them. For the heads we do not
ship, the row's config is what a user writes: mmdet's or mmseg's own config as ``_base_`` and
the lines that put XCiT in (below, in ``UNSHIPPED``). Results go to OUT_DIR/matrix.md (the
README's table) and OUT_DIR/matrix.json; a row already in matrix.json is not run again unless
--rerun. The toy data must exist: ``tools/make_toy_data.py coco|coco-panoptic|ade
data/toy_...`` (the make target generates it).
"""
import argparse
import glob
import hashlib
import json
import os
import re
import time
from typing import Dict, List, Tuple

from mmengine.config import Config

from xcit_dense.engine.data_check import innermost_dataset
from xcit_dense.testing.tool_runs import ROOT, train_and_test, write_toy_config

DATA_ROOTS = {'coco': 'data/toy_coco/', 'coco-panoptic': 'data/toy_coco_panoptic/',
              'ade': 'data/toy_ade/'}
BACKBONE_BASE = os.path.join(ROOT, 'configs/_base_/models/xcit-s12-p8.py')


def xcit(out_strides: Tuple[int, ...] = (4, 8, 16, 32)) -> str:
    """The backbone lines of a user's config: XCiT-S12/8 with ImageNet weights, returning the
    maps at ``out_strides``."""
    strides = '' if out_strides == (4, 8, 16, 32) else f', out_strides={out_strides}'
    return ("dict(_delete_=True, type='XCiT', arch='small_12', patch_size=8"
            f"{strides},\n                  norm_cfg=dict(type='SyncBN'), "
            "init_cfg=dict(type='Pretrained', checkpoint='imagenet'))")


IMPORT = "custom_imports = dict(imports=['xcit_dense'], allow_failed_imports=False)\n"
RGB = ("data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], "
       'bgr_to_rgb=True)')

# An FPN neck's four inputs from XCiT's four levels, as most mmdet heads read them.
FPN_NECK = f"""
model = dict(backbone={xcit()},
             neck=dict(in_channels=[384] * 4))"""

# name -> (toy data, mmdet's / mmseg's config, the lines that put XCiT in, why where needed)
UNSHIPPED: Dict[str, Tuple[str, str, str]] = {
    'Faster R-CNN': ('coco', 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', FPN_NECK),
    'Deformable DETR': ('coco', 'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
                        f"""
model = dict(backbone={xcit((8, 16, 32))},
             neck=dict(in_channels=[384] * 3))"""),
    'Conditional DETR': ('coco', 'mmdet::conditional_detr/conditional-detr_r50_8xb2-50e_coco.py',
                         f"""
model = dict(backbone={xcit((32,))},
             neck=dict(in_channels=[384]))"""),
    'YOLOX-S (EMA)': ('coco', 'mmdet::yolox/yolox_s_8xb8-300e_coco.py', f"""
model = dict({RGB},
             backbone={xcit((8, 16, 32))},
             neck=dict(in_channels=[384] * 3))"""),
    'Sparse R-CNN': ('coco', 'mmdet::sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco.py', FPN_NECK),
    'TOOD': ('coco', 'mmdet::tood/tood_r50_fpn_1x_coco.py', FPN_NECK),
    'SOLOv2': ('coco', 'mmdet::solov2/solov2_r50_fpn_1x_coco.py', FPN_NECK),
    'CondInst': ('coco', 'mmdet::condinst/condinst_r50_fpn_ms-poly-90k_coco_instance.py', FPN_NECK),
    'Panoptic FPN': ('coco-panoptic', 'mmdet::panoptic_fpn/panoptic-fpn_r50_fpn_1x_coco.py',
                     FPN_NECK),
    'Mask2Former panoptic': (
        'coco-panoptic', 'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py', f"""
model = dict(backbone={xcit()},
             panoptic_head=dict(in_channels=[384] * 4))"""),
    'PSPNet': ('ade', 'mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py', f"""
model = dict(pretrained=None,  # the base's ResNet checkpoint
             backbone={xcit((8,))},
             decode_head=dict(in_channels=384, in_index=0),
             auxiliary_head=dict(in_channels=384, in_index=0))"""),
    'DeepLabV3+': ('ade', 'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py',
                   f"""
model = dict(pretrained=None,  # the base's ResNet checkpoint
             backbone={xcit((4, 8))},
             decode_head=dict(in_channels=384, in_index=1, c1_in_channels=384),
             auxiliary_head=dict(in_channels=384, in_index=1))"""),
    'OCRNet': ('ade', 'mmseg::ocrnet/ocrnet_hr18_4xb4-80k_ade20k-512x512.py', f"""
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,  # the base's HRNet checkpoint
    backbone={xcit()},
    decode_head=[  # mmengine replaces lists whole: both heads are written out
        dict(type='FCNHead', in_channels=[384] * 4, channels=384, in_index=(0, 1, 2, 3),
             input_transform='resize_concat', kernel_size=1, num_convs=1, concat_input=False,
             dropout_ratio=-1, num_classes=150, norm_cfg=norm_cfg, align_corners=False,
             loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
        dict(type='OCRHead', in_channels=[384] * 4, in_index=(0, 1, 2, 3),
             input_transform='resize_concat', channels=512, ocr_channels=256,
             dropout_ratio=-1, num_classes=150, norm_cfg=norm_cfg, align_corners=False,
             loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    ])"""),
    'Segmenter': ('ade', 'mmseg::segmenter/segmenter_vit-b_mask_8xb1-160k_ade20k-512x512.py',
                  f"""
model = dict(pretrained=None,  # the base's ViT checkpoint
             backbone={xcit((16,))},
             decode_head=dict(in_channels=384, channels=384, embed_dims=384, num_heads=6))"""),
    'K-Net': ('ade', 'mmseg::knet/knet-s3_r50-d8_upernet_8xb2-adamw-80k_ade20k-512x512.py', f"""
model = dict(pretrained=None,  # the base's ResNet checkpoint
             backbone={xcit()},
             decode_head=dict(kernel_generate_head=dict(in_channels=[384] * 4)),
             auxiliary_head=dict(in_channels=384))"""),
}


def shipped_configs() -> List[str]:
    """Every config under configs/ a user can run (not the ``_base_`` parts)."""
    paths = glob.glob(os.path.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    return sorted(os.path.relpath(p, ROOT) for p in paths if '/_base_/' not in p)


def toy_kind(cfg: Config) -> str:
    """The toy data a config's task reads: ADE20k-like for mmseg, COCO panoptic or instance
    for mmdet."""
    if cfg.get('default_scope') == 'mmseg':
        return 'ade'
    dataset = innermost_dataset(cfg.train_dataloader.dataset)
    return 'coco-panoptic' if 'Panoptic' in dataset.get('type', '') else 'coco'


def user_config(base: str, lines: str) -> str:
    """A user's config text: mmdet's or mmseg's config as the base, then ``lines``."""
    return f'_base_ = [{base!r}]\n{IMPORT}{lines.strip()}\n'


def slug(name: str) -> str:
    """A row's folder name."""
    return re.sub(r'[^\w.-]+', '_', name).strip('_')


def file_digest(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def run_row(name: str, config: str, kind: str, out_dir: str, done: Dict[str, Dict]) -> Dict:
    """Shrink, train and test one row; what the table shows of it. A config that resolves to
    the same toy config as a row in ``done`` (the release-name aliases in configs/xcit/) is
    not run again: it gets that row's outcome, naming it."""
    work_dir = os.path.join(out_dir, slug(name))
    start = time.time()
    try:
        path = write_toy_config(config, kind, DATA_ROOTS[kind],
                                os.path.join(work_dir, 'toy_config.py'))
    except Exception as e:  # the config itself does not load or shrink
        return dict(name=name, train_rc=None, test_rc=None, error=f'{type(e).__name__}: {e}')
    digest = file_digest(path)
    same = [r for r in done.values() if r.get('digest') == digest and not r.get('same_as')
            and r['name'] != name]
    if same:
        return dict(same[0], name=name, same_as=same[0]['name'], seconds=0)
    run = train_and_test(path, work_dir)
    result = dict(name=name, kind=kind, train_rc=run.train_rc, test_rc=run.test_rc,
                  metrics=run.metrics, seconds=round(time.time() - start), digest=digest)
    if not run.ok:
        log = run.test_log if run.train_rc == 0 else run.train_log
        result['error'] = '\n'.join(log.strip().splitlines()[-3:])
    return result


# The metrics the table shows of each run (mmdet's CocoMetric and CocoPanopticMetric, mmseg's
# IoUMetric).
MAIN_METRICS = ('bbox_mAP', 'segm_mAP', 'PQ', 'mIoU', 'aAcc')


DOC_HEADER = '''# Every config and head through the tools

Generated by `make head-matrix` (`tools/analysis_tools/head_matrix.py`; the table is its
`work_dirs/head_matrix/matrix.md`), on CPU, 2 cores. Each row's config is shrunk to the toy data
(`xcit_dense.testing.tool_runs.shrink_to_toy`: toy datasets and classes, image sizes scaled to
the toy images, random backbone weights, two iterations of batch 2) at its own architecture,
trained by `tools/train.py`, then tested by `tools/test.py` on the checkpoint it wrote, each
in its own process. The metrics are those of two iterations from random weights: they show
that evaluation ran on the model's predictions, not accuracy. "No predictions above the score
threshold": the test ran and mmdet's CocoMetric found no box scored above the head's
`score_thr` (one-stage heads start from a prior score of about 0.01), so it reports no metric.
The three AMP configs are refused on CPU by design (AMP needs a CUDA GPU; their models and data
run in the rows without `amp`). Configs that resolve to the same toy config as an earlier row
(the release-name aliases in `configs/xcit/`) are not run twice.

'''


def table(results: List[Dict]) -> str:
    """The markdown of the README's section: a row per config (its outcome, or the row it
    resolves to the same toy config as), then the config a user writes for each head we do
    not ship."""
    rows = ['| config | toy data | train | test | test metrics (2 iterations on toy data) |',
            '|---|---|---|---|---|']
    for r in results:
        if r.get('same_as'):
            outcome = f"same toy config as `{r['same_as']}`"
        elif r.get('metrics'):
            outcome = ', '.join(f'{k.split("/")[-1]} {v:.3g}' for k, v in r['metrics'].items()
                                if k.split('/')[-1] in MAIN_METRICS)
        elif r['test_rc'] == 0:
            outcome = 'no predictions above the score threshold (mmdet reports no metric)'
        else:
            error = (r.get('error') or '').strip().splitlines()
            outcome = error[-1] if error else ''
        name = (r['name'] if r['name'] in UNSHIPPED
                else f"[{os.path.basename(r['name'])}](../{r['name']})")
        rows.append(f"| {name} | {r.get('kind', '')} | exit {r['train_rc']} | "
                    f"exit {r['test_rc']} | {outcome.replace('|', '/')} |")
    lines = ['', '## What a user writes', '', 'For each head we do not ship, beside mmdet\'s or '
             'mmseg\'s config as `_base_`:', '']
    for name, (_, base, text) in UNSHIPPED.items():
        lines += [f'**{name}**', '', '```python', user_config(base, text).strip(), '```', '']
    return '\n'.join(rows) + '\n' + '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--only', help='run the rows whose name matches this regex')
    parser.add_argument('--out-dir', default='work_dirs/head_matrix')
    parser.add_argument('--rerun', action='store_true', help='run rows already recorded')
    parser.add_argument('--doc', help='also write the table, with its explanation, here '
                        '(docs/head_matrix.md)')
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    record = os.path.join(args.out_dir, 'matrix.json')
    done = {}
    if os.path.isfile(record):
        with open(record) as f:
            done = {r['name']: r for r in json.load(f)}
    for name, result in done.items():  # rows recorded before digests were
        config = os.path.join(args.out_dir, slug(name), 'toy_config.py')
        if 'digest' not in result and not result.get('same_as') and os.path.isfile(config):
            result['digest'] = file_digest(config)
    rows = [(path, os.path.join(ROOT, path), None) for path in shipped_configs()]
    rows += [(name, user_config(base, lines), kind)
             for name, (kind, base, lines) in UNSHIPPED.items()]
    for name, config, kind in rows:
        if args.only and not re.search(args.only, name):
            continue
        if name in done and not args.rerun:
            continue
        if kind is None:
            kind = toy_kind(Config.fromfile(config))
        result = run_row(name, config, kind, args.out_dir, done)
        done[name] = result
        print(f"{name}: train exit {result['train_rc']}, test exit {result['test_rc']}, "
              f"{result.get('metrics') or result.get('error')}", flush=True)
        with open(record, 'w') as f:
            json.dump(list(done.values()), f, indent=1)
    ordered = [done[name] for name, _, _ in rows if name in done]
    with open(os.path.join(args.out_dir, 'matrix.md'), 'w') as f:
        f.write(table(ordered))
    if args.doc:
        with open(args.doc, 'w') as f:
            f.write(DOC_HEADER + table(ordered))
    print(table(ordered))


if __name__ == '__main__':
    main()
