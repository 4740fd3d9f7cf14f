# Tiny depth teacher for the synthetic mini-KITTI.
_base_ = ['./did-m3d_dla34_tiny_mini-kitti-car_student.py']
model = dict(type='TeacherDetector')
val_dataloader = dict(dataset=dict(pipeline={{_base_.teacher_test_pipeline}}))
test_dataloader = val_dataloader
