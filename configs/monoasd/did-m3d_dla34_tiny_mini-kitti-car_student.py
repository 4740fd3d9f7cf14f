# Tiny RGB student for the synthetic mini-KITTI: trains in minutes on a CPU.
_base_ = ['./did-m3d_dla34_1xb16-150e_kitti-mono3d-car_student.py']
data_root = 'data/mini_kitti/'
input_size = (320, 96)
max_epochs = 24  # 96 frames / batch 4 = 24 iterations per epoch
warmup_epochs = 2

model = dict(
    backbone=dict(init_cfg=None),  # no download: random init
    bbox_head=dict(
        head_conv=64,
        # short-schedule options (README, "Where we differ"): default init
        # of the 2D regression convs, visual depth starting at a scene-
        # scale prior, no depth-loss gradient through scale_depth (Q19),
        # the ROI branch's gradient into the shared features x0.01 (the
        # depth term's is ~100x the heatmap's and stalls the 2D heads)
        reg_2d_init='fast',
        depth_prior=20.0,
        detach_scale_depth=True,
        roi_grad_scale=0.01,
        htl=dict(type='HierarchicalTaskLearning', stat_epochs=3,
                 max_epoch=18)))

_train_pipeline = [
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
_test_pipeline = [
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
    dataset=dict(data_root=data_root, pipeline=_train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=_test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'kitti_infos_val.pkl')
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='CosineWarmupLR', warmup_steps=warmup_epochs, start_lr=1e-5,
         begin=0, end=warmup_epochs + 1, by_epoch=True),
    dict(type='MultiStepLR', milestones=[20], gamma=0.1, begin=0,
         end=max_epochs, by_epoch=True),
]
train_cfg = dict(max_epochs=max_epochs, val_begin=1, val_interval=12)
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=6, max_keep_ckpts=1))
randomness = dict(seed=0)
