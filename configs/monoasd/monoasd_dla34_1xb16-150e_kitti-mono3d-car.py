# MonoASD on KITTI, Car (design D5.7): the RGB DID-M3D student distilled from
# the depth teacher with align/select/fusion, affinity and head losses.
# The schedule, optimizer, pipeline and seed are the control's (same
# training without distillation; tools/run_main.py runs both).
_base_ = ['./did-m3d_dla34_1xb16-150e_kitti-mono3d-car_control.py']
load_from = None  # the student starts from student_ckpt

model = dict(
    _delete_=True,
    type='AlignSelectDistiller',
    student={{_base_.model}},
    # teacher: same architecture reading the depth input (TeacherDetector)
    teacher_ckpt='work_dirs/did-m3d_dla34_1xb16-150e_kitti-mono3d-car_teacher'
    '/best.pth',
    # the reference protocol starts the student from the trained RGB
    # baseline (tools/run_main.py passes it; None trains from scratch)
    student_ckpt='work_dirs/did-m3d_dla34_1xb16-150e_kitti-mono3d-car_student'
    '/best.pth',
    teacher_norm_eval=True,
    feature_channels=(64, 128, 256, 512),
    align=dict(type='FeatureAlign'),
    select=dict(type='ConvMamba', d_state=16, d_conv=4, expand=2),
    fusion=dict(type='FeatureFusion'),
    teacher_fusion='cbr',
    loss_align_select=dict(
        type='AlignSelectLoss', level_weights=(4, 3, 2, 1), batch_divisor=4,
        loss_weight=10.0),
    loss_affinity=dict(type='AffinityLoss', batch_divisor=4, loss_weight=1.0),
    loss_head=dict(type='DIDHeadDistillLoss', kl_mode='batchmean'))
