# Control for the tiny MonoASD run: the RGB baseline, started from the
# baseline checkpoint (load_from, set by tools/run_main.py) and trained
# further with exactly the MonoASD config's schedule, optimizer, pipeline and
# seed, without distillation. MonoASD minus control is the gain of
# distillation at equal total training (tests/test_protocol.py checks that
# the two configs agree on everything but the model).
_base_ = ['./did-m3d_dla34_tiny_mini-kitti-car_student.py']
load_from = None  # the baseline checkpoint
optim_wrapper = dict(optimizer=dict(lr=1e-3))
