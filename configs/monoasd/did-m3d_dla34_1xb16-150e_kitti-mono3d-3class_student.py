# RGB DID-M3D on KITTI with Pedestrian, Cyclist and Car (design P2).
_base_ = ['./did-m3d_dla34_1xb16-150e_kitti-mono3d-car_student.py']
class_names = ['Pedestrian', 'Cyclist', 'Car']
metainfo = dict(classes=class_names)
model = dict(bbox_head=dict(class_names=class_names))
train_dataloader = dict(dataset=dict(metainfo=metainfo))
val_dataloader = dict(dataset=dict(metainfo=metainfo))
test_dataloader = val_dataloader
