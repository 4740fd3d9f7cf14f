"""Tests of Hierarchical Task Learning, its hook and the LR warm-up.

Spec Part B section 3 (HTL) and 5.7 (schedule).
"""
import io
import math
import os
import tempfile
from unittest.mock import MagicMock

import pytest
import torch
import torch.distributed as torch_dist
import torch.nn as nn
from mmengine.optim.scheduler import MultiStepLR

import monoasd  # noqa: F401  (registers the plugin)
from monoasd.engine.hooks import HTLHook
from monoasd.engine.schedulers import CosineWarmupLR
from monoasd.models.utils import DID_PREREQUISITES, HierarchicalTaskLearning

from conftest import spawn_ranks

TERMS = ('heatmap', 'offset_2d', 'size_2d', 'depth', 'offset_3d', 'size_3d',
         'heading')
DEPENDENT = ('depth', 'offset_3d', 'size_3d', 'heading')
#: Geometric decay ratio of each term's per-epoch mean loss.
RATIOS = dict(heatmap=0.9, offset_2d=0.5, size_2d=0.5, depth=0.7,
              offset_3d=0.6, size_3d=0.8, heading=0.95)
S, T = 3, 9  # stat_epochs, max_epoch (small for the tests)


def epoch_means(epoch):
    """Synthetic decreasing per-epoch mean of every term."""
    return {k: (i + 1.0) * RATIOS[k]**epoch for i, k in enumerate(TERMS)}


def feed_epoch(htl, epoch, scale=1.0):
    """Three iterations whose mean is ``epoch_means(epoch)``."""
    means = epoch_means(epoch)
    for f in (0.8, 1.0, 1.2):
        htl.accumulate(
            {k: torch.tensor(v * f * scale) for k, v in means.items()})


def hand_htl(num_epochs, stat_epochs=S, max_epoch=T, means=epoch_means):
    """Spec B3 HTL, written out independently (appends only if e != 0)."""
    hist, init, out = [], None, []
    for e in range(num_epochs):
        w = {k: 0.0 if DID_PREREQUISITES[k] else 1.0 for k in TERMS}
        if len(hist) == stat_epochs:
            diff = {k: sum(hist[j][k] - hist[j + 2][k]
                           for j in range(stat_epochs - 2)) /
                    (stat_epochs - 2) for k in TERMS}
            if init is None:
                init = dict(diff)
            c = {k: 1 - max(diff[k] / init[k], 0.0) for k in TERMS}
            t = min((e - stat_epochs) / (max_epoch - stat_epochs), 1.0)
            for k in DEPENDENT:
                w[k] = t**(1 - math.prod(c[p] for p in DID_PREREQUISITES[k]))
            hist.pop(0)
        if e != 0:
            hist.append(means(e - 1))
        out.append(w)
    return out


def run_htl(htl, epochs, start=0):
    """Drive ``htl`` like HTLHook + training: update, then one epoch."""
    out = []
    for e in range(start, start + epochs):
        out.append(htl.update(e))
        feed_epoch(htl, e)
    return out


def test_default_weights():
    htl = HierarchicalTaskLearning()
    assert set(htl.terms) == set(TERMS)
    for k in TERMS:
        expected = 0.0 if k in DEPENDENT else 1.0
        assert float(htl.weight(k)) == expected
    # term prerequisites (design D3)
    assert set(DID_PREREQUISITES['depth']) == {'size_2d', 'size_3d',
                                               'offset_2d'}
    for k in ('offset_3d', 'size_3d', 'heading'):
        assert set(DID_PREREQUISITES[k]) == {'size_2d', 'offset_2d'}


def test_htl_matches_hand_computation():
    htl = HierarchicalTaskLearning(stat_epochs=S, max_epoch=T)
    got = run_htl(htl, 12)
    hand = hand_htl(12)
    for e, (g, h) in enumerate(zip(got, hand)):
        for k in TERMS:
            assert g[k] == pytest.approx(h[k], rel=1e-5, abs=1e-7), (e, k)
    # no weighting before e = S + 1; at e = S + 1 the history holds the
    # means of epochs 0..S-1, diff == init_diff, so c = 0 and w = t
    for e in range(S + 1):
        assert all(got[e][k] == 0.0 for k in DEPENDENT)
        assert all(got[e][k] == 1.0 for k in ('heatmap', 'offset_2d',
                                              'size_2d'))
    first = 1 / (T - S)
    assert all(got[S + 1][k] == pytest.approx(first) for k in DEPENDENT)
    # e = S + 2: diff / init_diff = r, c = 1 - r (0.5 for the 2D terms,
    # 0.2 for size_3d); t = 2 / (T - S)
    t = 2 / (T - S)
    assert got[S + 2]['offset_3d'] == pytest.approx(t**(1 - 0.25))
    assert got[S + 2]['depth'] == pytest.approx(t**(1 - 0.25 * 0.2))
    # e = S + 3: ratio r^2; t = 3 / (T - S)
    t = 3 / (T - S)
    assert got[S + 3]['heading'] == pytest.approx(t**(1 - 0.75**2))
    assert got[S + 3]['depth'] == pytest.approx(
        t**(1 - 0.75**2 * (1 - 0.64)))
    # t saturates at 1 from e = T on
    assert all(got[T][k] == pytest.approx(1.0) for k in DEPENDENT)
    assert torch.equal(htl.weights,
                       torch.tensor([got[-1][k] for k in htl.terms]))


def test_htl_weights_used_by_name():
    htl = HierarchicalTaskLearning(stat_epochs=S, max_epoch=T)
    run_htl(htl, S + 3)
    for k in TERMS:
        assert float(htl.weight(k)) == float(
            htl.weights[htl.terms.index(k)])
    # keys other than the detector terms (e.g. KD losses) are ignored
    htl.update(S + 3)
    htl.accumulate({'loss_kd': torch.tensor(5.0), 'depth': torch.tensor(1.)})
    i = htl.terms.index('depth')
    assert htl.counts[i] == 1 and htl.counts.sum() == 1
    assert htl.sums[i] == 1 and htl.sums.sum() == 1


def test_htl_state_dict_resume():
    full = HierarchicalTaskLearning(stat_epochs=S, max_epoch=T)
    expected = run_htl(full, 10)

    first = HierarchicalTaskLearning(stat_epochs=S, max_epoch=T)
    run_htl(first, 6)  # checkpoint after epoch 5 (incl. its sums)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf)
    for key in ('weights', 'sums', 'counts', 'history', 'num_history',
                'init_diff', 'has_init_diff'):
        assert key in state
    resumed = HierarchicalTaskLearning(stat_epochs=S, max_epoch=T)
    resumed.load_state_dict(state)
    got = run_htl(resumed, 4, start=6)
    assert got == expected[6:]
    assert torch.equal(resumed.weights, full.weights)
    assert torch.equal(resumed.history, full.history)
    # the same through mmengine's checkpoint loader (strict), nested
    from mmengine.runner.checkpoint import get_state_dict, load_state_dict
    parent = nn.Module()
    parent.htl = first
    nested = nn.Module()
    nested.htl = HierarchicalTaskLearning(stat_epochs=S, max_epoch=T)
    load_state_dict(nested, get_state_dict(parent), strict=True)
    assert run_htl(nested.htl, 4, start=6) == expected[6:]
    # a fresh module without the state does not reproduce them
    fresh = HierarchicalTaskLearning(stat_epochs=S, max_epoch=T)
    assert run_htl(fresh, 4, start=6) != expected[6:]


#: Per-rank synthetic means in the DDP test: different trends per rank.
RANK_RATIOS = (RATIOS, {k: r**2 for k, r in RATIOS.items()})
#: Iterations per epoch of each rank.
RANK_ITERS = (1, 3)


def rank_means(rank, epoch):
    return {k: (i + 1.0) * RANK_RATIOS[rank][k]**epoch
            for i, k in enumerate(TERMS)}


def global_means(epoch):
    """Mean over all iterations of both ranks."""
    m0, m1 = rank_means(0, epoch), rank_means(1, epoch)
    n0, n1 = RANK_ITERS
    return {k: (n0 * m0[k] + n1 * m1[k]) / (n0 + n1) for k in TERMS}


def _ddp_worker(rank, world_size, port, out_dir):
    torch.set_num_threads(1)
    torch_dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
        world_size=world_size)
    try:
        htl = HierarchicalTaskLearning(stat_epochs=S, max_epoch=T)
        weights = []
        for e in range(S + 4):
            weights.append(htl.update(e))
            for _ in range(RANK_ITERS[rank]):
                htl.accumulate({k: torch.tensor(v) for k, v in
                                rank_means(rank, e).items()})
        torch.save(dict(weights=weights, history=htl.history),
                   os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        torch_dist.destroy_process_group()


@pytest.mark.timeout(200)
def test_htl_ddp_reduces_across_ranks():
    with tempfile.TemporaryDirectory() as out_dir:
        spawn_ranks(_ddp_worker, out_dir)
        res = [torch.load(os.path.join(out_dir, f'rank{r}.pth'))
               for r in range(2)]
    assert res[0]['weights'] == res[1]['weights']
    assert torch.equal(res[0]['history'], res[1]['history'])
    # the history holds the global per-epoch means
    terms = HierarchicalTaskLearning().terms
    last = S + 3  # epochs 1..S+3 appended the means of epochs 0..S+2
    expected_hist = torch.tensor(
        [[global_means(e)[k] for k in terms]
         for e in range(last - S, last)], dtype=torch.float64)
    torch.testing.assert_close(res[0]['history'], expected_hist)
    hand = hand_htl(S + 4, means=global_means)
    local = hand_htl(S + 4, means=lambda e: rank_means(0, e))
    for g, h in zip(res[0]['weights'], hand):
        for k in TERMS:
            assert g[k] == pytest.approx(h[k], rel=1e-5, abs=1e-7)
    # rank-local statistics would have given different weights
    assert any(abs(local[-1][k] - hand[-1][k]) > 1e-3 for k in DEPENDENT)
    assert any(abs(local[-2][k] - hand[-2][k]) > 1e-3 for k in DEPENDENT)


class _HTLModel(nn.Module):
    """A model whose forward feeds HTL, as DIDM3DHead.loss does."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 1)
        self.htl = HierarchicalTaskLearning(stat_epochs=S, max_epoch=T)

    def forward(self, x, values):
        self.htl.accumulate(values)
        return self.lin(x).sum()


def _ddp_wrapper_worker(rank, world_size, port, out_dir):
    torch.set_num_threads(1)
    torch_dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
        world_size=world_size)
    try:
        model = _HTLModel()
        # torch's default broadcast_buffers=True: rank 0's buffers are copied
        # to every rank at each forward
        ddp = nn.parallel.DistributedDataParallel(model,
                                                  broadcast_buffers=True)
        model.htl.update(0)
        values = (1.0, 2.0, 3.0) if rank == 0 else (10.0, 20.0, 30.0)
        for v in values:
            ddp(torch.ones(1, 1), {k: torch.tensor(v)
                                   for k in TERMS}).backward()
        model.htl.update(1)
        torch.save(model.htl.history[0].clone(),
                   os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        torch_dist.destroy_process_group()


@pytest.mark.timeout(200)
def test_htl_statistics_survive_ddp_buffer_broadcast():
    with tempfile.TemporaryDirectory() as out_dir:
        spawn_ranks(_ddp_wrapper_worker, out_dir)
        hist = [torch.load(os.path.join(out_dir, f'rank{r}.pth'))
                for r in range(2)]
    # global mean of 1, 2, 3, 10, 20, 30
    for h in hist:
        torch.testing.assert_close(
            h, torch.full((len(TERMS), ), 11.0, dtype=torch.float64))


# ------------------------------------------------------------------ hook
class _Head(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.htl = HierarchicalTaskLearning(stat_epochs=S, max_epoch=T)


class _Distiller(nn.Module):

    def __init__(self):
        super().__init__()
        self.student = nn.Module()
        self.student.bbox_head = _Head()
        self.teacher = nn.Module()
        self.teacher.bbox_head = _Head()


def _runner(model, epoch):
    runner = MagicMock()
    runner.model = model
    runner.epoch = epoch
    return runner


def test_htl_hook_updates_student_skips_teacher():
    model = _Distiller()
    student = model.student.bbox_head.htl
    teacher = model.teacher.bbox_head.htl
    hook = HTLHook()
    ref = HierarchicalTaskLearning(stat_epochs=S, max_epoch=T)
    for e in range(S + 3):
        runner = _runner(model, e)
        hook.before_train_epoch(runner)
        ref.update(e)
        for m in (student, teacher, ref):
            feed_epoch(m, e)
    assert torch.equal(student.weights, ref.weights)
    assert torch.equal(student.history, ref.history)
    assert float(student.weight('depth')) > 0
    # the teacher's module was never updated
    assert int(teacher.num_history) == 0
    assert float(teacher.weight('depth')) == 0.0
    assert teacher.counts.sum() > 0  # statistics kept, never consumed
    # the new weights are logged per term
    names = {c.args[0] for c in
             runner.message_hub.update_scalar.call_args_list}
    assert names == {f'train/htl_{k}' for k in TERMS}
    runner.logger.info.assert_called_once()


def test_htl_hook_plain_detector():
    model = nn.Module()
    model.bbox_head = _Head()
    hook = HTLHook()
    for e in range(2):
        hook.before_train_epoch(_runner(model, e))
        feed_epoch(model.bbox_head.htl, e)
    assert int(model.bbox_head.htl.num_history) == 1


# ------------------------------------------------------------- schedule
def _optimizer(lr):
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def test_cosine_warmup_lr():
    lr, warm, start = 1e-3, 5, 1e-5
    opt = _optimizer(lr)
    sched = CosineWarmupLR(opt, warmup_steps=warm, start_lr=start, begin=0,
                           end=warm + 1, by_epoch=True)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]['lr'])
        opt.step()
        sched.step()
    for e, got in enumerate(lrs):
        if e < warm:
            factor = (1 - math.cos(math.pi * e / warm)) / 2
            want = start + (lr - start) * factor
        else:
            want = lr
        assert got == pytest.approx(want, rel=1e-9), e
    assert lrs[0] == pytest.approx(start)
    with pytest.raises(ValueError):
        CosineWarmupLR(_optimizer(lr), warmup_steps=0)


def test_cosine_warmup_with_multistep_decays_at_global_epoch():
    lr, warm, start, mile = 2e-3, 2, 1e-5, 6
    opt = _optimizer(lr)
    scheds = [
        CosineWarmupLR(opt, warmup_steps=warm, start_lr=start, begin=0,
                       end=warm + 1, by_epoch=True),
        MultiStepLR(opt, milestones=[mile], gamma=0.1, begin=0, end=12,
                    by_epoch=True)
    ]
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]['lr'])
        opt.step()
        for s in scheds:
            s.step()
    want = [start + (lr - start) * (1 - math.cos(math.pi * e / warm)) / 2
            for e in range(warm)]
    want += [lr] * (mile - warm) + [lr * 0.1] * (12 - mile)
    assert lrs == pytest.approx(want, rel=1e-9)


def test_cosine_warmup_converts_to_iterations():
    """``convert_to_iter_based`` raises the lr every iteration of the first
    epoch (not once per epoch), and a cosine from epoch 1 takes over at the
    base lr."""
    from mmengine.registry import PARAM_SCHEDULERS
    lr, start, epoch_len, epochs = 1e-3, 1e-5, 4, 4
    opt = _optimizer(lr)
    common = dict(optimizer=opt, epoch_length=epoch_len)
    scheds = [
        PARAM_SCHEDULERS.build(
            dict(type='CosineWarmupLR', warmup_steps=1, start_lr=start,
                 begin=0, end=2, by_epoch=True, convert_to_iter_based=True),
            default_args=common),
        PARAM_SCHEDULERS.build(
            dict(type='CosineAnnealingLR', eta_min=0.0, begin=1, end=epochs,
                 T_max=epochs - 1, by_epoch=True,
                 convert_to_iter_based=True),
            default_args=common)
    ]
    assert (scheds[0].begin, scheds[0].end) == (0, epoch_len + 1)
    lrs = []
    for _ in range(epochs * epoch_len):
        lrs.append(opt.param_groups[0]['lr'])
        opt.step()
        for s in scheds:
            s.step()
    warm = [start + (lr - start) * (1 - math.cos(math.pi * i / epoch_len)) / 2
            for i in range(epoch_len)]
    t_max = (epochs - 1) * epoch_len
    cos = [lr * (1 + math.cos(math.pi * i / t_max)) / 2
           for i in range(t_max)]
    assert lrs == pytest.approx(warm + cos, rel=1e-9, abs=1e-12)
    # every iteration of the warm-up has its own lr
    assert len(set(lrs[:epoch_len])) == epoch_len
    with pytest.raises(ValueError, match='epoch-based'):
        CosineWarmupLR.build_iter_from_epoch(
            opt, warmup_steps=1, by_epoch=False, epoch_length=4)
