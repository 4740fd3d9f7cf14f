# The tiny-half profile's model and data in one place (not a config of its
# own): every DLA-34 level at `widen_factor` of its channels (WidthDLANet),
# the neck and head reading the scaled channels, and the number of passes
# over the train set per epoch (RepeatDataset). The tiny-half configs merge
# `half_width_model` into their model (the student's, in the distiller).
widen_factor = 0.5
repeat_times = 3
half_width_model = dict(
    backbone=dict(type='WidthDLANet', widen_factor=widen_factor),
    neck=dict(in_channels=tuple(
        int(c * widen_factor) for c in (64, 128, 256, 512))),
    bbox_head=dict(in_channels=int(64 * widen_factor)))
