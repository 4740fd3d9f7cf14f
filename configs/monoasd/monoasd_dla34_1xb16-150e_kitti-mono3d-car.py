# MonoASD on KITTI, Car (spec B5.7): the RGB DID-M3D student distilled from
# the depth teacher with align/select/fusion, affinity and head losses.
_base_ = ['./did-m3d_dla34_1xb16-150e_kitti-mono3d-car_student.py']

model = dict(
    _delete_=True,
    type='AlignSelectDistiller',
    student={{_base_.model}},
    # teacher: same architecture reading the depth input (TeacherDetector)
    teacher_ckpt='work_dirs/did-m3d_dla34_1xb16-150e_kitti-mono3d-car_teacher'
    '/best.pth',
    student_ckpt=None,  # e.g. the RGB baseline checkpoint
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

optim_wrapper = dict(optimizer=dict(lr=3e-4))
