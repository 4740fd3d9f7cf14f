# Tiny depth teacher at half width, three times the iterations (see the
# half-width student config): the tiny teacher's input, ROI gradient and
# cosine schedule on the half-width model and repeated train set.
_base_ = ['./did-m3d_dla34_tiny_mini-kitti-car_teacher.py']
model = dict(
    backbone=dict(type='WidthDLANet', widen_factor=0.5),
    neck=dict(in_channels=(32, 64, 128, 256)),
    bbox_head=dict(in_channels=32))
train_dataloader = dict(dataset=dict(
    _delete_=True, type='RepeatDataset', times=3,
    dataset={{_base_.train_dataloader.dataset}}))
