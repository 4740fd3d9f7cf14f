# Tiny MonoASD for the synthetic mini-KITTI (CPU, minutes).
# The schedule, optimizer, pipeline and seed are the control's (same
# training without distillation; tools/run_main.py runs both).
_base_ = ['./did-m3d_dla34_tiny_mini-kitti-car_control.py']
load_from = None  # the student starts from student_ckpt

model = dict(
    _delete_=True,
    type='AlignSelectDistiller',
    student={{_base_.model}},
    teacher_ckpt='work_dirs/mini_kitti/teacher/latest_teacher.pth',
    student_ckpt=None,  # the baseline checkpoint (tools/run_main.py)
    teacher_norm_eval=True,
    feature_channels=(64, 128, 256, 512),
    select=dict(type='ConvMamba', d_state=16, d_conv=4, expand=2),
    loss_align_select=dict(type='AlignSelectLoss', loss_weight=10.0),
    loss_affinity=dict(type='AffinityLoss', loss_weight=1.0),
    loss_head=dict(type='DIDHeadDistillLoss'))
# The control's hooks plus a ramp of the distillation terms over the first
# epoch (96 of 192 iterations): the align/select/fusion modules start from
# random weights, and at full weight their losses (about 130 against 10 for
# detection at the first iteration) pull the baseline's features apart
# before they are useful (docs/profile_search.md). Off in the KITTI config.
custom_hooks = [
    dict(type='ModalityMetaHook'),
    dict(type='RNGStateHook'),
    dict(type='DistillWarmupHook', warmup_iters=96),
]
