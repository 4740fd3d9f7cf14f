"""Two gloo ranks on the CPU through the project's launchers.

- ``tools/dist_train.sh CONFIG 2`` trains the tiny MonoASD distiller
  (the launcher picks gloo without a GPU) and writes a checkpoint;
- ``tools/dist_test.sh`` with 2 ranks on an odd number of frames gives
  the same predictions (each frame exactly once) and the same KittiMetric
  numbers as ``tools/test.py`` with one process.
"""
import os
import pickle
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_tools import MONOASD, ROOT, data_options

METRIC = re.compile(r'(Kitti metric/\S+): (-?\d+\.\d+)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def bash(args: list) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHON=sys.executable,
               PORT=str(free_port()), OMP_NUM_THREADS='1')
    proc = subprocess.run(['bash'] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def distiller_options(root: Path) -> list:
    opts = [o.replace('model.bbox_head', 'model.student.bbox_head')
            for o in data_options(root, 1)]
    return [o.replace('train_dataloader.batch_size=2',
                      'train_dataloader.batch_size=1') for o in opts] + [
        'model.teacher_ckpt=None', 'model.student.bbox_head.score_thr=0.0']


@pytest.fixture(scope='module')
def ddp_ckpt(mini_kitti, tmp_path_factory):
    root, _ = mini_kitti
    work = tmp_path_factory.mktemp('ddp_train')
    log = bash(['tools/dist_train.sh', MONOASD, '2', '--work-dir',
                str(work), '--cfg-options'] + distiller_options(root))
    assert "-> 'gloo'" in log
    assert re.search(r'World size: 2|world_size: 2|Distributed training: '
                     r'True', log)
    ckpt = work / 'epoch_1.pth'
    assert ckpt.is_file()
    return root, ckpt


def test_dist_train_writes_checkpoint(ddp_ckpt):
    import torch
    _, ckpt = ddp_ckpt
    state = torch.load(ckpt, map_location='cpu', weights_only=False)
    # 4 train frames, batch 1 per rank, 2 ranks: 2 iterations per epoch
    assert state['meta']['iter'] == 2
    assert any(k.startswith('selects_s.') for k in state['state_dict'])


def test_dist_test_matches_one_process(ddp_ckpt, tmp_path):
    from mmengine.fileio import dump, load
    root, ckpt = ddp_ckpt
    # 3 frames (odd): the distributed sampler pads rank 1, the metric must
    # still see every frame exactly once
    infos = load(root / 'kitti_infos_train.pkl')
    infos['data_list'] = infos['data_list'][:3]
    ann = tmp_path / 'kitti_infos_3.pkl'
    dump(infos, ann)
    common = [f'test_dataloader.dataset.ann_file={ann}',
              f'test_evaluator.ann_file={ann}']
    opts = distiller_options(root) + common
    out = {}
    for name, cmd in (
            ('one', [str(ROOT / 'tools' / 'test.py'), MONOASD, str(ckpt)]),
            ('two', ['tools/dist_test.sh', MONOASD, str(ckpt), '2'])):
        prefix = tmp_path / name
        args = cmd + ['--work-dir', str(tmp_path / f'w_{name}'),
                      '--cfg-options'] + opts + [
                          f'test_evaluator.pklfile_prefix={prefix}']
        if name == 'one':
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            proc = subprocess.run([sys.executable] + args, cwd=ROOT,
                                  env=env, capture_output=True, text=True,
                                  timeout=900)
            assert proc.returncode == 0, proc.stderr[-3000:]
            log = proc.stdout + proc.stderr
        else:
            log = bash(args)
        metrics = dict(METRIC.findall(log))
        with open(prefix / 'pred_instances_3d.pkl', 'rb') as f:
            preds = pickle.load(f)
        out[name] = metrics, preds
    (m1, p1), (m2, p2) = out['one'], out['two']
    assert len(m1) > 10 and m1 == m2
    assert [p['sample_idx'][0] for p in p1] == \
        [p['sample_idx'][0] for p in p2] == [0, 1, 2]
    assert sum(len(p['score']) for p in p1) > 0
    for a, b in zip(p1, p2):
        np.testing.assert_allclose(a['location'], b['location'], atol=1e-4)
        np.testing.assert_allclose(a['score'], b['score'], atol=1e-5)
