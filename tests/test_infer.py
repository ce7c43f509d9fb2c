"""tools/infer.py and xcit_dense.engine.inference: mmdet's DetInferencer and mmseg's
MMSegInferencer on a folder, an image and a URL, pictures on an enlarged canvas, JSON equal to
the model's predictions, and each mistake reported in one message naming the path."""
import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

import xcit_dense  # noqa: F401
from xcit_dense.checkpoint import CheckpointMismatchError
from xcit_dense.engine import UsageError
from xcit_dense.testing.checkpoints import save_model_checkpoint
from xcit_dense.engine.inference import (CANVAS, build_inferencer, load_inference_config,
                                         place_labels, run_inference)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DET_CONFIG = os.path.join(ROOT, 'configs/toy/mask-rcnn_xcit-n12-p8_fpn-64_toy-shapes.py')
SEG_CONFIG = os.path.join(ROOT, 'configs/toy/fpn_xcit-n12-p8_toy-ade-128x128.py')


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp('infer_ckpts')
    torch.manual_seed(0)
    return dict(det=save_model_checkpoint(DET_CONFIG, folder / 'det.pth'),
                seg=save_model_checkpoint(SEG_CONFIG, folder / 'seg.pth'))


@pytest.fixture
def served(toy_ade_root):
    """The toy ADE validation images over http from 127.0.0.1, and the paths requested."""
    folder = os.path.join(toy_ade_root, 'images', 'validation')
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ('127.0.0.1', 0), functools.partial(Handler, directory=folder))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f'http://127.0.0.1:{server.server_port}', requests
    server.shutdown()


def test_folder_gives_a_picture_and_the_predictions_per_image(checkpoints, toy_coco_root,
                                                              tmp_path):
    folder = tmp_path / 'images'  # two of the toy validation images
    folder.mkdir()
    for name in ('000001.png', '000002.png'):
        os.symlink(os.path.join(toy_coco_root, 'val', name), folder / name)
    folder = str(folder)
    outputs = run_inference(DET_CONFIG, checkpoints['det'], folder, str(tmp_path / 'out'),
                            batch_size=2, score_thr=0.0)
    names = sorted(os.listdir(folder))
    assert sorted(os.listdir(tmp_path / 'out' / 'vis')) == names  # toy images are .png
    assert sorted(os.listdir(tmp_path / 'out' / 'preds')) == [
        n.replace('.png', '.json') for n in names]
    # the JSON holds what the inferencer predicts for the image file, one image per batch
    inferencer = build_inferencer(Config.fromfile(DET_CONFIG), checkpoints['det'])
    for name, out in zip(names, outputs):
        with open(out['json']) as f:
            record = json.load(f)
        assert record['image'] == os.path.join(folder, name)
        assert (record['height'], record['width']) == (160, 160)
        sample = inferencer(os.path.join(folder, name), return_datasamples=True)[
            'predictions'][0].pred_instances
        order = torch.argsort(sample.scores, descending=True, stable=True)
        instances = record['instances']
        assert instances, 'the untrained model predicts something at the default score_thr'
        assert [i['label'] for i in instances] == sample.labels[order].tolist()
        assert [i['class'] for i in instances] == [
            ('circle', 'square', 'triangle')[i] for i in sample.labels[order]]
        np.testing.assert_allclose([i['score'] for i in instances], sample.scores[order],
                                   atol=1e-5)
        np.testing.assert_allclose([i['bbox'] for i in instances], sample.bboxes[order],
                                   atol=1e-3)
        assert [i['mask_area'] for i in instances] == sample.masks[order].sum((1, 2)).tolist()
        assert set(instances[0]['mask']) == {'size', 'counts'}
        # the 160-pixel image is drawn on a 640-pixel canvas
        assert Image.open(out['picture']).size == (CANVAS, CANVAS)


def test_url_of_one_image_segmentation_with_legend(checkpoints, served, tmp_path):
    _, url, requests = served
    out_file = str(tmp_path / 'seg.png')
    [out] = run_inference(SEG_CONFIG, checkpoints['seg'], f'{url}/toy_validation_000002.jpg',
                          out_file=out_file)
    assert requests == ['/toy_validation_000002.jpg']  # checked and predicted: one download
    with open(tmp_path / 'seg.json') as f:
        record = json.load(f)
    assert record == {k: v for k, v in out.items() if k not in ('picture', 'json')}
    assert record['image'] == f'{url}/toy_validation_000002.jpg'
    labels = np.array(Image.open(record['label_map']))
    assert labels.shape == (128, 128)
    classes = ('background', 'circle', 'square', 'triangle')
    assert record['pixels'] == {classes[c]: int(n) for c, n in
                                enumerate(np.bincount(labels.ravel())) if n}
    # 640-pixel canvas, a legend strip below it
    width, height = Image.open(out_file).size
    assert width == CANVAS and CANVAS < height < CANVAS + 120


def test_labels_stay_inside_the_picture_and_apart():
    corners = place_labels([(630, 0), (630, 0), (-5, 300)], [(80, 20)] * 3, 640, 640)
    assert corners[0] == (560, 0)  # no room above the box: under its top edge, moved left
    assert corners[1] == (560, 20)  # below the first label, not on it
    assert corners[2] == (0, 280)


@pytest.mark.parametrize('text', ['background 91%', 'triangle 0.98', 'WWW mm %%'])
def test_text_size_holds_the_drawn_text(text):
    """Layout uses the width the visualizer will draw: every inked pixel of a text drawn at a
    corner lies inside its measured box (a per-character estimate let legend names run into
    the next swatch)."""
    from mmengine.visualization import Visualizer
    from xcit_dense.engine.inference import _Painter
    painter = _Painter(Visualizer(), np.full((120, 640, 3), 255, dtype=np.uint8))
    width, height = painter.text_size(text)
    painter.texts([text], [(40, 30)], [None])
    ink = np.argwhere(painter.visualizer.get_image().min(-1) < 128)
    (y0, x0), (y1, x1) = ink.min(0), ink.max(0)
    assert 40 <= x0 and x1 < 40 + width and 30 <= y0 and y1 < 30 + height
    assert x1 - x0 + 1 > width - 2 * painter.pad - 6  # measured, not a loose bound


def test_bad_inputs_are_named_before_the_model_is_built(checkpoints, toy_coco_root, tmp_path):
    def error(*args, **kwargs):
        with pytest.raises(UsageError) as info:
            run_inference(*args, **kwargs)
        return str(info.value)

    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'\x89PNG\r\n\x1a\n not really')
    det = checkpoints['det']
    assert error(DET_CONFIG, det, str(broken)) == \
        f"Image '{broken}' cannot be decoded (corrupt or not an image)"
    folder = tmp_path / 'with_broken'
    folder.mkdir()
    os.symlink(os.path.join(toy_coco_root, 'val', '000001.png'), folder / 'a.png')
    os.symlink(broken, folder / 'b.png')
    assert error(DET_CONFIG, det, str(folder)) == \
        f"Image '{folder}/b.png' cannot be decoded (corrupt or not an image)"
    assert error(DET_CONFIG, det, str(tmp_path / 'nope.jpg')) == \
        f"Image '{tmp_path}/nope.jpg' does not exist"
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'notes.txt').write_text('no images here')
    assert error(DET_CONFIG, det, str(empty)) == (
        f'folder {empty} holds no images (.jpg, .jpeg, .png, .bmp, .ppm, .pgm, .tif, .tiff, '
        '.webp)')
    image = os.path.join(toy_coco_root, 'val', '000001.png')
    assert error(DET_CONFIG, str(tmp_path), image) == \
        f'checkpoint {tmp_path} is a folder, not a checkpoint file'
    assert error(str(tmp_path), det, image) == f'config {tmp_path} is a folder, not a config file'
    assert error(DET_CONFIG, det, image, out_file=str(tmp_path)) == \
        f'--out-file {tmp_path} is a folder, not a picture file; use --out-dir for a folder'
    assert error(DET_CONFIG, det, str(folder), out_file=str(tmp_path / 'x.png')) == \
        f'--out-file takes one image, but {folder} holds 2; use --out-dir'
    assert error(str(tmp_path / 'no_config.py'), det, image) == \
        f'config {tmp_path}/no_config.py does not exist'
    wrong = tmp_path / 'classifier.py'
    wrong.write_text("default_scope = 'mmpretrain'\nmodel = dict(type='ImageClassifier')\n")
    assert error(str(wrong), det, image) == (
        f"config {wrong} is not a detection or segmentation config: default_scope must be "
        "'mmdet' or 'mmseg', got 'mmpretrain'")
    with pytest.raises(UsageError, match=re.escape(f'config {broken} cannot be read: ')):
        load_inference_config(str(broken))


def test_segmentor_checkpoint_for_a_detector_is_an_error(checkpoints, toy_coco_root, tmp_path):
    image = os.path.join(toy_coco_root, 'val', '000001.png')
    proc = subprocess.run([sys.executable, 'tools/infer.py', DET_CONFIG, checkpoints['seg'],
                           image, '--out-dir', str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert (f"infer.py: error: CheckpointMismatchError: Checkpoint {checkpoints['seg']} does "
            'not fit the MaskRCNN of the config, so part of the model would predict from its '
            'random initialisation. '
            'The checkpoint is an OpenMMLab checkpoint; top-level modules: backbone, '
            'decode_head, neck; 4 classes.') in proc.stderr
    assert 'missing keys in source state_dict: rpn_head.' in proc.stderr
    assert 'unexpected key in source state_dict: decode_head.' in proc.stderr
    assert not os.path.exists(tmp_path / 'vis')  # nothing drawn
    with pytest.raises(CheckpointMismatchError, match='does not fit the FPN|does not fit the '
                       'EncoderDecoder'):
        run_inference(SEG_CONFIG, checkpoints['det'], image, str(tmp_path))
