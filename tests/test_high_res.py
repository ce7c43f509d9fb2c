"""High resolution end to end: --resolution/--max-side in the test pipeline and the tools,
large image files, and the streamed CPU inference of the pyramid, necks, heads and label maps
(equal to the plain path on sizes the strides do not divide)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from PIL import Image

import xcit_dense  # noqa: F401
from xcit_dense import CrossViT, XCiT
from xcit_dense.engine import UsageError, build_analysis_model, dummy_data_samples
from xcit_dense.engine.inference import run_inference
from xcit_dense.engine.resolution import Resolution, parse_resolution, set_test_resolution
from xcit_dense.models.label_map import banded_label_map
from xcit_dense.models.pyramid import PyramidLevels
from xcit_dense.testing.checkpoints import save_model_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DET_CONFIG = os.path.join(ROOT, 'configs/toy/mask-rcnn_xcit-n12-p8_fpn-64_toy-shapes.py')
SEG_CONFIG = os.path.join(ROOT, 'configs/toy/fpn_xcit-n12-p8_toy-ade-128x128.py')
COCO_CONFIG = os.path.join(ROOT, 'configs/maskrcnn_xcit_s12_p8_coco.py')


# ---------------------------------------------------------------------------- options


def test_resolution_options():
    assert parse_resolution() == parse_resolution('config') == Resolution()
    assert parse_resolution('native') == Resolution(1.0, None)
    assert parse_resolution('0.5') == Resolution(0.5, None)
    assert parse_resolution('config', 8000) == parse_resolution('native', 8000) \
        == Resolution(1.0, 8000)
    assert parse_resolution('native', 8000).describe() == \
        'each image at its own resolution, long side capped at 8000 px'
    for bad in ('full', '0', '-1', 'nan', 'inf'):
        with pytest.raises(UsageError, match=r"--resolution is 'config', 'native' or a factor"):
            parse_resolution(bad)
    with pytest.raises(UsageError, match='--max-side is the longest image side in pixels'):
        parse_resolution('native', 0)


def test_pipeline_resizes_become_one_resize_to_resolution():
    """mmdet's COCO test pipeline (Resize 1333x800), RTMDet's (Resize and a fixed 640 x 640
    Pad) and a pipeline without a resize (the toy segmentation config)."""
    cfg = Config.fromfile(COCO_CONFIG)
    pipeline = set_test_resolution(cfg, Resolution(0.5, 4000))
    assert [t['type'] for t in pipeline] == ['LoadImageFromFile', 'ResizeToResolution',
                                             'LoadAnnotations', 'PackDetInputs']
    assert pipeline[1] == dict(type='ResizeToResolution', scale=0.5, max_side=4000)
    assert cfg.test_dataloader.dataset.pipeline == pipeline
    rtmdet = Config(dict(test_dataloader=dict(dataset=dict(pipeline=[
        dict(type='LoadImageFromFile'), dict(type='mmdet.Resize', scale=(640, 640)),
        dict(type='Pad', size=(640, 640)), dict(type='PackDetInputs')]))))
    assert [t['type'] for t in set_test_resolution(rtmdet, Resolution(1.0))] == [
        'LoadImageFromFile', 'ResizeToResolution', 'PackDetInputs']
    seg = Config.fromfile(SEG_CONFIG)
    assert [t['type'] for t in set_test_resolution(seg, Resolution(1.0))] == [
        'LoadImageChecked', 'ResizeToResolution', 'LoadAnnotations', 'PackSegInputs']
    unchanged = Config.fromfile(COCO_CONFIG)
    before = unchanged.test_dataloader.dataset.pipeline
    assert set_test_resolution(unchanged, Resolution()) == before


@pytest.mark.parametrize('resolution,shape,box', [
    (Resolution(), (107, 160), [1120 * 160 / 3000, 1280 * 107 / 2000, 1300 * 160 / 3000,
                                1420 * 107 / 2000]),
    (Resolution(1.0), (2000, 3000), [1120., 1280., 1300., 1420.]),
    (Resolution(0.5), (1000, 1500), [560., 640., 650., 710.]),
    (Resolution(1.0, 600), (400, 600), [224., 256., 260., 284.])])
def test_test_pipeline_keeps_or_scales_a_large_image(tmp_path, resolution, shape, box):
    """The toy detector's test pipeline on a 3000 x 2000 image with a box at a known place:
    the config's resize (to 160 px) shrinks it 18.75x; native keeps it (no copy of the
    image), 0.5 halves it, and --max-side 600 caps it; scale_factor maps back."""
    from mmdet.registry import TRANSFORMS
    from mmdet.structures.bbox import HorizontalBoxes
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(DET_CONFIG)
    pipeline = [t for t in set_test_resolution(cfg, resolution)
                if t['type'] != 'LoadAnnotations']
    image = np.zeros((2000, 3000, 3), dtype=np.uint8)
    path = tmp_path / 'large.png'
    Image.fromarray(image).save(path)
    with DefaultScope.overwrite_default_scope('mmdet'):
        transforms = Compose([TRANSFORMS.build(t) for t in pipeline[:-1]])
        results = transforms(dict(img_path=str(path), img_id=0, gt_bboxes=HorizontalBoxes(
            torch.tensor([[1120., 1280., 1300., 1420.]]))))
    assert results['img'].shape[:2] == shape == results['img_shape']
    assert results['ori_shape'] == (2000, 3000)
    np.testing.assert_allclose(results['gt_bboxes'].tensor.numpy()[0], box, rtol=1e-5)
    factor = np.array(results['scale_factor'])
    np.testing.assert_allclose(np.array(box)[:2] / factor, [1120., 1280.], rtol=2e-3)


# ---------------------------------------------------------------------------- streamed paths


def _force_paths(model: torch.nn.Module, banded: bool) -> None:
    """Thresholds that make every streamed path run (``banded``) or none."""
    for m in model.modules():
        if hasattr(m, 'banded_pixels'):
            m.banded_pixels = 100 if banded else 10**12
        if isinstance(m, PyramidLevels):
            m.BAND_TOKENS = 64 if banded else 10**12


@pytest.mark.parametrize('backbone', [
    dict(type=XCiT, arch='nano_12', patch_size=8),
    dict(type=XCiT, arch='nano_12', patch_size=16),
    dict(type=CrossViT, arch='tiny')])
def test_streamed_pyramid_equals_the_plain_one(backbone, randomize):
    kwargs = dict(backbone)
    model = randomize(kwargs.pop('type')(**kwargs)).eval()
    x = torch.randn(1, 3, 203, 333)
    with torch.no_grad():
        trunk = model.forward_trunk(x)
    plain = _run(model, lambda: [t.detach() for t in model.pyramid([t.clone() for t in trunk])],
                 banded=False)
    streamed = _run(model, lambda: model.pyramid(list(trunk)), banded=True)
    deferred = _run(model, lambda: model.pyramid.forward_streamed(list(trunk), True), True)
    if type(model) is XCiT:  # the stride-4 level band by band, as the FPN reads it
        torch.testing.assert_close(deferred[0].rows(5, 37), plain[0][:, :, 5:37], rtol=0,
                                   atol=1e-6)
    for p, s in zip(plain, streamed):
        assert s.shape == p.shape and s.is_contiguous()
        torch.testing.assert_close(s, p, rtol=0, atol=1e-6)


def _run(model, fn, banded: bool):
    """``fn()`` on the streamed paths (``banded``, thresholds low, no autograd) or on the plain
    one (autograd on: no streamed path of the backbone, pyramid, necks, heads or label maps
    runs then)."""
    _force_paths(model, banded)
    with torch.no_grad() if banded else torch.enable_grad():
        return fn()


def _test_step(model, scope, image):
    H, W = image.shape[1:]
    return model.test_step(dict(inputs=[image], data_samples=dummy_data_samples(scope, H, W)))[0]


def test_streamed_detector_equals_the_plain_one(randomize, monkeypatch):
    """The toy Mask R-CNN (XCiT-N12/8, FPN, RPN) on a 333 x 517 image (strides 4 to 64 do not
    divide it): FPN outputs (the pyramid's stride-4 level read band by band), RPN maps and the
    final boxes, scores and masks are equal."""
    from xcit_dense.models.streaming import StreamedPyramid
    monkeypatch.setattr('xcit_dense.models.bands.BAND_ELEMENTS', 2**14)  # bands of 8 rows
    bands = []
    upsampled_rows = StreamedPyramid._upsampled_rows
    monkeypatch.setattr(StreamedPyramid, '_upsampled_rows', staticmethod(
        lambda *args: bands.append(args[3:]) or upsampled_rows(*args)))
    cfg = Config.fromfile(DET_CONFIG)
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    model = randomize(build_analysis_model(cfg))
    assert {type(model.neck).__module__, type(model.rpn_head).__module__} == {
        'xcit_dense.streamed_det'}
    image = torch.randint(0, 256, (3, 333, 517), dtype=torch.uint8)
    inputs = model.data_preprocessor(dict(inputs=[image]), False)['inputs']

    def outputs():
        features = model.extract_feat(inputs)
        return ([f.detach() for f in features],
                [[m.detach() for m in maps] for maps in model.rpn_head(features)],
                _test_step(model, 'mmdet', image).pred_instances)
    outputs = [_run(model, outputs, banded) for banded in (False, True)]
    (f0, r0, p0), (f1, r1, p1) = outputs
    # the stride-4 level (88 rows: the image padded to 352) read by the FPN in bands of 8 rows
    # and a halo row on each side, in extract_feat and in test_step
    expected = [(max(r - 1, 0), min(r + 9, 88)) for r in range(0, 88, 8)]
    assert bands == expected * 2
    # the stride-4 level's deconvolution per band: rounding only, which depends on the
    # number of threads (measured: at most 1.1e-5 on one thread, under 1e-5 on two)
    for a, b in zip(f0, f1):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=2e-5)
    for maps0, maps1 in zip(r0, r1):
        for a, b in zip(maps0, maps1):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert len(p0) == len(p1) == cfg.model.test_cfg.rcnn.max_per_img
    torch.testing.assert_close(p1.bboxes, p0.bboxes, rtol=0, atol=1e-3)
    torch.testing.assert_close(p1.scores, p0.scores, rtol=0, atol=1e-5)
    assert (p1.masks != p0.masks).float().mean() < 1e-4


def test_streamed_segmentor_equals_the_plain_one(randomize, monkeypatch):
    """The toy Semantic FPN (XCiT-N12/8, FPN, FPNHead) on a 333 x 517 image: decoder logits
    equal; the band-wise label map equals mmseg's arg-max (and holds no full-size logits)."""
    monkeypatch.setattr('xcit_dense.models.bands.BAND_ELEMENTS', 2**14)  # bands of 8 rows
    model = randomize(build_analysis_model(Config.fromfile(SEG_CONFIG)))
    assert {type(model).__module__, type(model.neck).__module__,
            type(model.decode_head).__module__} == {'xcit_dense.streamed_seg'}
    image = torch.randint(0, 256, (3, 333, 517), dtype=torch.uint8)
    inputs = model.data_preprocessor(dict(inputs=[image]), False)['inputs']
    outputs = [_run(model, lambda: (model.decode_head(model.extract_feat(inputs)).detach(),
                                    _test_step(model, 'mmseg', image)), banded)
               for banded in (False, True)]
    (l0, s0), (l1, s1) = outputs
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-5)
    assert torch.equal(s1.pred_sem_seg.data, s0.pred_sem_seg.data)
    assert s1.pred_sem_seg.data.shape == (1, 333, 517)
    assert 'seg_logits' in s0 and 'seg_logits' not in s1


@pytest.mark.parametrize('padded,padding,flip,out_size,align_corners', [
    ((48, 64), (0, 3, 0, 2), None, None, False),
    ((48, 64), (0, 3, 0, 2), 'horizontal', (61, 45), False),
    ((52, 68), (0, 0, 0, 0), 'vertical', (30, 100), True),
    ((99, 37), (0, 1, 0, 3), None, (99, 37), False)])
def test_banded_label_map_equals_mmsegs_resize_crop_flip_argmax(padded, padding, flip,
                                                                out_size, align_corners):
    logits = torch.randn(7, 13, 17)
    x = F.interpolate(logits[None], size=padded, mode='bilinear', align_corners=align_corners)
    left, right, top, bottom = padding
    x = x[:, :, top:padded[0] - bottom, left:padded[1] - right]
    if flip:
        x = x.flip(3 if flip == 'horizontal' else 2)
    if out_size:
        x = F.interpolate(x, size=out_size, mode='bilinear', align_corners=align_corners)
    labels = banded_label_map(logits, padded, padding, flip, out_size, align_corners,
                              band_bytes=7 * 100 * 4 * 5)  # bands of 5 rows
    assert torch.equal(labels, x[0].argmax(0, keepdim=True))


def test_streamed_segmentation_memory_stays_under_the_plain_paths(tmp_path):
    """Semantic FPN's inference (XCiT-N12/8, 300 classes) on a 1024 x 1024 image in fresh
    processes (label maps of this size take the band-wise path): the streamed path's peak
    stays under 1.6 GB above the process's start, which the plain path (two 300 x 1024 x 1024
    fp32 logit maps of 1.26 GB each) exceeds."""
    script = tmp_path / 'peak.py'
    script.write_text(f'''
import resource, sys, torch
import xcit_dense
from mmengine.config import Config
from xcit_dense.engine import build_analysis_model, dummy_data_samples
from xcit_dense.engine.stages import resident_bytes
cfg = Config.fromfile({SEG_CONFIG!r})
cfg.model.decode_head.num_classes = 300
model = build_analysis_model(cfg)
model.banded_pixels = 2**18
if sys.argv[1] == 'plain':
    model.banded_pixels = model.decode_head.banded_pixels = model.neck.banded_pixels = 10**12
    model.backbone.pyramid.BAND_TOKENS = 10**12
image = torch.randint(0, 256, (3, 1024, 1024), dtype=torch.uint8)
before = resident_bytes()
with torch.no_grad():
    model.test_step(dict(inputs=[image], data_samples=dummy_data_samples('mmseg', 1024, 1024)))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)
''')
    peaks = {}
    for path in ('plain', 'streamed'):
        done = subprocess.run([sys.executable, str(script), path], capture_output=True,
                              text=True, cwd=ROOT, check=True)
        peaks[path] = int(done.stdout.split()[-1]) / 2**30
    assert peaks["streamed"] < 1.6 < peaks["plain"], peaks


# ---------------------------------------------------------------------------- the tools


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp('high_res_ckpts')
    torch.manual_seed(0)
    return {kind: save_model_checkpoint(config, folder / f'{kind}.pth')
            for kind, config in (('det', DET_CONFIG), ('seg', SEG_CONFIG))}


def _infer(*args, cwd=ROOT):
    return subprocess.run([sys.executable, 'tools/infer.py', *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


def test_a_12000_px_png_loads_through_infer(checkpoints, tmp_path):
    """A 12000 x 12000 PNG (144 MP: over PIL's decompression-bomb limit) is read, predicted
    with its long side capped at 640 px, and written: JSON and label map at the full
    12000 x 12000, the picture reduced to 4096 px."""
    path = tmp_path / 'huge.png'
    image = np.zeros((12000, 12000, 3), dtype=np.uint8)
    image[3000:9000, 3000:9000] = (200, 40, 40)
    Image.fromarray(image).save(path, compress_level=1)
    del image
    done = _infer(SEG_CONFIG, checkpoints['seg'], path, '--max-side', 640, '--out-dir',
                  tmp_path / 'out')
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'huge.png (predicted at 640x640)' in done.stdout
    record = json.loads((tmp_path / 'out' / 'preds' / 'huge.json').read_text())
    assert (record['height'], record['width'], record['predicted_at']) == (12000, 12000,
                                                                           [640, 640])
    assert sum(record['pixels'].values()) == 12000 * 12000
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        assert Image.open(tmp_path / 'out' / 'preds' / 'huge_labels.png').size == (12000, 12000)
        picture = Image.open(tmp_path / 'out' / 'vis' / 'huge.png')
        assert picture.size[0] == 4096
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def test_native_resolution_through_infer_and_its_errors(checkpoints, tmp_path):
    """A 3000 x 2000 photograph-sized image: the config's resize predicts at 160 x 107;
    --resolution native at 3000 x 2000, boxes in the image's coordinates; bad values, 16-bit
    and multi-page files are one-line errors before the model is built."""
    path = tmp_path / 'wide.jpg'
    Image.fromarray(np.full((2000, 3000, 3), 128, dtype=np.uint8)).save(path)
    sizes = {}
    for option in ([], ['--resolution', 'native']):
        out = tmp_path / ('native' if option else 'config')
        done = _infer(DET_CONFIG, checkpoints['det'], path, '--out-dir', out, *option)
        assert done.returncode == 0, done.stderr[-2000:]
        record = json.loads((out / 'preds' / 'wide.json').read_text())
        sizes[bool(option)] = record['predicted_at']
        boxes = np.array([i['bbox'] for i in record['instances']]).reshape(-1, 4)
        assert (boxes[:, [0, 2]] <= 3000).all() and (boxes[:, [1, 3]] <= 2000).all()
        assert (record['height'], record['width']) == (2000, 3000)
    assert sizes == {False: [107, 160], True: [2000, 3000]}
    done = _infer(DET_CONFIG, checkpoints['det'], path, '--out-dir', tmp_path / 'bad',
                  '--resolution', 'full')
    assert done.returncode == 2 and "infer.py: error: --resolution is 'config', 'native' or " \
        "a factor of each image's size" in done.stderr, done.stderr[-1500:]
    assert 'Traceback' not in done.stderr and not (tmp_path / 'bad').exists()
    # files the models cannot take, refused by their headers (in-process: the same UsageError
    # the tool prints as one line)
    Image.fromarray(np.zeros((64, 64), dtype=np.uint16)).save(tmp_path / 'deep.png')
    pages = [Image.new('RGB', (64, 64)) for _ in range(3)]
    pages[0].save(tmp_path / 'pages.tif', save_all=True, append_images=pages[1:])
    for name, message in (('deep.png', 'has 16 bits per sample; the models take 8-bit RGB'),
                          ('pages.tif', 'is a TIFF of 3 pages; give one page per file')):
        with pytest.raises(UsageError, match=message):
            run_inference(DET_CONFIG, checkpoints['det'], str(tmp_path / name),
                          str(tmp_path / 'bad'))
    assert not (tmp_path / 'bad').exists()


def test_test_tool_evaluates_at_a_stated_resolution(checkpoints, toy_cfg, toy_coco_root,
                                                    tmp_path):
    """tools/test.py --resolution 0.5 evaluates the toy validation images at half their size
    (the dumped predictions say so, in the images' own coordinates); --tta with it is a
    one-line error."""
    import pickle
    config = tmp_path / 'toy_det.py'
    toy_cfg('det', toy_coco_root, tmp_path / 'run', 'half').dump(str(config))
    command = [sys.executable, 'tools/test.py', str(config), checkpoints['det'],
               '--work-dir', str(tmp_path / 'run')]
    done = subprocess.run(command + ['--resolution', '0.5', '--out', str(tmp_path / 'p.pkl')],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'coco/bbox_mAP' in done.stdout + done.stderr
    with open(tmp_path / 'p.pkl', 'rb') as f:
        samples = pickle.load(f)
    assert len(samples) == 4
    assert {(tuple(s['img_shape']), tuple(s['ori_shape'])) for s in samples} == {
        ((80, 80), (160, 160))}
    done = subprocess.run(command + ['--resolution', 'native', '--tta'], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 2 and 'test.py: error: --tta and --resolution/--max-side ' \
        'cannot be combined' in done.stderr, done.stderr[-1500:]
