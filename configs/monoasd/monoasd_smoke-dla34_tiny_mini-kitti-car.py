# Generic use of the AlignSelectDistiller: feature distillation between two
# detectors built only from mmdet3d components (SMOKE-style: DLANet, DLANeck
# without DCN, SMOKEMono3DHead). The teacher reads the depth input through
# `teacher_input_key`; head distillation is DID-M3D specific and is off.
_base_ = ['./did-m3d_dla34_tiny_mini-kitti-car_student.py']

_smoke = dict(
    type='SMOKEMono3D',
    backbone=dict(
        type='DLANet', depth=34, in_channels=3,
        norm_cfg=dict(type='GN', num_groups=32), init_cfg=None),
    neck=dict(
        type='DLANeck',
        in_channels=[16, 32, 64, 128, 256, 512],
        start_level=2,
        end_level=5,
        use_dcn=False,
        norm_cfg=dict(type='GN', num_groups=32)),
    bbox_head=dict(
        type='SMOKEMono3DHead',
        num_classes=1,
        in_channels=64,
        dim_channel=[3, 4, 5],
        ori_channel=[6, 7],
        stacked_convs=0,
        feat_channels=64,
        use_direction_classifier=False,
        diff_rad_by_sin=False,
        pred_attrs=False,
        pred_velo=False,
        dir_offset=0,
        strides=None,
        group_reg_dims=(8, ),
        cls_branch=(64, ),
        reg_branch=((64, ), ),
        num_attrs=0,
        bbox_code_size=7,
        dir_branch=(),
        attr_branch=(),
        bbox_coder=dict(
            type='SMOKECoder',
            base_depth=(28.01, 16.32),
            base_dims=((3.88, 1.63, 1.53), ),  # Car (l, h, w)
            code_size=7),
        loss_cls=dict(type='mmdet.GaussianFocalLoss', loss_weight=1.0),
        loss_bbox=dict(
            type='mmdet.L1Loss', reduction='sum', loss_weight=1 / 300),
        loss_dir=dict(
            type='mmdet.CrossEntropyLoss', use_sigmoid=False,
            loss_weight=1.0),
        loss_attr=None,
        conv_bias=True,
        dcn_on_last_conv=False),
    train_cfg=None,
    test_cfg=dict(topK=100, local_maximum_kernel=3, max_per_img=100))

model = dict(
    _delete_=True,
    type='AlignSelectDistiller',
    data_preprocessor={{_base_.model.data_preprocessor}},
    student=_smoke,
    teacher=_smoke,
    teacher_input_key='depth_imgs',
    teacher_ckpt=None,
    feature_channels=(64, ),
    loss_align_select=dict(
        type='AlignSelectLoss', level_weights=(1, ), loss_weight=10.0),
    loss_affinity=dict(type='AffinityLoss', loss_weight=1.0),
    loss_head=None)
# no HTL in SMOKE
custom_hooks = [dict(type='ModalityMetaHook'), dict(type='RNGStateHook')]

# SMOKE's coder maps feature-frame points back with trans_mat
_affine = dict(type='MonoAffineAug', out_size={{_base_.input_size}},
               trans_mat_down_ratio=4)
# mmdet3d's SMOKE head cannot build targets for a batch without objects
train_dataloader = dict(dataset=dict(filter_empty_gt=True, pipeline=[
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
    _affine,
    dict(
        type='PackMonoDepthInputs',
        keys=[
            'img', 'depth_map', 'gt_bboxes', 'gt_bboxes_labels',
            'gt_bboxes_3d', 'gt_labels_3d', 'centers_2d', 'depths'
        ]),
]))
_test = [
    dict(type='LoadImageFromFileMono3D'),
    dict(type='MonoAffineAug', out_size={{_base_.input_size}},
         test_mode=True, trans_mat_down_ratio=4),
    dict(type='PackMonoDepthInputs', keys=['img']),
]
val_dataloader = dict(dataset=dict(pipeline=_test))
test_dataloader = val_dataloader
