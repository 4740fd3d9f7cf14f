# Tiny RGB student at half width, three times the iterations: the tiny
# student with every DLA-34 level at half its channels (WidthDLANet, about
# a third of the step time on a CPU) and each epoch three passes over the
# 384 frames (RepeatDataset, as mmdet3d's KITTI configs use it): 4,320
# iterations in about the wall time of the tiny profile's 1,440. Every
# epoch-based setting (warm-up, HTL, LR step, validation) is the tiny
# profile's. docs/profile_search.md, "Ninth round".
_base_ = [
    './did-m3d_dla34_tiny_mini-kitti-car_student.py',
    '../_base_/models/did-m3d_dla34-half.py'
]
model = {{_base_.half_width_model}}
train_dataloader = dict(dataset=dict(
    _delete_=True, type='RepeatDataset', times={{_base_.repeat_times}},
    dataset={{_base_.train_dataloader.dataset}}))
