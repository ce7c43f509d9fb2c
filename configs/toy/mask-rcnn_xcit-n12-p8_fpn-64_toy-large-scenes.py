# The detection demo's model (configs/toy/mask-rcnn_xcit-n12-p8_fpn-64_toy-shapes.py, trained by
# `make demo`) tested on the large scenes of `tools/make_toy_data.py large-scenes`: 3072 px,
# hundreds of shapes at the demo's scale. The test resize is mmdet's COCO one (1333x800), the
# "downscaled" way; `tools/test.py ... --resolution native` runs each scene whole at its own
# size, `--slice 512` in slices (tools/analysis_tools/benchmark_slicing.py runs all three).
_base_ = ['./mask-rcnn_xcit-n12-p8_fpn-64_toy-shapes.py']

data_root = 'data/large_scenes/'
# a scene holds ~400 objects: mmdet's own proposal limits, not the demo's 100, and 500
# detections per image, not 20 (each is a bitmap of the whole scene, 9.4 MB at 3072 px)
model = dict(test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=1000),
                           rcnn=dict(max_per_img=500)))
test_pipeline = [
    dict(type='LoadImageChecked'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    # polygons, not a 3072 px bitmap per object (CocoMetric reads the annotation file)
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=False),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
test_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='annotations/instances.json',
                 data_prefix=dict(img='images/'), pipeline=test_pipeline))
test_evaluator = dict(ann_file=data_root + 'annotations/instances.json')
