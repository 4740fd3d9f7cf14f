"""Command-line tools end to end on the tiny synthetic KITTI.

- mmdet3d's own ``.mim/tools/train.py`` trains a tiny config unchanged;
- our ``tools/train.py`` trains the tiny MonoASD distiller, whose
  checkpoints hold no teacher weights, and ``--resume`` continues it;
- ``tools/test.py --format-only`` writes one KITTI txt per test image;
- ``tools/demo.py`` writes a picture and a KITTI txt for one image.
"""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mmdet3d
import pytest
import torch

from conftest import import_tool

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / 'configs/monoasd'
STUDENT = str(TINY / 'did-m3d_dla34_tiny_mini-kitti-car_student.py')
MONOASD = str(TINY / 'monoasd_dla34_tiny_mini-kitti-car.py')
#: KITTI result line: type, trunc, occ, alpha, 4 box, 3 dims, 3 loc, ry, score
KITTI_LINE = re.compile(r'^(Car|Pedestrian|Cyclist)( -?\d+(\.\d+)?){15}$')


def data_options(root: Path, epochs: int) -> list:
    r = str(root) + '/'
    opts = [f'{d}.dataset.data_root={r}' for d in
            ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    opts += [f'{e}.ann_file={r}kitti_infos_val.pkl'
             for e in ('val_evaluator', 'test_evaluator')]
    opts += [f'train_cfg.max_epochs={epochs}', 'train_cfg.val_interval=100',
             'train_dataloader.batch_size=2',
             'train_dataloader.num_workers=0',
             'train_dataloader.persistent_workers=False',
             'val_dataloader.num_workers=0',
             'val_dataloader.persistent_workers=False',
             'test_dataloader.num_workers=0',
             'test_dataloader.persistent_workers=False',
             'model.bbox_head.head_conv=16', 'default_hooks.logger.interval=1',
             'default_hooks.checkpoint.interval=1']
    return opts


def run(args: list) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def student_ckpt(mini_kitti, tmp_path_factory):
    """One epoch of the tiny student with mmdet3d's own train.py."""
    root, _ = mini_kitti
    work = tmp_path_factory.mktemp('mim_train')
    mim_train = osp.join(osp.dirname(mmdet3d.__file__), '.mim', 'tools',
                         'train.py')
    run([mim_train, STUDENT, '--work-dir', str(work), '--cfg-options'] +
        data_options(root, 1))
    ckpt = work / 'epoch_1.pth'
    assert ckpt.is_file()
    return ckpt


def test_monoasd_train_resume_without_teacher_weights(mini_kitti, tmp_path):
    root, _ = mini_kitti
    opts = [o.replace('model.bbox_head', 'model.student.bbox_head')
            for o in data_options(root, 1)] + ['model.teacher_ckpt=None']
    run(['tools/train.py', MONOASD, '--work-dir', str(tmp_path),
         '--cfg-options'] + opts)
    ckpt = torch.load(tmp_path / 'epoch_1.pth', map_location='cpu',
                      weights_only=False)
    keys = ckpt['state_dict'].keys()
    assert any(k.startswith('student.') for k in keys)
    assert any(k.startswith('selects_s.') for k in keys)
    assert not any(k.startswith('teacher.') for k in keys)

    opts2 = [o.replace('max_epochs=1', 'max_epochs=2') for o in opts]
    log = run(['tools/train.py', MONOASD, '--work-dir', str(tmp_path),
               '--resume', '--cfg-options'] + opts2)
    assert 'resumed epoch: 1' in log
    assert (tmp_path / 'epoch_2.pth').is_file()


def test_format_only_names_files_by_frame_id(
        mini_kitti, student_ckpt, tmp_path):
    src, _ = mini_kitti
    # a test split whose ids have gaps: its one frame is renamed to 000007
    root = tmp_path / 'kitti'
    shutil.copytree(src, root)
    old = (root / 'ImageSets' / 'test.txt').read_text().split()[0]
    for sub, ext in (('image_2', '.png'), ('calib', '.txt'),
                     ('velodyne', '.bin')):
        os.rename(root / 'testing' / sub / f'{old}{ext}',
                  root / 'testing' / sub / f'000007{ext}')
    (root / 'ImageSets' / 'test.txt').write_text('000007\n')
    import_tool('create_data').create_kitti_infos(str(root))
    out = tmp_path / 'kitti_test'
    r = str(root) + '/'
    run(['tools/test.py', STUDENT, str(student_ckpt), '--work-dir',
         str(tmp_path / 'w'), '--format-only', '--submission-prefix',
         str(out), '--cfg-options',
         f'test_dataloader.dataset.data_root={r}',
         'test_dataloader.dataset.ann_file=kitti_infos_test.pkl',
         'test_dataloader.dataset.data_prefix.img=testing/image_2',
         'test_dataloader.dataset.load_eval_anns=False',
         f'test_evaluator.ann_file={r}kitti_infos_test.pkl',
         'test_dataloader.num_workers=0',
         'test_dataloader.persistent_workers=False',
         'model.bbox_head.head_conv=16', 'model.bbox_head.score_thr=0.0'])
    test_ids = (root / 'ImageSets' / 'test.txt').read_text().split()
    # KittiMetric writes one folder per prediction type
    assert sorted(p.name for p in out.iterdir()) == [
        'pred_instances', 'pred_instances_3d']
    out = out / 'pred_instances_3d'
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(f'{i}.txt' for i in test_ids) == ['000007.txt']
    lines = [ln for f in out.iterdir() for ln in f.read_text().splitlines()]
    assert lines, 'score_thr=0 must produce detections'
    for line in lines:
        assert KITTI_LINE.match(line), line


def test_demo_writes_picture_and_txt(mini_kitti, student_ckpt, tmp_path):
    root, _ = mini_kitti
    idx = (root / 'ImageSets' / 'val.txt').read_text().split()[0]
    img = root / 'training' / 'image_2' / f'{idx}.png'
    calib = root / 'training' / 'calib' / f'{idx}.txt'
    run(['tools/demo.py', str(img), str(calib), STUDENT, str(student_ckpt),
         '--out-dir', str(tmp_path), '--cfg-options',
         'model.bbox_head.head_conv=16'])
    assert (tmp_path / f'{idx}.png').stat().st_size > 0
    for line in (tmp_path / f'{idx}.txt').read_text().splitlines():
        assert KITTI_LINE.match(line), line


def test_demo_rejects_calib_without_p2(mini_kitti, student_ckpt, tmp_path):
    root, _ = mini_kitti
    idx = (root / 'ImageSets' / 'val.txt').read_text().split()[0]
    bad = tmp_path / 'calib.txt'
    bad.write_text('P0: 1 0 0 0 0 1 0 0 0 0 1 0\n')
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, 'tools/demo.py',
         str(root / 'training' / 'image_2' / f'{idx}.png'), str(bad),
         STUDENT, str(student_ckpt)], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert 'has no "P2:" line' in proc.stderr and str(bad) in proc.stderr


def test_demo_rejects_checkpoint_of_another_config(mini_kitti, student_ckpt,
                                                   tmp_path):
    root, _ = mini_kitti
    idx = (root / 'ImageSets' / 'val.txt').read_text().split()[0]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # the checkpoint has head_conv=16, the plain config 64
    proc = subprocess.run(
        [sys.executable, 'tools/demo.py',
         str(root / 'training' / 'image_2' / f'{idx}.png'),
         str(root / 'training' / 'calib' / f'{idx}.txt'), STUDENT,
         str(student_ckpt), '--out-dir', str(tmp_path)], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert 'size mismatch' in proc.stderr and 'bbox_head' in proc.stderr
    assert not list(tmp_path.glob('*.png'))
