"""Regenerate ``release_layouts.json`` from the XCiT release's own code.

Run by hand, outside the test suite (this module is never imported by
pytest: it has no ``test_`` prefix and lives under ``tests/data``).

The JSON holds, for each trained dense model of the XCiT release
(github.com/facebookresearch/xcit, folders ``detection/`` and
``semantic_segmentation/``), the ``state_dict`` layout (key -> shape, in
``state_dict`` order, ``num_batches_tracked`` included with shape ``[]``) that
the release code builds with the libraries it was written for: mmcv-full
1.3.0, mmdet 2.11.0 and mmsegmentation 0.11.0. The models are really built
(``build_detector`` / ``build_segmentor`` on the release configs, exactly as
the release's ``tools/train.py`` does); only ``__init__`` runs, never a
forward, so no compiled mmcv ops are needed.

Nothing of the release is copied here: the script reads a checkout of the
release repository given on the command line.

How to run (any Python with a recent torch works, e.g. the project venv,
which is not modified)::

    pip download --no-deps mmdet==2.11.0 mmsegmentation==0.11.0 mmcv==1.3.0 -d dl
    # unpack the two wheels and the mmcv sdist; copy the packages ``mmcv``,
    # ``mmdet`` and ``mmseg`` into SITE, then add the pure-python helpers:
    pip install --no-deps --target SITE addict yapf==0.31.0 pyyaml six \\
        terminaltables timm==0.4.12 opencv-python-headless pycocotools
    PYTHONPATH=SITE python tests/data/make_release_layouts.py \\
        --release-repo PATH_TO_XCIT_CHECKOUT \\
        --out tests/data/release_layouts.json

``PATH_TO_XCIT_CHECKOUT`` must contain ``detection/backbone/xcit.py``,
``semantic_segmentation/backbone/xcit.py`` and the ``configs`` folders of both.
A stub stands in for the compiled ``mmcv._ext`` (and for matplotlib, used only
for drawing); ``nn.SyncBatchNorm`` is built as is (its ``__init__`` needs no
process group), so BN keys are exactly those of the release; the torch<1.8
method ``SyncBatchNorm._specify_ddp_gpu_num`` that mmcv 1.3 calls is patched
in as a no-op.
"""
import argparse
import importlib.util
import json
import os.path as osp
import sys
import types
from collections import OrderedDict

MODELS = OrderedDict([
    ('mask_rcnn_xcit_small_12_p8',
     ('detection', 'xcit/mask_rcnn_xcit_small_12_p8_3x_coco.py')),
    ('mask_rcnn_xcit_small_12_p16',
     ('detection', 'xcit/mask_rcnn_xcit_small_12_p16_3x_coco.py')),
    ('sem_fpn_xcit_small_12_p8',
     ('semantic_segmentation', 'xcit/sem_fpn/sem_fpn_xcit_small_12_p8_80k_ade20k.py')),
    ('sem_fpn_xcit_small_12_p16',
     ('semantic_segmentation', 'xcit/sem_fpn/sem_fpn_xcit_small_12_p16_80k_ade20k.py')),
    ('upernet_xcit_small_12_p8',
     ('semantic_segmentation', 'xcit/upernet/upernet_xcit_small_12_p8_160k_ade20k.py')),
    ('upernet_xcit_small_12_p16',
     ('semantic_segmentation', 'xcit/upernet/upernet_xcit_small_12_p16_160k_ade20k.py')),
])

ABOUT = (
    'state_dict layouts (key -> shape, state_dict order) of the XCiT release dense '
    'models (github.com/facebookresearch/xcit detection/ and semantic_segmentation/), '
    'produced {date} by tests/data/make_release_layouts.py: the models were BUILT with '
    'the release backbone code and the release configs using mmcv {mmcv} (pure python, '
    'mmcv._ext stubbed, no forward), mmdet {mmdet}, mmsegmentation {mmseg}, timm {timm}, '
    'torch {torch}; build_detector/build_segmentor(cfg.model, train_cfg, test_cfg) as in '
    'the release tools/train.py; SyncBN kept as nn.SyncBatchNorm.')


class _Stub(types.ModuleType):
    """Module whose every public attribute is a function that refuses to run."""

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)

        def _missing(*args, **kwargs):
            raise RuntimeError(f'{self.__name__}.{name} is a stub')

        return _missing


def install_stubs():
    import torch

    sys.modules.setdefault('mmcv._ext', _Stub('mmcv._ext'))
    # mmcv 1.3 build_norm_layer('SyncBN') calls this torch<1.8 method; a no-op
    # here (it only set the ddp gpu count, no parameter or buffer).
    if not hasattr(torch.nn.SyncBatchNorm, '_specify_ddp_gpu_num'):
        torch.nn.SyncBatchNorm._specify_ddp_gpu_num = lambda self, gpu_size: None
    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        for name in ('matplotlib', 'matplotlib.pyplot', 'matplotlib.collections',
                     'matplotlib.patches'):
            sys.modules[name] = _Stub(name)


def load_release_backbone(path, name):
    """Import the release backbone file; it registers ``XCiT`` on import."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def layout(model):
    return OrderedDict((k, list(v.shape)) for k, v in model.state_dict().items())


def build_all(repo):
    from mmcv import Config
    from mmdet.models import build_detector
    from mmseg.models import build_segmentor

    load_release_backbone(osp.join(repo, 'detection', 'backbone', 'xcit.py'),
                          'xcit_release_detection_backbone')
    load_release_backbone(osp.join(repo, 'semantic_segmentation', 'backbone', 'xcit.py'),
                          'xcit_release_segmentation_backbone')
    builders = {'detection': build_detector, 'semantic_segmentation': build_segmentor}
    out = OrderedDict()
    for key, (task, cfg_path) in MODELS.items():
        cfg = Config.fromfile(osp.join(repo, task, 'configs', cfg_path))
        model = builders[task](
            cfg.model, train_cfg=cfg.get('train_cfg'), test_cfg=cfg.get('test_cfg'))
        out[key] = layout(model)
        print(f'{key}: {len(out[key])} keys, '
              f'{sum(p.numel() for p in model.parameters())} parameters')
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--release-repo', required=True,
                        help='checkout of github.com/facebookresearch/xcit')
    parser.add_argument('--out', default=osp.join(osp.dirname(__file__),
                                                  'release_layouts.json'))
    parser.add_argument('--date', default='2026-11-24')
    args = parser.parse_args()

    install_stubs()
    import mmcv
    import mmdet
    import mmseg
    import timm
    import torch

    data = OrderedDict()
    data['_about'] = ABOUT.format(
        date=args.date, mmcv=mmcv.__version__, mmdet=mmdet.__version__,
        mmseg=mmseg.__version__, timm=timm.__version__, torch=torch.__version__)
    data.update(build_all(args.release_repo))
    with open(args.out, 'w') as f:
        f.write('{\n')
        items = list(data.items())
        for i, (key, value) in enumerate(items):
            sep = ',' if i < len(items) - 1 else ''
            f.write(f'{json.dumps(key)}: {json.dumps(value, separators=(",", ":"))}{sep}\n')
        f.write('}\n')
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
