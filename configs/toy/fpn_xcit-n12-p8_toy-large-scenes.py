# The segmentation demo's model (configs/toy/fpn_xcit-n12-p8_toy-ade-128x128.py, trained by
# `make demo-seg`) tested on the large scenes of `tools/make_toy_data.py large-scenes` (their
# ADE-style label maps). The test resize is mmseg's ADE20k one (2048x512), the "downscaled"
# way; `tools/test.py ... --resolution native` runs each scene whole at its own size,
# `--slice 512` by mmseg's slide inference (tools/analysis_tools/benchmark_slicing.py).
_base_ = ['./fpn_xcit-n12-p8_toy-ade-128x128.py']

data_root = 'data/large_scenes'
test_pipeline = [
    dict(type='LoadImageChecked'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, img_suffix='.png', pipeline=test_pipeline,
                 data_prefix=dict(img_path='images', seg_map_path='label_maps')))
