# Depth teacher with Pedestrian, Cyclist and Car (design P2).
_base_ = ['./did-m3d_dla34_1xb16-150e_kitti-mono3d-3class_student.py']
model = dict(type='TeacherDetector')
val_dataloader = dict(dataset=dict(pipeline={{_base_.teacher_test_pipeline}}))
test_dataloader = val_dataloader
