"""The XCiT release's trained detectors and segmentors (mmcv 1.x files of mmdet 2.11 / mmseg
0.11, with the release's backbone key names) load wherever a checkpoint goes, bit for bit, and
a checkpoint that would leave part of a model at its initialisation stops with an error.

The release-format files are made from random models: our keys renamed to the release's
(``backbone.pos_embeder.*``, ``backbone.fpn1..4.*``) in an mmcv 1.x file. That renaming is
checked against ``tests/data/release_layouts.json``, the state-dict layouts that the release's
own code builds with mmdet 2.11 / mmseg 0.11 (see ``tests/data/make_release_layouts.py``).
"""
import functools
import http.server
import json
import os
import pickle
import re
import subprocess
import sys
import threading
from collections import OrderedDict

import pytest
import torch
from mmengine.config import Config

import xcit_dense  # noqa: F401
from xcit_dense.engine import build_analysis_model, build_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYOUTS = os.path.join(ROOT, 'tests/data/release_layouts.json')
RELEASE_CONFIGS = {
    'mask_rcnn_xcit_small_12_p8': 'configs/mask_rcnn/mask-rcnn_xcit-s12-p8_fpn_ms-crop-3x_coco.py',
    'mask_rcnn_xcit_small_12_p16':
        'configs/mask_rcnn/mask-rcnn_xcit-s12-p16_fpn_ms-crop-3x_coco.py',
    'sem_fpn_xcit_small_12_p8': 'configs/sem_fpn/fpn_xcit-s12-p8_8xb2-80k_ade20k-512x512.py',
    'sem_fpn_xcit_small_12_p16': 'configs/sem_fpn/fpn_xcit-s12-p16_8xb2-80k_ade20k-512x512.py',
    'upernet_xcit_small_12_p8':
        'configs/upernet/upernet_xcit-s12-p8_8xb2-160k_ade20k-512x512.py',
    'upernet_xcit_small_12_p16':
        'configs/upernet/upernet_xcit-s12-p16_8xb2-160k_ade20k-512x512.py',
}


def to_release_names(state):
    """Our whole-model keys under the XCiT release's backbone names."""
    renamed = OrderedDict()
    for key, value in state.items():
        key = re.sub(r'^backbone\.pos_embed\.', 'backbone.pos_embeder.', key)
        key = re.sub(r'^backbone\.pyramid\.(\d)\.', lambda m: f'backbone.fpn{int(m[1]) + 1}.', key)
        renamed[key] = value
    return renamed


def release_file(state, scope, classes):
    """An mmcv 1.x checkpoint as the release's runs saved it (mmcv 1.3 ``save_checkpoint``:
    ``meta`` with versions, config text, CLASSES, epoch/iter; the optimizer state)."""
    meta = dict(mmcv_version='1.3.0', time='Wed Jun 16 10:00:00 2021', env_info='sys.platform: '
                'linux\nPyTorch: 1.7.1', config="model = dict(type='MaskRCNN')", seed=0,
                exp_name='release_run.py', CLASSES=tuple(classes), epoch=36, iter=263808)
    meta[f'{scope}_version'] = '2.11.0' if scope == 'mmdet' else '0.11.0'
    if scope == 'mmseg':
        meta['PALETTE'] = [[120, 120, 120]] * len(classes)
    params = [v for k, v in state.items() if v.is_floating_point()][:2]
    optimizer = dict(state={0: dict(step=10, exp_avg=torch.zeros_like(params[0]),
                                    exp_avg_sq=torch.zeros_like(params[0]))},
                     param_groups=[dict(lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
                                        weight_decay=0.05, amsgrad=False, params=[0, 1])])
    return dict(meta=meta, state_dict=to_release_names(state), optimizer=optimizer)


def our_file(state):
    return dict(meta=dict(mmengine_version='0.10.7', epoch=12, iter=480), state_dict=state)


def randomized_state(model, randomize):
    """A random model's state, with non-trivial norms, LayerScales and temperatures."""
    torch.manual_seed(3)
    randomize(model)
    return OrderedDict((k, v.clone()) for k, v in model.state_dict().items())


# ---------------------------------------------------------------------------------------------
# The fixture's renaming against the layouts the release's code builds
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', sorted(RELEASE_CONFIGS))
def test_release_layout_loads_exactly_into_our_config(name):
    """A state dict with exactly the layout of the release's trained model (key names and
    shapes from mmdet 2.11 / mmseg 0.11) loads into our config of that variant with no key
    missing or left over, every tensor where it belongs."""
    with open(LAYOUTS) as f:
        layout = json.load(f)[name]
    cfg = Config.fromfile(os.path.join(ROOT, RELEASE_CONFIGS[name]))
    assert cfg.default_scope == ('mmdet' if name.startswith('mask_rcnn') else 'mmseg')
    model = build_analysis_model(cfg)
    ours = model.state_dict()
    assert {k: list(v.shape) for k, v in to_release_names(ours).items()} == layout
    torch.manual_seed(0)
    release = OrderedDict((k, torch.randn(shape) if shape else torch.tensor(7))
                          for k, shape in layout.items())
    result = model.load_state_dict(release, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    loaded = model.state_dict()
    for key, value in to_release_names(loaded).items():
        assert torch.equal(value, release[key].to(value.dtype)), key


# ---------------------------------------------------------------------------------------------
# tools/test.py: release files, local and by URL, give our files' predictions
# ---------------------------------------------------------------------------------------------

class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests = []

    def do_GET(self):
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope='module')
def file_server(tmp_path_factory):
    """An http server on 127.0.0.1 serving a folder, counting the requests per path."""
    folder = tmp_path_factory.mktemp('served')
    handler = functools.partial(_CountingHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f'http://127.0.0.1:{server.server_port}', _CountingHandler.requests
    server.shutdown()


def run_test_tool(config, checkpoint, out, env=None, check=True):
    proc = subprocess.run([sys.executable, 'tools/test.py', str(config), str(checkpoint),
                           '--out', str(out)], cwd=ROOT, capture_output=True, text=True,
                          env=env)
    if check and proc.returncode:
        raise AssertionError(proc.stderr[-4000:])
    return proc


def load_results(path):
    with open(path, 'rb') as f:
        return pickle.load(f)


def assert_same_detections(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        px, py = x['pred_instances'], y['pred_instances']
        assert len(px['scores']) > 0
        for key in ('bboxes', 'scores', 'labels'):
            assert torch.equal(px[key], py[key]), key
        assert px['masks'] == py['masks']


def assert_same_segmentations(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x['seg_logits']['data'], y['seg_logits']['data'])
        assert torch.equal(x['pred_sem_seg']['data'], y['pred_sem_seg']['data'])


@pytest.fixture(scope='module')
def detector(toy_cfg, toy_coco_root, tmp_path_factory, randomize):
    """The toy Mask R-CNN config (dumped to a file) and a random model's state, saved in our
    format and in the release's."""
    tmp = tmp_path_factory.mktemp('release_det')
    cfg = toy_cfg('det', toy_coco_root, tmp / 'work', 'release_det')
    cfg.model.test_cfg.rcnn.score_thr = 0.0  # a random model: keep every detection
    config = tmp / 'toy_det.py'
    cfg.dump(str(config))
    state = randomized_state(build_model(cfg), randomize)
    ours, release = tmp / 'ours.pth', tmp / 'maskrcnn_xcit_nano_12_p8.pth'
    torch.save(our_file(state), ours)
    torch.save(release_file(state, 'mmdet', ('circle', 'square', 'triangle')), release)
    return cfg, config, state, ours, release, tmp


def test_release_detector_evaluates_as_ours_from_file_and_url(detector, file_server, tmp_path):
    _, config, _, ours, release, tmp = detector
    folder, url, requests = file_server
    (folder / release.name).write_bytes(release.read_bytes())
    env = dict(os.environ, TORCH_HOME=str(tmp_path / 'torch_home'))
    run_test_tool(config, ours, tmp_path / 'ours.pkl')
    run_test_tool(config, release, tmp_path / 'release.pkl')
    run_test_tool(config, f'{url}/{release.name}', tmp_path / 'url.pkl', env=env)
    expected = load_results(tmp_path / 'ours.pkl')
    assert_same_detections(load_results(tmp_path / 'release.pkl'), expected)
    assert_same_detections(load_results(tmp_path / 'url.pkl'), expected)
    cached = tmp_path / 'torch_home/hub/checkpoints' / release.name
    assert cached.read_bytes() == release.read_bytes()
    assert requests.count(f'/{release.name}') == 1  # downloaded once, for both reads


@pytest.fixture(scope='module')
def segmentors(toy_cfg, toy_ade_root, tmp_path_factory, randomize):
    """Toy Semantic FPN and UperNet configs and random states, in both formats."""
    made = {}
    for name in ('sem_fpn', 'upernet'):
        tmp = tmp_path_factory.mktemp(f'release_{name}')
        cfg = toy_cfg('seg', toy_ade_root, tmp / 'work', f'release_{name}')
        if name == 'upernet':  # the release's UperNet heads, narrowed for the CPU
            cfg.model.neck = None
            cfg.model.decode_head = dict(
                type='UPerHead', in_channels=[128] * 4, in_index=[0, 1, 2, 3],
                pool_scales=(1, 2, 3, 6), channels=32, num_classes=4, align_corners=False,
                norm_cfg=dict(type='BN', requires_grad=True),
                loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0))
            cfg.model.auxiliary_head = dict(
                type='FCNHead', in_channels=128, in_index=2, channels=16, num_convs=1,
                concat_input=False, num_classes=4, align_corners=False,
                norm_cfg=dict(type='BN', requires_grad=True),
                loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4))
        config = tmp / f'toy_{name}.py'
        cfg.dump(str(config))
        state = randomized_state(build_model(cfg), randomize)
        ours, release = tmp / 'ours.pth', tmp / f'{name}_xcit_nano_12_p8.pth'
        torch.save(our_file(state), ours)
        torch.save(release_file(state, 'mmseg', ('background', 'circle', 'square',
                                                 'triangle')), release)
        made[name] = (config, ours, release)
    return made


@pytest.mark.parametrize('name', ['sem_fpn', 'upernet'])
def test_release_segmentor_evaluates_as_ours(name, segmentors, file_server, tmp_path):
    config, ours, release = segmentors[name]
    run_test_tool(config, ours, tmp_path / 'ours.pkl')
    sources = [release]
    if name == 'sem_fpn':
        folder, url, _ = file_server
        (folder / release.name).write_bytes(release.read_bytes())
        sources.append(f'{url}/{release.name}')
    env = dict(os.environ, TORCH_HOME=str(tmp_path / 'torch_home'))
    expected = load_results(tmp_path / 'ours.pkl')
    for i, source in enumerate(sources):
        run_test_tool(config, source, tmp_path / f'{i}.pkl', env=env)
        assert_same_segmentations(load_results(tmp_path / f'{i}.pkl'), expected)


# ---------------------------------------------------------------------------------------------
# No silent partial load
# ---------------------------------------------------------------------------------------------

def test_missing_backbone_tensor_stops_the_test_tool(detector, tmp_path):
    _, config, state, _, release, _ = detector
    broken = torch.load(release, weights_only=True)
    del broken['state_dict']['backbone.pos_embeder.token_projection.bias']
    path = tmp_path / 'maskrcnn_missing.pth'
    torch.save(broken, path)
    proc = run_test_tool(config, path, tmp_path / 'out.pkl', check=False)
    assert proc.returncode != 0 and not (tmp_path / 'out.pkl').exists()
    message = proc.stderr[proc.stderr.index('CheckpointMismatchError'):]
    assert (f'Checkpoint {path} would leave the XCiT backbone at \'backbone\' partly at its '
            "initialisation: it holds the XCiT release's keys of embed_dim=128, 12 blocks, "
            'patch_size=8; the model is embed_dim=128, 12 blocks, patch_size=8.') in message
    assert "Missing keys (1): ['backbone.pos_embed.token_projection.bias']" in message
    assert 'Unexpected keys (0): []' in message


def test_missing_head_tensor_stops_the_test_tool(detector, tmp_path):
    _, config, _, _, release, _ = detector
    broken = torch.load(release, weights_only=True)
    del broken['state_dict']['roi_head.mask_head.conv_logits.weight']
    broken['state_dict']['roi_head.mask_head.conv_logit.weight'] = torch.zeros(3)
    path = tmp_path / 'maskrcnn_no_logits.pth'
    torch.save(broken, path)
    proc = run_test_tool(config, path, tmp_path / 'out.pkl', check=False)
    assert proc.returncode != 0 and not (tmp_path / 'out.pkl').exists()
    message = proc.stderr[proc.stderr.index('CheckpointMismatchError'):]
    assert (f'Checkpoint {path} does not fit the MaskRCNN of the config, so part of the model '
            'would be evaluated at its initialisation. The checkpoint is an OpenMMLab 1.x '
            'checkpoint (mmcv 1.x runner) written by mmcv 1.3.0, mmdet 2.11.0; top-level '
            'modules: backbone, neck, roi_head, rpn_head; 3 classes.') in message
    assert 'unexpected key in source state_dict: roi_head.mask_head.conv_logit.weight' in message
    assert 'missing keys in source state_dict: roi_head.mask_head.conv_logits.weight' in message


def test_load_from_with_other_classes_warns_and_loads_the_backbone(detector, tmp_path, capsys):
    """Fine-tuning from the release's detector on a dataset with other classes: the
    classifiers of other shapes are a warning naming them; the backbone is loaded."""
    from mmengine.runner import Runner
    cfg, _, state, _, release, _ = detector
    cfg = cfg.copy()
    cfg.model.roi_head.bbox_head.num_classes = 5
    cfg.model.roi_head.mask_head.num_classes = 5
    cfg.work_dir, cfg.load_from = str(tmp_path / 'finetune'), str(release)
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    loaded = runner.model.state_dict()
    for key, value in state.items():
        if key.startswith(('backbone.', 'neck.', 'rpn_head.')):
            assert torch.equal(loaded[key], value), key
    log = capsys.readouterr().out  # mmengine prints the mismatches
    assert ('size mismatch for roi_head.bbox_head.fc_cls.weight: copying a param with shape '
            'torch.Size([4, 256]) from checkpoint, the shape in current model is '
            'torch.Size([6, 256])') in log
    assert 'size mismatch for roi_head.mask_head.conv_logits.weight' in log


def test_load_from_without_the_backbone_is_an_error(detector, tmp_path):
    """A detector checkpoint of another backbone (here: none of XCiT's tensors) must not
    leave the XCiT backbone random."""
    from mmengine.runner import Runner
    from xcit_dense.checkpoint import CheckpointMismatchError
    cfg, _, state, _, _, _ = detector
    heads_only = tmp_path / 'resnet_maskrcnn.pth'
    torch.save(dict(state_dict={k: v for k, v in state.items()
                                if not k.startswith('backbone.')}), heads_only)
    cfg = cfg.copy()
    cfg.work_dir, cfg.load_from = str(tmp_path / 'wrong'), str(heads_only)
    runner = Runner.from_cfg(cfg)
    with pytest.raises(CheckpointMismatchError, match=re.escape(
            f'The checkpoint being loaded (the last file read was {heads_only}) would leave the '
            "XCiT backbone at 'backbone' partly at its initialisation: it holds no XCiT tensors "
            "under 'backbone.'")):
        runner.load_or_resume()


# ---------------------------------------------------------------------------------------------
# init_cfg (path and URL), the converter tool
# ---------------------------------------------------------------------------------------------

def backbone_outputs(backbone, x):
    with torch.no_grad():
        return backbone.eval()(x)


def test_init_cfg_and_converter_read_the_release_detector(detector, file_server, tmp_path,
                                                          monkeypatch):
    from xcit_dense.models import XCiT
    _, _, state, _, release, _ = detector
    folder, url, requests = file_server
    (folder / 'init_cfg.pth').write_bytes(release.read_bytes())
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    expected = XCiT('nano_12', patch_size=8)
    expected.load_state_dict({k[len('backbone.'):]: v for k, v in state.items()
                              if k.startswith('backbone.')})
    x = torch.randn(1, 3, 64, 96)
    reference = backbone_outputs(expected, x)
    converted = tmp_path / 'converted.pth'
    proc = subprocess.run([sys.executable, 'tools/model_converters/xcit2mmdet.py',
                           str(release), str(converted)], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert "(the XCiT release's format)" in proc.stdout
    for checkpoint in (str(release), f'{url}/init_cfg.pth', str(converted)):
        model = XCiT('nano_12', patch_size=8,
                     init_cfg=dict(type='Pretrained', checkpoint=checkpoint))
        model.init_weights()
        assert all(torch.equal(a, b) for a, b in zip(backbone_outputs(model, x), reference))
    assert requests.count('/init_cfg.pth') == 1


def test_failed_download_names_the_url_and_the_reason(file_server, tmp_path, monkeypatch):
    from xcit_dense.checkpoint import load_xcit_checkpoint
    from xcit_dense.models import XCiT
    _, url, _ = file_server
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    with pytest.raises(RuntimeError, match=re.escape(
            f'Could not download checkpoint {url}/missing.pth: HTTP error 404 (File not found)')):
        load_xcit_checkpoint(XCiT('nano_12'), f'{url}/missing.pth')
    assert not (tmp_path / 'torch_home/hub/checkpoints/missing.pth').exists()
    with pytest.raises(RuntimeError, match=r'Could not download checkpoint '
                                           r'http://127\.0\.0\.1:9/x\.pth: .*refused'):
        load_xcit_checkpoint(XCiT('nano_12'), 'http://127.0.0.1:9/x.pth')


# ---------------------------------------------------------------------------------------------
# The release's other files: ImageNet training checkpoints, DINO backbones
# ---------------------------------------------------------------------------------------------

def release_classifier_state(randomize):
    """A random XCiT-N12/8 classifier under the release's names (timm's ``Xcit`` has the same
    keys but ``pos_embed`` for ``pos_embeder``)."""
    import timm
    torch.manual_seed(5)
    model = randomize(timm.create_model('xcit_nano_12_p8_224'))
    return OrderedDict((k.replace('pos_embed.', 'pos_embeder.'), v)
                       for k, v in model.state_dict().items())


@pytest.mark.parametrize('kind', ['imagenet_training', 'dino_backbone', 'dino_training'])
def test_release_imagenet_and_dino_files_load(kind, randomize, tmp_path):
    import argparse
    from xcit_dense.checkpoint import load_xcit_checkpoint
    from xcit_dense.models import XCiT
    state = release_classifier_state(randomize)
    args = argparse.Namespace(model='xcit_nano_12_p8', drop_path=0.0, input_size=384,
                              data_path='/datasets/imagenet', distillation_type='hard')
    if kind == 'imagenet_training':  # the release's main.py: DeiT's checkpoint dict
        ckpt = dict(model=state, optimizer=dict(state={}, param_groups=[]),
                    lr_scheduler=dict(base_lr=5e-4), epoch=399, model_ema=None,
                    scaler=dict(scale=65536.0), args=args)
    elif kind == 'dino_backbone':  # a bare backbone with the classifier head removed
        ckpt = OrderedDict((k, v) for k, v in state.items() if not k.startswith('head.'))
    else:  # DINO's training checkpoint: teacher backbone and projection head
        teacher = {f'backbone.{k}': v for k, v in state.items() if not k.startswith('head.')}
        teacher['head.mlp.0.weight'] = torch.zeros(8, 128)
        ckpt = dict(student={f'module.{k}': v for k, v in teacher.items()}, teacher=teacher,
                    epoch=300, args=args)
    path = tmp_path / f'{kind}.pth'
    torch.save(ckpt, path)
    model = XCiT('nano_12', patch_size=8)
    info = load_xcit_checkpoint(model, str(path))
    assert info['unexpected'] == []
    assert all(k.startswith('pyramid.') for k in info['missing'])
    loaded = model.state_dict()
    assert torch.equal(loaded['pos_embed.token_projection.weight'],
                       state['pos_embeder.token_projection.weight'])
    assert torch.equal(loaded['blocks.11.mlp.fc2.weight'], state['blocks.11.mlp.fc2.weight'])


# ---------------------------------------------------------------------------------------------
# The release's commands: model.pretrained
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['det', 'seg'])
def test_cfg_options_model_pretrained_loads_the_backbone(kind, toy_cfg, toy_coco_root,
                                                         toy_ade_root, randomize, tmp_path):
    from xcit_dense.engine import load_run_config
    from xcit_dense.models import XCiT
    imagenet = tmp_path / 'xcit_nano_12_p8_384_dist.pth'
    torch.save(dict(model=release_classifier_state(randomize)), imagenet)
    cfg = toy_cfg(kind, toy_coco_root if kind == 'det' else toy_ade_root, tmp_path, 'pre')
    config = tmp_path / 'config.py'
    cfg.dump(str(config))
    with pytest.warns(UserWarning, match=re.escape(
            'model.pretrained is deprecated (mmdet 2.x / mmseg 0.x); the backbone loads '
            f"'{imagenet}' through model.backbone.init_cfg")):
        cfg = load_run_config(str(config), {'model.pretrained': str(imagenet)})
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint=str(imagenet))
    assert cfg.model.get('pretrained') is None
    model = build_model(cfg)
    model.init_weights()
    expected = XCiT('nano_12', patch_size=8,
                    init_cfg=dict(type='Pretrained', checkpoint=str(imagenet)))
    expected.init_weights()
    expected.pyramid.load_state_dict(model.backbone.pyramid.state_dict())
    x = torch.randn(1, 3, 64, 64)
    assert all(torch.equal(a, b) for a, b in zip(backbone_outputs(model.backbone, x),
                                                 backbone_outputs(expected, x)))


def test_release_training_command_runs(toy_cfg, toy_ade_root, randomize, tmp_path):
    """The release's segmentation training command as it is: --seed 0 --deterministic
    --options model.pretrained=IMAGENET_CHECKPOINT."""
    imagenet = tmp_path / 'xcit_nano_12_p8_384_dist.pth'
    torch.save(dict(model=release_classifier_state(randomize)), imagenet)
    cfg = toy_cfg('seg', toy_ade_root, tmp_path / 'work', 'release_cmd')
    cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = 1, 1
    config = tmp_path / 'config.py'
    cfg.dump(str(config))
    proc = subprocess.run([sys.executable, 'tools/train.py', str(config), '--work-dir',
                           str(tmp_path / 'work'), '--seed', '0', '--deterministic', '--options',
                           f'model.pretrained={imagenet}'], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert f"Loaded 344 XCiT tensors from {imagenet} (the XCiT release's format)" in log
    assert "randomness = dict(deterministic=True, seed=0)" in log


def test_mmseg_config_whose_base_sets_pretrained_builds_with_xcit(tmp_path):
    from xcit_dense.engine import UsageError, load_run_config
    config = tmp_path / 'fcn_xcit.py'
    config.write_text(
        "_base_ = 'mmseg::_base_/models/fcn_r50-d8.py'\n"
        "default_scope = 'mmseg'\n"
        "custom_imports = dict(imports=['xcit_dense'], allow_failed_imports=False)\n"
        "norm_cfg = dict(type='BN', requires_grad=True)\n"
        "model = dict(backbone=dict(_delete_=True, type='XCiT', arch='nano_12', patch_size=16,"
        " out_indices=(2, 5, 8, 11)),\n"
        "             decode_head=dict(in_channels=128, in_index=3, norm_cfg=norm_cfg),\n"
        "             auxiliary_head=dict(in_channels=128, in_index=2, norm_cfg=norm_cfg),\n"
        "             data_preprocessor=dict(type='SegDataPreProcessor'))\n")
    cfg = Config.fromfile(str(config))
    assert cfg.model.pretrained == 'open-mmlab://resnet50_v1c'
    with pytest.warns(UserWarning, match='XCiT: pretrained is deprecated'):
        model = build_model(cfg)  # mmseg passes model.pretrained to the backbone
    assert model.backbone.init_cfg == dict(type='Pretrained',
                                           checkpoint='open-mmlab://resnet50_v1c')
    # the tools refuse a base's ResNet checkpoint for XCiT, before anything runs
    with pytest.raises(UsageError, match=re.escape(
            "model.pretrained='open-mmlab://resnet50_v1c', set by the config or a base config "
            "it inherits, names another backbone's checkpoint, which XCiT cannot load: set "
            'model.pretrained=None in your config')):
        load_run_config(str(config))
    # a checkpoint of XCiT's own as model.pretrained moves to the backbone's init_cfg
    config.write_text(config.read_text() + "model.update(pretrained='xcit_nano.pth')\n")
    with pytest.warns(UserWarning, match='model.pretrained is deprecated'):
        cfg = load_run_config(str(config))
    assert cfg.model.backbone.init_cfg.checkpoint == 'xcit_nano.pth'
    assert cfg.model.pretrained is None
    # model.pretrained beside the backbone's own weights: one of them would be ignored
    config.write_text(config.read_text().replace(
        "out_indices=(2, 5, 8, 11)", "out_indices=(2, 5, 8, 11), init_cfg=dict(type="
        "'Pretrained', checkpoint='xcit_nano_12_p16_384_dist.pth')"))
    with pytest.raises(UsageError, match=re.escape(
            "the config sets both model.pretrained ('xcit_nano.pth') and the backbone's "
            'weights')):
        load_run_config(str(config))


@pytest.mark.parametrize('family', ['XCiT', 'CrossViT'])
def test_backbone_pretrained_follows_mmseg_convention(family):
    from xcit_dense.models import CrossViT, XCiT
    cls, arch = (XCiT, 'nano_12') if family == 'XCiT' else (CrossViT, 'tiny')
    with pytest.warns(UserWarning, match=re.escape(
            f"{family}: pretrained is deprecated, use init_cfg=dict(type='Pretrained', "
            "checkpoint='a.pth') instead")):
        model = cls(arch, pretrained='a.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='a.pth')
    with pytest.raises(ValueError, match=f'{family}: init_cfg and pretrained cannot be set at '
                                         'the same time'):
        cls(arch, pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b.pth'))
    with pytest.raises(TypeError, match=f'{family}: pretrained must be a str or None, got int'):
        cls(arch, pretrained=1)


def test_inference_apis_read_release_checkpoints(detector, segmentors, tmp_path):
    """mmdet's ``init_detector`` and mmseg's ``init_model`` (mmengine's ``load_checkpoint``
    function, no runner) get the release's weights too, and its classes from the mmcv 1.x
    meta."""
    from mmdet.apis import init_detector
    from mmseg.apis import init_model
    _, config, state, _, release, _ = detector
    model = init_detector(str(config), str(release), device='cpu')
    assert model.dataset_meta['classes'] == ('circle', 'square', 'triangle')
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    config, ours, release = segmentors['upernet']
    model = init_model(str(config), str(release), device='cpu')
    expected = torch.load(ours, weights_only=True)['state_dict']
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())
    assert model.dataset_meta['classes'] == ('background', 'circle', 'square', 'triangle')


@pytest.mark.parametrize('family', ['XCiT', 'CrossViT'])
def test_whole_model_state_dict_with_a_missing_backbone_tensor_is_refused(family):
    """Plain torch, no OpenMMLab: a detector-like module's ``load_state_dict``, even with
    ``strict=False``, cannot leave a backbone tensor at its initialisation."""
    from xcit_dense.checkpoint import CheckpointMismatchError
    from xcit_dense.models import CrossViT, XCiT
    make = (lambda: XCiT('nano_12', patch_size=16)) if family == 'XCiT' else (
        lambda: CrossViT('tiny'))
    detector = torch.nn.ModuleDict(dict(backbone=make(), neck=torch.nn.Linear(2, 2)))
    state = make().state_dict()
    dropped = sorted(state)[5]
    whole = {f'backbone.{k}': v for k, v in state.items() if k != dropped}
    with pytest.raises(CheckpointMismatchError, match=re.escape(
            f"Missing keys (1): ['backbone.{dropped}']")):
        detector.load_state_dict(whole, strict=False)
    whole[f'backbone.{dropped}'] = state[dropped]
    assert detector.load_state_dict(whole, strict=False).missing_keys == [
        'neck.weight', 'neck.bias']  # the backbone is whole: torch's own rules apply
    assert all(torch.equal(v, state[k]) for k, v in detector['backbone'].state_dict().items())


def test_imagenet_checkpoint_of_each_variant_lives_in_one_place(monkeypatch, file_server,
                                                                tmp_path, randomize):
    """Configs say ``checkpoint='imagenet'``; the backbone resolves it from its preset and
    patch size (the release's 384 distilled weights) and loads it like any URL."""
    import glob
    from xcit_dense.models import XCiT
    from xcit_dense.models import xcit as xcit_module
    for path in glob.glob(f'{ROOT}/configs/**/*.py', recursive=True):
        with open(path) as f:
            assert 'dl.fbaipublicfiles.com/xcit' not in f.read(), path
    for name in RELEASE_CONFIGS.values():
        backbone = Config.fromfile(os.path.join(ROOT, name)).model.backbone
        assert backbone.init_cfg == dict(type='Pretrained', checkpoint='imagenet')
    assert XCiT('m24', patch_size=16).imagenet_url() == (
        'https://dl.fbaipublicfiles.com/xcit/xcit_medium_24_p16_384_dist.pth')
    folder, url, requests = file_server
    (folder / 'xcit').mkdir()
    torch.save(dict(model=release_classifier_state(randomize)),
               folder / 'xcit/xcit_nano_12_p8_384_dist.pth')
    monkeypatch.setattr(xcit_module, 'IMAGENET_URL',
                        xcit_module.IMAGENET_URL.replace('https://dl.fbaipublicfiles.com', url))
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    model = XCiT('n12', patch_size=8, init_cfg=dict(type='Pretrained', checkpoint='imagenet'))
    model.init_weights()
    expected = release_classifier_state(randomize)['blocks.3.attn.qkv.weight']
    assert torch.equal(model.state_dict()['blocks.3.attn.qkv.weight'], expected)
    assert requests.count('/xcit/xcit_nano_12_p8_384_dist.pth') == 1
