# Control of the half-width profile: the tiny control's schedule (2 epochs,
# x0.1 for the second) on the half-width model and the train set repeated
# three times (576 iterations), started from the half-width baseline.
_base_ = [
    './did-m3d_dla34_tiny_mini-kitti-car_control.py',
    '../_base_/models/did-m3d_dla34-half.py'
]
model = {{_base_.half_width_model}}
train_dataloader = dict(dataset=dict(
    _delete_=True, type='RepeatDataset', times={{_base_.repeat_times}},
    dataset={{_base_.train_dataloader.dataset}}))
