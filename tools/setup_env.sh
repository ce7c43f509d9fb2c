#!/usr/bin/env bash
# Creates .venv with the whole OpenMMLab CPU stack and xcit_dense in editable mode.
#
# mmcv 2.1.0 ships no wheel for torch 2.14, so it is built once from its sdist
# (C++20, which torch 2.14's headers require) and the wheel is cached outside the
# checkout, keyed by Python and torch versions; later set-ups reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.14.1}
TORCHVISION_VERSION=${TORCHVISION_VERSION:-0.29.1}
MMCV_VERSION=2.1.0
CACHE_DIR=${XCIT_DENSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xcit_dense}
PY_TAG=$("$PYTHON" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')
WHEEL_DIR="$CACHE_DIR/wheels/mmcv-$MMCV_VERSION-$PY_TAG-torch$TORCH_VERSION"

# Re-run (quickly: satisfied requirements are skipped) when the packaging files change.
STAMP=$(cat setup.cfg pyproject.toml tools/setup_env.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.setup-complete" 2>/dev/null)" = "$STAMP" ]; then
  exit 0
fi

"$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install --quiet --upgrade "pip<26.2"
$PIP install --quiet "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
# mmcv's setup.py and mmengine's `mmdet::` config resolution import pkg_resources.
$PIP install --quiet "setuptools>=77.0.3,<82" wheel ninja

if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
  echo "[setup] building mmcv $MMCV_VERSION from source (20-30 min on 2 cores); cache: $WHEEL_DIR"
  build=$(mktemp -d)
  $PIP download --quiet --no-deps --no-binary mmcv --no-build-isolation "mmcv==$MMCV_VERSION" -d "$build"
  tar -xzf "$build"/mmcv-$MMCV_VERSION.tar.gz -C "$build"
  sed -i 's/-std=c++17/-std=c++20/g' "$build/mmcv-$MMCV_VERSION/setup.py"
  mkdir -p "$WHEEL_DIR"
  (cd "$build/mmcv-$MMCV_VERSION" && MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    "$OLDPWD/$VENV/bin/python" -m pip wheel --no-deps --no-build-isolation . -w "$build/dist")
  mv "$build"/dist/mmcv-*.whl "$WHEEL_DIR"/
  rm -rf "$build"
fi
$PIP install --quiet --no-deps "$WHEEL_DIR"/mmcv-*.whl
# "deploy": onnx, onnxscript and onnxruntime for tools/deployment/pytorch2onnx.py
$PIP install --quiet -e ".[dev,deploy]" --no-build-isolation
# panopticapi, imported by mmdet's panoptic annotation loading, PQ evaluation and panoptic
# inference, is not on PyPI under that name: panopticapi-lite 0.2.0 ships cocodataset/
# panopticapi's code (see docs/get_started.md). --no-deps: it pins numpy<2 (pip would downgrade numpy
# to 1.26) and asks for scikit-image and matplotlib, none of which its code imports.
$PIP install --quiet --no-deps "panopticapi-lite==0.2.0"
echo "$STAMP" > "$VENV/.setup-complete"
echo "[setup] done: $($VENV/bin/python -c 'import torch, mmcv, mmdet, mmseg; print("torch", torch.__version__, "mmcv", mmcv.__version__, "mmdet", mmdet.__version__, "mmseg", mmseg.__version__)')"
