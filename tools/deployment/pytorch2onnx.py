"""Export a config's backbone (XCiT or CrossViT) to ONNX and check it with onnxruntime.

    python tools/deployment/pytorch2onnx.py CONFIG [--checkpoint CKPT] --shape H W \
        --out FILE.onnx [--dynamic] [--bench RUNS]

The graph takes a 1x3xHxW image and returns the pyramid maps, named by stride (p4, p8, p16,
p32). The file is then run with onnxruntime on a random image at the export size (and, with
--dynamic, at a second size) and the max abs difference to PyTorch is printed; the tool fails
above --atol (1e-4). Needs the deploy extra: pip install -e ".[deploy]" (make setup does).
"""
import os

import xcit_dense  # noqa: F401  (registers the backbones and checkpoint readers)
from xcit_dense.deploy import main
from xcit_dense.engine import short_errors

if __name__ == '__main__':
    with short_errors(os.path.basename(__file__)):
        main()
