# The main job's synthetic mini-KITTI (tools/create_synthetic_kitti.py) at
# the tiny 96x320 input: DID-M3D's KITTI pipelines (kitti-mono3d-did.py)
# at another input size, written once for every tiny config.
_base_ = ['./kitti-mono3d-did.py']
data_root = 'data/mini_kitti/'
input_size = (320, 96)  # (width, height) of the network input

train_pipeline = [
    dict(type='LoadImageFromFileMono3D'),
    dict(
        type='LoadAnnotations3D',
        with_bbox=True,
        with_label=True,
        with_attr_label=False,
        with_bbox_3d=True,
        with_label_3d=True,
        with_bbox_depth=True),
    dict(type='LoadDenseDepth', depth_dir='depth_dense'),
    dict(type='KittiObjectFilter', min_depth=2.0),
    dict(type='MonoAffineAug', out_size=input_size),
    dict(type='MonoColorJitter'),
    dict(
        type='PackMonoDepthInputs',
        keys=[
            'img', 'depth_map', 'gt_bboxes', 'gt_bboxes_labels',
            'gt_bboxes_3d', 'gt_labels_3d', 'centers_2d', 'depths'
        ]),
]
test_pipeline = [
    dict(type='LoadImageFromFileMono3D'),
    dict(type='MonoAffineAug', out_size=input_size, test_mode=True),
    dict(type='PackMonoDepthInputs', keys=['img']),
]
teacher_test_pipeline = [
    dict(type='LoadImageFromFileMono3D'),
    dict(type='LoadDenseDepth', depth_dir='depth_dense'),
    dict(type='MonoAffineAug', out_size=input_size, test_mode=True),
    dict(type='PackMonoDepthInputs', keys=['img', 'depth_map']),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'kitti_infos_val.pkl')
test_evaluator = val_evaluator
