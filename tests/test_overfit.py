"""Overfit a few synthetic frames with the real training stack.

Trains the tiny teacher (dense depth input) and the tiny RGB student with
mmengine's Runner on eight synthetic KITTI frames for 600 iterations
(batch 2, lr 3e-3, x0.1 for the last quarter) and evaluates them with
mmdet3d's KittiMetric on the same frames. Marked slow (about 6 minutes
per model on a 2-core CPU); CI runs it.

What made memorising possible (measured with this test, README "Tests"):
the tiny head's ``depth_prior`` (the visual depth starts at scene scale
instead of ~1 m, which Adam needs thousands of steps to leave),
``detach_scale_depth`` (without HTL's warm-up, the depth loss otherwise
shrinks the predicted 2D boxes through the clamp in ``scale_depth``) and,
for the RGB student, ``roi_grad_scale=0.01`` (the depth term's gradient
on the shared feature map is ~100x the heatmap's and kept the 2D heads
from learning: student AP2D 10.2 -> 32.5 of 32.5).
"""
import ast
import os
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from conftest import ap40_ceiling

ROOT = Path(__file__).resolve().parents[1]
CFG_DIR = ROOT / 'configs' / 'monoasd'
AP3D = 'Kitti metric/pred_instances_3d/KITTI/Car_3D_AP40_{}_{}'
AP2D = 'Kitti metric/pred_instances/KITTI/Car_2D_AP40_moderate_strict'
BATCH = int(os.environ.get('MONOASD_OVERFIT_BATCH', 2))
EPOCHS = int(os.environ.get('MONOASD_OVERFIT_EPOCHS', 150))
#: Extra config options for measuring other settings, e.g.
#: MONOASD_OVERFIT_CFG='model.bbox_head.depth_prior=None
#: model.bbox_head.detach_scale_depth=False' (space-separated key=value,
#: values as Python literals).
EXTRA_CFG = os.environ.get('MONOASD_OVERFIT_CFG', '')
#: Keep the data (conftest's ``overfit_data``) and checkpoints there, e.g.
#: for tools/analysis_tools/oracle_analysis.py; default: pytest's tmp dirs.
KEEP_DIR = os.environ.get('MONOASD_OVERFIT_WORK_DIR')
#: Car AP3D|R40 moderate at IoU 0.5 that each model must reach. Measured
#: here (150 epochs, out of 32.5 attainable): teacher 10.83 with 2 threads and
#: 18.11 with 1, student 3.83 and 5.57; float rounding (threads, CPU) sends
#: training on another path, so the bars sit a factor of 2 or more below
#: the lower measurement. The old test's settings gave 0.00.
MIN_AP3D_05 = {'teacher': 5.0, 'student': 1.5}
#: Share of the attainable Car AP2D|R40 moderate that each model's 2D head
#: must reach on its training frames. Measured: teacher 32.50 (2 threads),
#: student 26.92 (2 threads) and 32.50 (1 thread, twice); the bar (16.25)
#: leaves a margin for other machines.
MIN_AP2D_FRACTION = 0.5


def overfit_cfg(name: str, root: Path, work_dir: Path) -> Config:
    """Tiny config trained and evaluated on the same frames, no aug."""
    cfg = Config.fromfile(str(CFG_DIR / name))
    data_root = str(root) + '/'
    cfg.work_dir = str(work_dir)
    cfg.model.bbox_head.htl = None  # all terms from the first iteration
    cfg.model.bbox_head.head_conv = 32
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
        dict(type='MultiStepLR', milestones=[int(EPOCHS * 0.77)], gamma=0.1,
             by_epoch=True)
    ]
    cfg.train_cfg = dict(
        type='EpochBasedTrainLoop', max_epochs=EPOCHS, val_interval=EPOCHS)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=EPOCHS, save_last=False)
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
    kind = 'teacher' if 'teacher' in name else 'student'
    assert loose >= MIN_AP3D_05[kind], (loose, strict)
    assert ap2d >= MIN_AP2D_FRACTION * cap, (ap2d, cap)
