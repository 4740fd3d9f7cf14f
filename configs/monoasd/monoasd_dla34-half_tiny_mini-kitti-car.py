# MonoASD of the half-width profile: the tiny MonoASD distiller on the
# half-width student and teacher, with the half-width control's schedule
# and data (tests/test_protocol.py checks that they agree but the model).
_base_ = ['./monoasd_dla34_tiny_mini-kitti-car.py']
model = dict(
    student=dict(
        backbone=dict(type='WidthDLANet', widen_factor=0.5),
        neck=dict(in_channels=(32, 64, 128, 256)),
        bbox_head=dict(in_channels=32)),
    teacher_ckpt='work_dirs/mini_kitti_half/teacher/latest_teacher.pth',
    feature_channels=(32, 64, 128, 256))
train_dataloader = dict(dataset=dict(
    _delete_=True, type='RepeatDataset', times=3,
    dataset={{_base_.train_dataloader.dataset}}))
# the distillation ramp over the first epoch, as in the tiny profile
# (288 iterations here)
custom_hooks = [
    dict(type='ModalityMetaHook'),
    dict(type='RNGStateHook'),
    dict(type='DistillWarmupHook', warmup_iters=288),
]
