# Control for the tiny MonoASD run: the RGB baseline, started from the
# baseline checkpoint (load_from, set by tools/run_main.py) and trained
# further with exactly the MonoASD config's schedule, optimizer, pipeline and
# seed, without distillation. The tiny MonoASD config inherits this file, so
# MonoASD minus control is the gain of distillation at equal total training
# (tests/test_protocol.py checks that the two agree on all but the model).
_base_ = ['./did-m3d_dla34_tiny_mini-kitti-car_student.py']
load_from = None  # the baseline checkpoint
max_epochs = 2  # 192 iterations on the default 384 frames

# the baseline's rate, x0.1 for the second epoch
optim_wrapper = dict(optimizer=dict(lr=5e-4))
param_scheduler = [
    dict(type='MultiStepLR', milestones=[1], gamma=0.1, begin=0,
         end=max_epochs, by_epoch=True),
]
train_cfg = dict(max_epochs=max_epochs, val_begin=1, val_interval=2)
# Fine-tuning keeps the baseline's final HTL weights (loaded with the
# checkpoint's buffers): no HTLHook, which would restart the warm-up and
# switch the 3D terms off for the whole short schedule.
custom_hooks = [dict(type='ModalityMetaHook'), dict(type='RNGStateHook')]
