# KITTI monocular 3D detection with DID-M3D's pipeline (design D1).
dataset_type = 'MonoKittiDataset'
data_root = 'data/kitti/'
class_names = ['Car']
input_modality = dict(use_lidar=False, use_camera=True)
metainfo = dict(classes=class_names)
backend_args = None
input_size = (1280, 384)  # (width, height) of the network input

train_pipeline = [
    dict(type='LoadImageFromFileMono3D', backend_args=backend_args),
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
# The RGB student needs no depth map at test time; the teacher config adds
# LoadDenseDepth (see teacher_test_pipeline).
test_pipeline = [
    dict(type='LoadImageFromFileMono3D', backend_args=backend_args),
    dict(type='MonoAffineAug', out_size=input_size, test_mode=True),
    dict(type='PackMonoDepthInputs', keys=['img']),
]
teacher_test_pipeline = [
    dict(type='LoadImageFromFileMono3D', backend_args=backend_args),
    dict(type='LoadDenseDepth', depth_dir='depth_dense'),
    dict(type='MonoAffineAug', out_size=input_size, test_mode=True),
    dict(type='PackMonoDepthInputs', keys=['img', 'depth_map']),
]

train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='kitti_infos_train.pkl',
        data_prefix=dict(img='training/image_2'),
        pipeline=train_pipeline,
        modality=input_modality,
        load_type='fov_image_based',
        test_mode=False,
        # frames without objects train the heatmap's background, as in the
        # reference (mmdet3d would otherwise redraw another frame for them)
        filter_empty_gt=False,
        metainfo=metainfo,
        box_type_3d='Camera',
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,  # corrected quirk Q4: evaluate every val image
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img='training/image_2'),
        ann_file='kitti_infos_val.pkl',
        pipeline=test_pipeline,
        modality=input_modality,
        load_type='fov_image_based',
        metainfo=metainfo,
        test_mode=True,
        box_type_3d='Camera',
        backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='MonoKittiMetric',
    ann_file=data_root + 'kitti_infos_val.pkl',
    metric='bbox',
    # median location/size/yaw errors of the boxes nearest to the moderate
    # objects, next to the APs (README, "Training and testing")
    box_errors=True,
    backend_args=backend_args)
test_evaluator = val_evaluator
