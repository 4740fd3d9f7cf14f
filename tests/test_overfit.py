"""Overfit a few synthetic frames with the real training stack.

Trains the tiny teacher (dense depth input) and the tiny RGB student with
mmengine's Runner on eight synthetic KITTI frames, all eight in every batch,
for 150 (teacher) and 250 (student) iterations (lr 3e-3, x0.1 for the last
quarter) and evaluates them with mmdet3d's KittiMetric on the same frames.
Marked slow (a few minutes per model on a 2-core CPU); CI runs it.

What made memorising possible (measured with this test, docs/overfit_test.md):
the tiny head's ``depth_prior`` (the visual depth starts at scene scale
instead of ~1 m, which Adam needs thousands of steps to leave),
``detach_scale_depth`` (without HTL's warm-up, the depth loss otherwise
shrinks the predicted 2D boxes through the clamp in ``scale_depth``), for
the RGB student ``roi_grad_scale=0.1`` (at 1.0 the depth term's gradient on
the shared feature map keeps the heatmap from learning; at the tiny config's
0.01 the features learn too little for depth), for the student
``depth_output_init='zero'`` (the outputs that go through ``exp`` start at
the prior whatever the seed), and above all the
**full batch**: with 2 of the 8 frames per batch, BatchNorm's batch
statistics change with every draw of the pair and differ from the moving
averages used in eval mode, so the 3D losses plateau and the models were
at 4-22 of the attainable 32.5 AP3D@0.5. With the same 8 frames in every
batch, the statistics are the same at every step and the moving averages
converge to them.
"""
import ast
import os
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from conftest import OVERFIT_FRAMES, ap40_ceiling

ROOT = Path(__file__).resolve().parents[1]
CFG_DIR = ROOT / 'configs' / 'monoasd'
AP3D = 'Kitti metric/pred_instances_3d/KITTI/Car_3D_AP40_{}_{}'
AP2D = 'Kitti metric/pred_instances/KITTI/Car_2D_AP40_moderate_strict'
#: Frames per batch; the default is the whole overfit set (OVERFIT_FRAMES).
BATCH = int(os.environ.get('MONOASD_OVERFIT_BATCH', OVERFIT_FRAMES))
#: Per model: full-batch iterations and head options (docs/overfit_test.md,
#: with the runs they were chosen from). The teacher memorises in 150
#: steps with the reference init (with ``depth_output_init='zero'`` it
#: reached 24.79 AP3D@0.5 in 250); the student needs the zero init (with
#: Xavier, seed 1 never learned its heatmap) and 250 steps.
SETTINGS = {
    'teacher': dict(epochs=150, head=dict()),
    'student': dict(epochs=250, head=dict(depth_output_init='zero',
                                          roi_grad_scale=0.1)),
}
#: Overrides both models' iterations when set.
EPOCHS_ENV = os.environ.get('MONOASD_OVERFIT_EPOCHS')
#: Extra config options for measuring other settings, e.g.
#: MONOASD_OVERFIT_CFG='model.bbox_head.depth_prior=None
#: model.bbox_head.detach_scale_depth=False' (space-separated key=value,
#: values as Python literals).
EXTRA_CFG = os.environ.get('MONOASD_OVERFIT_CFG', '')
#: Keep the data (conftest's ``overfit_data``) and checkpoints there, e.g.
#: for tools/analysis_tools/oracle_analysis.py; default: pytest's tmp dirs.
KEEP_DIR = os.environ.get('MONOASD_OVERFIT_WORK_DIR')
#: Shares of the attainable Car AP|R40 moderate (``ap40_ceiling``) that
#: each model must reach on its training frames: AP3D at IoU 0.5 and 0.7,
#: and AP2D. Measured here with 2 threads (docs/overfit_test.md):
#: teacher 32.50 / 24.16 / 22.92 (twice), student 32.50 / 28.93 / 32.50;
#: with 1 thread the student gave 32.50 / 29.64 / 32.50 at seed 0 and
#: 32.50 / 32.50 / 32.50 at seed 1. The bars (26.0 / 13.0 / 16.25) sit
#: at the issue's 80 % for IoU 0.5 and 1.4x (teacher AP2D) to 2.2x below
#: the rest.
MIN_FRACTION = dict(ap3d_05=0.8, ap3d_07=0.4, ap2d=0.5)


def overfit_cfg(name: str, root: Path, work_dir: Path) -> Config:
    """Tiny config trained and evaluated on the same frames, no aug."""
    cfg = Config.fromfile(str(CFG_DIR / name))
    data_root = str(root) + '/'
    cfg.work_dir = str(work_dir)
    cfg.model.bbox_head.htl = None  # all terms from the first iteration
    cfg.model.bbox_head.head_conv = 32
    kind = 'teacher' if 'teacher' in name else 'student'
    cfg.model.bbox_head.update(SETTINGS[kind]['head'])
    epochs = int(EPOCHS_ENV or SETTINGS[kind]['epochs'])
    pipe = cfg.train_dataloader.dataset.pipeline
    for t in pipe:
        if t['type'] == 'MonoAffineAug':
            t.update(flip_prob=0.0, crop_prob=0.0)
    cfg.train_dataloader.dataset.pipeline = [
        t for t in pipe if t['type'] != 'MonoColorJitter'
    ]
    cfg.train_dataloader.update(
        batch_size=BATCH, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.data_root = data_root
    for loader in ('val_dataloader', 'test_dataloader'):
        cfg[loader].update(num_workers=0, persistent_workers=False)
        cfg[loader].dataset.update(
            data_root=data_root, ann_file='kitti_infos_train.pkl')
    for ev in ('val_evaluator', 'test_evaluator'):
        cfg[ev].ann_file = data_root + 'kitti_infos_train.pkl'
    cfg.optim_wrapper.optimizer.lr = 3e-3
    cfg.param_scheduler = [
        dict(type='MultiStepLR', milestones=[int(epochs * 0.77)], gamma=0.1,
             by_epoch=True)
    ]
    cfg.train_cfg = dict(
        type='EpochBasedTrainLoop', max_epochs=epochs, val_interval=epochs)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=epochs, save_last=False)
    cfg.default_hooks.logger.interval = 10
    cfg.custom_hooks = []
    cfg.randomness = dict(seed=0)
    for item in EXTRA_CFG.split():
        key, value = item.split('=', 1)
        cfg.merge_from_dict({key: ast.literal_eval(value)})
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize('name', [
    'did-m3d_dla34_tiny_mini-kitti-car_teacher.py',
    'did-m3d_dla34_tiny_mini-kitti-car_student.py'
])
def test_overfit_raises_car_ap(overfit_data, tmp_path, name):
    torch.manual_seed(0)
    work_dir = Path(KEEP_DIR) / name[:-3] if KEEP_DIR else tmp_path
    runner = Runner.from_cfg(overfit_cfg(name, overfit_data, work_dir))
    runner.train()
    metrics = runner.val_loop.run()
    cap = ap40_ceiling(overfit_data)
    loose = metrics[AP3D.format('moderate', 'loose')]
    strict = metrics[AP3D.format('moderate', 'strict')]
    print(f'{name}: Car 3D AP40 moderate IoU0.5 {loose:.2f} IoU0.7 '
          f'{strict:.2f} (at most {cap:.1f} with these objects)')
    ap2d = metrics[AP2D]
    print(f'{name}: Car 2D AP40 moderate IoU0.7 {ap2d:.2f}')
    assert loose >= MIN_FRACTION['ap3d_05'] * cap, (loose, strict, cap)
    assert strict >= MIN_FRACTION['ap3d_07'] * cap, (loose, strict, cap)
    assert ap2d >= MIN_FRACTION['ap2d'] * cap, (ap2d, cap)
