# Control for MonoASD on KITTI: the RGB baseline, started from the baseline
# checkpoint (load_from) and trained further with the MonoASD config's
# schedule, optimizer, pipeline and seed, without distillation.
_base_ = ['./did-m3d_dla34_1xb16-150e_kitti-mono3d-car_student.py']
load_from = 'work_dirs/did-m3d_dla34_1xb16-150e_kitti-mono3d-car_student/best.pth'  # noqa
optim_wrapper = dict(optimizer=dict(lr=3e-4))  # as the MonoASD config
