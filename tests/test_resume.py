"""Bit-exact resume after SIGKILL (tools/train.py --resume).

The tiny MonoASD distiller (augmentation on: flip, crop, colour jitter)
trains 3 epochs of 2 iterations on 4 frames with a checkpoint per epoch.
A second run is killed with SIGKILL in the middle of epoch 2 (before its
second iteration, after ``epoch_1.pth``) and resumed with ``--resume``.
Its final checkpoint must equal the uninterrupted run's: every tensor of
the state dict (student, HTL buffers, the distiller's adapters, align,
select and fusion modules) and of the optimizer state, and the scheduler.
One thread and no dataloader workers make the CPU arithmetic repeatable;
``RNGStateHook`` restores the generators, without which the resumed run
draws other augmentations (checked too, so the test can fail).
"""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from test_distributed import distiller_options
from test_tools import MONOASD, ROOT

EPOCHS, KILL_AT = 3, 3  # iterations 0-1: epoch 1, 2-3: epoch 2, 4-5: 3


def write_cfg(root: Path, path: Path, kill: bool = False,
              rng_hook: bool = True) -> Path:
    cfg = Config.fromfile(MONOASD)
    opts = {}
    for item in distiller_options(root):
        key, value = item.split('=', 1)
        opts[key] = value
    opts.update({
        'train_cfg.max_epochs': EPOCHS,
        'train_dataloader.batch_size': 2,
        'default_hooks.checkpoint.max_keep_ckpts': -1,
        'default_hooks.checkpoint.save_best': None,
    })
    for key, value in opts.items():
        try:
            value = eval(value, {})  # numbers, None, False
        except Exception:
            pass  # paths
        cfg.merge_from_dict({key: value})
    cfg.randomness = dict(seed=0, deterministic=True)
    hooks = [h for h in cfg.custom_hooks
             if rng_hook or h['type'] != 'RNGStateHook']
    if kill:
        cfg.custom_imports = dict(imports=['monoasd', 'kill_hook'],
                                  allow_failed_imports=False)
        hooks.append(dict(type='KillAtIterHook', at=KILL_AT))
    cfg.custom_hooks = hooks
    cfg.dump(str(path))
    return path


def train(cfg: Path, work: Path, resume: bool = False):
    env = dict(os.environ, PYTHONPATH=f'{ROOT}:{ROOT / "tests"}',
               OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    args = [sys.executable, str(ROOT / 'tools' / 'train.py'), str(cfg),
            '--work-dir', str(work)] + (['--resume'] if resume else [])
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)


def final_state(work: Path) -> dict:
    return torch.load(work / f'epoch_{EPOCHS}.pth', map_location='cpu',
                      weights_only=False)


def max_difference(a, b) -> float:
    """Largest |a - b| over nested dicts/lists of tensors and numbers."""
    if isinstance(a, dict):
        assert set(a) == set(b), set(a) ^ set(b)
        return max([max_difference(a[k], b[k]) for k in a] or [0.0])
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        return max([max_difference(x, y) for x, y in zip(a, b)] or [0.0])
    if isinstance(a, torch.Tensor):
        assert a.shape == b.shape and a.dtype == b.dtype
        return (a.double() - b.double()).abs().max().item() \
            if a.numel() else 0.0
    if isinstance(a, (int, float)):
        return abs(a - b)
    assert a == b
    return 0.0


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_sigkill_resume_is_bit_exact(mini_kitti, tmp_path):
    root, _ = mini_kitti
    full = train(write_cfg(root, tmp_path / 'full.py'), tmp_path / 'full')
    assert full.returncode == 0, full.stderr[-3000:]

    work = tmp_path / 'killed'
    killed = train(write_cfg(root, tmp_path / 'kill.py', kill=True), work)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (work / 'epoch_1.pth').is_file()
    assert not (work / 'epoch_2.pth').exists()  # died mid epoch 2
    resumed = train(write_cfg(root, tmp_path / 'resume.py'), work,
                    resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert 'Auto resumed from the latest checkpoint' in log or \
        'resumed epoch: 1' in log, log[-2000:]
    assert 'random generator states restored' in log

    a, b = final_state(tmp_path / 'full'), final_state(work)
    assert a['meta']['iter'] == b['meta']['iter'] == 2 * EPOCHS
    assert len(a['state_dict']) > 500
    diff = {k: max_difference(a[k], b[k])
            for k in ('state_dict', 'optimizer', 'param_schedulers')}
    print('max |uninterrupted - resumed|:', diff)
    assert diff == {k: 0.0 for k in diff}

    # without the hook the resumed epochs draw other augmentations
    work2 = tmp_path / 'killed_no_rng'
    killed = train(write_cfg(root, tmp_path / 'kill2.py', kill=True,
                             rng_hook=False), work2)
    assert killed.returncode == -signal.SIGKILL
    resumed = train(write_cfg(root, tmp_path / 'resume2.py',
                              rng_hook=False), work2, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    c = final_state(work2)
    assert max_difference(a['state_dict'], c['state_dict']) > 1e-6
