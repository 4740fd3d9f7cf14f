# DID-M3D (design D2): mmdet3d's DLA-34, DLA-Up neck, DID-M3D head.
model = dict(
    type='StudentDetector',
    data_preprocessor=dict(
        type='MonoDepthDataPreprocessor',
        mean=[123.675, 116.28, 103.53],  # ImageNet RGB mean x 255
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32,
        depth_divisor=20480.0),  # reference teacher input (quirk Q1)
    backbone=dict(
        type='DLANet',
        depth=34,
        in_channels=3,
        norm_cfg=dict(type='BN'),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='http://dl.yf.io/dla/models/imagenet/dla34-ba72cf86.pth'
        )),
    neck=dict(type='DLAUp', in_channels=(64, 128, 256, 512)),
    bbox_head=dict(
        type='DIDM3DHead',
        in_channels=64,
        class_names=('Car', ),
        head_conv=256,
        topk=50,
        score_thr=0.2,
        htl=dict(type='HierarchicalTaskLearning', stat_epochs=5,
                 max_epoch=140)))
