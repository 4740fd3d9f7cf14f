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
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import free_port, spawn_ranks
from test_tools import MONOASD, ROOT, data_options

METRIC = re.compile(r'(Kitti metric/\S+): (-?\d+\.\d+)')


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
        np.testing.assert_allclose(a['location'], b['location'], rtol=1e-5,
                                   atol=1e-4)
        np.testing.assert_allclose(a['score'], b['score'], atol=1e-5)


def _distiller_step(root: str, indices: list) -> tuple:
    """Losses and gradients of one distiller step on train frames
    ``indices`` (no augmentation, BatchNorm in eval mode so that a sample's
    forward does not depend on the rest of its batch)."""
    import torch
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope
    from mmdet3d.registry import DATASETS, MODELS
    from torch.nn.modules.batchnorm import _BatchNorm

    import monoasd  # noqa: F401
    from monoasd.evaluation.oracle import without_augmentation
    init_default_scope('mmdet3d')
    cfg = Config.fromfile(MONOASD)
    cfg.model.teacher_ckpt = None
    cfg.model.student.bbox_head.head_conv = 16
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.data_root = root + '/'
    ds_cfg.pipeline = without_augmentation(ds_cfg.pipeline)
    ds = DATASETS.build(ds_cfg)
    batch = pseudo_collate([ds[i] for i in indices])
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.student.bbox_head.htl.weights.fill_(1.0)
    model.train()
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.eval()
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()
             if p.grad is not None}
    counts = [len(s.gt_instances_3d) for s in data['data_samples']]
    return {k: v.item() for k, v in losses.items()}, grads, counts


def _loss_worker(rank, world_size, port, out_dir, root, indices):
    import torch
    import torch.distributed as torch_dist
    torch.set_num_threads(1)
    torch_dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
        world_size=world_size)
    try:
        losses, grads, counts = _distiller_step(root, [indices[rank]])
        for g in grads.values():  # what DDP does with the gradients
            torch_dist.all_reduce(g)
            g /= world_size
        torch.save(dict(losses=losses, counts=counts,
                        grads=grads if rank == 0 else None),
                   os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        torch_dist.destroy_process_group()


@pytest.mark.timeout(600)
def test_two_ranks_by_one_equal_one_rank_by_two(mini_kitti, tmp_path):
    """Every loss term (mean over the ranks, which DDP's gradient average
    optimises) and every gradient of 2 ranks x 1 sample equal 1 rank x 2
    samples. Train frame 2 of the shared data has two cars and frame 0
    none, so the per-object means of the two ranks need the global
    normalisation (models/utils/rank_mean.py) and rank 1 takes the
    no-object path of the losses."""
    import torch
    root, _ = mini_kitti
    indices = [2, 0]
    one, one_grads, counts = _distiller_step(str(root), indices)
    assert counts[0] > 0 and counts[1] == 0, counts
    spawn_ranks(_loss_worker, str(tmp_path), str(root), indices,
                timeout=300.0)
    ranks = [torch.load(tmp_path / f'rank{r}.pth', weights_only=False)
             for r in range(2)]
    assert [r['counts'][0] for r in ranks] == counts
    assert len(one) == 15
    rel = {}
    for k, v in one.items():
        two = 0.5 * (ranks[0]['losses'][k] + ranks[1]['losses'][k])
        rel[k] = abs(two - v) / max(abs(v), 1e-12)
        print(f'{k}: 1x2 {v:.8g}  2x1 {two:.8g}  rel {rel[k]:.1e}')
    total_one = sum(one.values())
    total_two = sum(0.5 * (ranks[0]['losses'][k] + ranks[1]['losses'][k])
                    for k in one)
    print(f'total: 1x2 {total_one:.8g}  2x1 {total_two:.8g}')
    assert total_two == pytest.approx(total_one, rel=5e-5)
    # measured: at most 5.1e-6 (float32 sums of ~1e10 in another order);
    # rank-local means would halve the per-object terms (rank 1 has none)
    assert max(rel.values()) < 5e-5, rel
    grads = ranks[0]['grads']
    assert set(grads) == set(one_grads)
    worst = max(((grads[n] - g).abs().max() /
                 g.abs().max().clamp(min=1e-12)).item()
                for n, g in one_grads.items() if g.abs().max() > 0)
    print('largest relative gradient difference:', worst)
    # measured 8.2e-4 (relative to each tensor's largest entry): float32
    # gradients of the random-init depth terms (~1e6) summed in another order
    assert worst < 5e-3
