# Control of the half-width profile: the tiny control's schedule (2 epochs,
# x0.1 for the second) on the half-width model and the train set repeated
# three times (576 iterations), started from the half-width baseline.
_base_ = ['./did-m3d_dla34_tiny_mini-kitti-car_control.py']
model = dict(
    backbone=dict(type='WidthDLANet', widen_factor=0.5),
    neck=dict(in_channels=(32, 64, 128, 256)),
    bbox_head=dict(in_channels=32))
train_dataloader = dict(dataset=dict(
    _delete_=True, type='RepeatDataset', times=3,
    dataset={{_base_.train_dataloader.dataset}}))
