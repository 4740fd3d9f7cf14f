# Depth teacher: DID-M3D reading the dense LiDAR depth map (design D4).
_base_ = ['./did-m3d_dla34_1xb16-150e_kitti-mono3d-car_student.py']
model = dict(type='TeacherDetector')
val_dataloader = dict(dataset=dict(pipeline={{_base_.teacher_test_pipeline}}))
test_dataloader = val_dataloader
