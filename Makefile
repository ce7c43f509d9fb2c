# Every target sets up .venv first (tools/setup_env.sh; the mmcv wheel is cached outside
# the checkout, in ~/.cache/xcit_dense, so only the first set-up on a machine builds it).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test demo demo-seg demo-crossvit demo-seg-crossvit benchmark-slicing head-matrix \
	lint clean

DEMO_DET_CONFIG := configs/toy/mask-rcnn_xcit-n12-p8_fpn-64_toy-shapes.py
DEMO_DET_DIR := work_dirs/demo_det
DEMO_SEG_CONFIG := configs/toy/fpn_xcit-n12-p8_toy-ade-128x128.py
DEMO_SEG_DIR := work_dirs/demo_seg

setup:
	@VENV=$(VENV) bash tools/setup_env.sh

# Two pytest-xdist workers, a test file each at a time (module fixtures are built once); each
# computes on one thread (tests/conftest.py). TEST_WORKERS=0 runs the suite in this process.
TEST_WORKERS ?= 2

test: setup
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# Generate the toy shapes, train a small XCiT Mask R-CNN on CPU, evaluate bbox/segm mAP with
# CocoMetric and draw the predictions into $(DEMO_DET_DIR)/*/vis/.
demo: setup
	$(PY) tools/make_toy_data.py coco data/toy_coco
	$(PY) tools/train.py $(DEMO_DET_CONFIG) --work-dir $(DEMO_DET_DIR)
	$(PY) tools/test.py $(DEMO_DET_CONFIG) $$(cat $(DEMO_DET_DIR)/last_checkpoint) \
		--work-dir $(DEMO_DET_DIR) --show-dir vis

# Generate the toy ADE20k-layout data, train a small XCiT Semantic FPN on CPU, evaluate mIoU
# with IoUMetric and draw the predictions into $(DEMO_SEG_DIR)/vis/vis_data/vis_image/.
demo-seg: setup
	$(PY) tools/make_toy_data.py ade data/toy_ade
	$(PY) tools/train.py $(DEMO_SEG_CONFIG) --work-dir $(DEMO_SEG_DIR)
	$(PY) tools/test.py $(DEMO_SEG_CONFIG) $$(cat $(DEMO_SEG_DIR)/last_checkpoint) \
		--work-dir $(DEMO_SEG_DIR) --show-dir vis

# The same two demos with CrossViT-Ti in place of XCiT-N12/8 (same data, heads and schedule).
demo-crossvit:
	$(MAKE) demo DEMO_DET_CONFIG=configs/toy/mask-rcnn_crossvit-tiny_fpn-64_toy-shapes.py \
		DEMO_DET_DIR=work_dirs/demo_det_crossvit
demo-seg-crossvit:
	$(MAKE) demo-seg DEMO_SEG_CONFIG=configs/toy/fpn_crossvit-tiny_toy-ade-128x128.py \
		DEMO_SEG_DIR=work_dirs/demo_seg_crossvit

# Whole image or slices: the demo detector and segmentor (trained first if missing) on
# generated 3072 px scenes, whole, sliced at 512 and 1024 px and downscaled; table and figure
# in tools/analysis_tools/results/slicing_toy_cpu.{md,csv,png}.
benchmark-slicing: setup
	@test -f $(DEMO_DET_DIR)/last_checkpoint || $(MAKE) demo
	@test -f $(DEMO_SEG_DIR)/last_checkpoint || $(MAKE) demo-seg
	$(PY) tools/make_toy_data.py large-scenes data/large_scenes
	$(PY) tools/analysis_tools/benchmark_slicing.py \
		--det-checkpoint $$(cat $(DEMO_DET_DIR)/last_checkpoint) \
		--seg-checkpoint $$(cat $(DEMO_SEG_DIR)/last_checkpoint)

# Every shipped config, and mmdet/mmseg heads we do not ship, through tools/train.py (two
# iterations) and tools/test.py on the toy data; the table goes to docs/head_matrix.md.
head-matrix: setup
	$(PY) tools/make_toy_data.py coco data/toy_coco
	$(PY) tools/make_toy_data.py coco-panoptic data/toy_coco_panoptic
	$(PY) tools/make_toy_data.py ade data/toy_ade
	$(PY) tools/analysis_tools/head_matrix.py --out-dir work_dirs/head_matrix \
		--doc docs/head_matrix.md

lint: setup
	$(PY) -m flake8 xcit_dense tools tests

clean:
	rm -rf $(VENV) work_dirs data .pytest_cache
