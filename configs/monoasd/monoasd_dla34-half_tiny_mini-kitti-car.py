# MonoASD of the half-width profile: the tiny MonoASD distiller on the
# half-width student and teacher, with the half-width control's schedule
# and data (tests/test_protocol.py checks that they agree but the model).
_base_ = [
    './monoasd_dla34_tiny_mini-kitti-car.py',
    '../_base_/models/did-m3d_dla34-half.py'
]
model = dict(
    student={{_base_.half_width_model}},
    teacher_ckpt='work_dirs/mini_kitti_half/teacher/latest_teacher.pth',
    feature_channels={{_base_.half_width_model.neck.in_channels}})
train_dataloader = dict(dataset=dict(
    _delete_=True, type='RepeatDataset', times={{_base_.repeat_times}},
    dataset={{_base_.train_dataloader.dataset}}))
# the distillation ramp over the first epoch, as in the tiny profile: 96
# iterations x repeat_times (a base variable cannot take part in arithmetic
# in a config; tests/test_protocol.py checks the product)
custom_hooks = [
    dict(type='ModalityMetaHook'),
    dict(type='RNGStateHook'),
    dict(type='DistillWarmupHook', warmup_iters=288),
]
