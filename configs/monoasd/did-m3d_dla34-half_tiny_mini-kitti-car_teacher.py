# Tiny depth teacher at half width, three times the iterations (see the
# half-width student config): the tiny teacher's input, ROI gradient and
# cosine schedule on the half-width model and repeated train set.
_base_ = [
    './did-m3d_dla34_tiny_mini-kitti-car_teacher.py',
    '../_base_/models/did-m3d_dla34-half.py'
]
model = {{_base_.half_width_model}}
train_dataloader = dict(dataset=dict(
    _delete_=True, type='RepeatDataset', times={{_base_.repeat_times}},
    dataset={{_base_.train_dataloader.dataset}}))
