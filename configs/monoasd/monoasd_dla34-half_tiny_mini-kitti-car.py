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
    feature_channels={{_base_.half_width_model.neck.in_channels}},
    # a quarter of the reference's weights: at full weight the distillation
    # terms are twice the detection loss once ramped up (seed 0), and
    # over 3 seeds MonoASD - control was -3.9 / -4.1 AP2D and -0.24 / -0.29
    # AP3D@0.5 on average (val / a second val set); at a quarter +0.7 /
    # -0.6 AP2D and +1.30 / +0.96 AP3D@0.5 (docs/profile_search.md,
    # "Eleventh round"; run_main.py --distill-options)
    loss_align_select=dict(loss_weight=2.5),
    loss_affinity=dict(loss_weight=0.25),
    loss_head=dict(loss_weight=0.25))
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
