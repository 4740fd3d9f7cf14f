"""Runner checkpoints load with ``weights_only=True`` once monoasd is imported.

Covers ``Runner(resume=True)``, ``load_from`` / ``load_checkpoint`` and the
refusal of checkpoints that reference globals outside the allow-list.
"""
import copy
import os
import pickle
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import (CheckpointLoader, _load_checkpoint,
                                        load_checkpoint)
from torch.utils.data import Dataset

import monoasd  # noqa: F401  (applies the safe loader)
from monoasd.utils import (UnsafeCheckpointError, add_checkpoint_safe_globals,
                           apply_safe_checkpoint_loading)
from monoasd.utils import checkpoint as checkpoint_module
from monoasd.utils import load_from_local_safe

MAX_ITERS = 2

# Set by code that must never run while loading a checkpoint.
_EXECUTED = []


class ToyModel(BaseModel):
    """Linear regression on 2 features."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        pred = self.lin(inputs).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((pred - labels)**2).mean())
        if mode == 'predict':
            return [
                dict(pred=p, label=t) for p, t in zip(pred.detach(), labels)
            ]
        return pred


class ToyDataset(Dataset):
    """Eight samples; its metainfo looks like an mmdet3d KITTI dataset's."""

    metainfo = dict(
        classes=('Pedestrian', 'Cyclist', 'Car'),
        palette=[(106, 0, 228), (119, 11, 32), (165, 42, 42)],
        box_type_3d='Camera',
        label_mapping={0: 0, 1: 1, 2: 2, -1: -1})

    def __len__(self):
        return 8

    def __getitem__(self, idx):
        return dict(
            inputs=torch.tensor([float(idx), 1.0]),
            labels=torch.tensor(0.5 * idx))


class ToyMetric(BaseMetric):
    """Negative mean absolute error (puts val scalars into the hub)."""

    default_prefix = 'toy'

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            self.results.append(float(abs(sample['pred'] - sample['label'])))

    def compute_metrics(self, results):
        return dict(neg_mae=-float(np.mean(results)))


class RecordSaveHook(Hook):
    """Keep an in-memory copy of every checkpoint the runner saves."""

    def __init__(self):
        self.saved = []

    def before_save_checkpoint(self, runner, checkpoint):
        self.saved.append(copy.deepcopy(checkpoint))


def _runner(work_dir, **kwargs):
    loader = dict(
        dataset=ToyDataset(),
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_size=2,
        collate_fn=dict(type='default_collate'))
    cfg = dict(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=loader,
        val_dataloader=dict(loader, sampler=dict(type='DefaultSampler',
                                                 shuffle=False)),
        val_evaluator=[ToyMetric()],
        val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=[
            dict(
                type='LinearLR',
                start_factor=0.1,
                by_epoch=False,
                begin=0,
                end=MAX_ITERS),
            dict(type='MultiStepLR', milestones=[1], by_epoch=False),
        ],
        train_cfg=dict(by_epoch=False, max_iters=MAX_ITERS, val_interval=1),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook',
                interval=MAX_ITERS,
                by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        log_level='WARNING',
        default_scope='mmengine',
        experiment_name=f'ckpt_safety_{os.getpid()}_{id(work_dir)}')
    cfg.update(kwargs)
    return Runner(**cfg)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Train MAX_ITERS iterations (validating every iteration).

    Returns:
        tuple: The runner, the path of its last regular checkpoint and an
        in-memory copy of what was written there.
    """
    work_dir = tmp_path_factory.mktemp('ckpt_safety')
    recorder = RecordSaveHook()
    runner = _runner(work_dir, custom_hooks=[recorder])
    runner.train()
    ckpt = work_dir / f'iter_{MAX_ITERS}.pth'
    assert ckpt.is_file()
    assert len(recorder.saved) == 1
    return runner, ckpt, recorder.saved[0]


def test_local_loader_is_registered():
    apply_safe_checkpoint_loading()  # idempotent
    for path in ('/abs/ckpt.pth', 'rel/ckpt.pth', '~/ckpt.pth'):
        assert CheckpointLoader._get_checkpoint_loader(path) \
            is load_from_local_safe
    # torch's own default is not relaxed globally
    assert os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD') is None


def test_plain_torch_load_still_refuses(trained):
    """Without MonoASD's loader the checkpoint needs the allow-list."""
    _, ckpt, _ = trained
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ckpt, weights_only=True)


class SnapshotHook(Hook):
    """Record the runner state right after resuming (before training)."""

    def before_train(self, runner):
        self.iter = runner.iter
        self.model = copy.deepcopy(runner.model.state_dict())
        self.optimizer = copy.deepcopy(
            runner.optim_wrapper.optimizer.state_dict())
        self.schedulers = [s.state_dict() for s in runner.param_schedulers]
        self.hub = copy.deepcopy(runner.message_hub.state_dict())


def test_resume_restores_state(trained, tmp_path):
    _, ckpt, saved = trained
    snap = SnapshotHook()
    runner = _runner(
        tmp_path,
        resume=True,
        load_from=str(ckpt),
        custom_hooks=[snap],
        train_cfg=dict(
            by_epoch=False, max_iters=MAX_ITERS + 1,
            val_interval=MAX_ITERS + 1))
    runner.train()
    assert runner.iter == MAX_ITERS + 1  # training went on

    assert snap.iter == MAX_ITERS
    # model weights
    assert snap.model.keys() == saved['state_dict'].keys()
    for key, value in saved['state_dict'].items():
        torch.testing.assert_close(snap.model[key], value)
    # optimizer: AdamW moments, step count and learning rate
    old_state = saved['optimizer']
    assert snap.optimizer['state'].keys() == old_state['state'].keys()
    for pid, state in old_state['state'].items():
        assert int(state['step']) == MAX_ITERS
        for name in ('step', 'exp_avg', 'exp_avg_sq'):
            torch.testing.assert_close(snap.optimizer['state'][pid][name],
                                       state[name])
    for new_group, old_group in zip(snap.optimizer['param_groups'],
                                    old_state['param_groups']):
        assert new_group['lr'] == pytest.approx(old_group['lr'])
    # schedulers: LinearLR and MultiStepLR (milestones are a Counter)
    assert snap.schedulers == saved['param_schedulers']
    assert snap.schedulers[1]['_global_step'] == MAX_ITERS
    assert isinstance(snap.schedulers[1]['milestones'], Counter)
    # message hub: HistoryBuffers (numpy arrays) and runtime info
    old_scalars = saved['message_hub']['log_scalars']
    new_scalars = snap.hub['log_scalars']
    assert {'train/loss', 'train/lr'} <= set(old_scalars)
    assert any(key.endswith('toy/neg_mae') for key in old_scalars)
    for key, buffer in old_scalars.items():
        for new_arr, old_arr in zip(new_scalars[key].data, buffer.data):
            np.testing.assert_array_equal(new_arr, old_arr)
        assert new_scalars[key].mean() == pytest.approx(buffer.mean())
    old_info = saved['message_hub']['runtime_info']
    # (keys that RuntimeInfoHook does not refresh before training)
    new_info = snap.hub['runtime_info']
    assert new_info['last_ckpt'] == old_info['last_ckpt']
    assert isinstance(new_info['eta'], np.floating)  # a numpy scalar
    assert new_info['eta'] == old_info['eta']


def test_load_checkpoint_load_from(trained):
    old, ckpt, _ = trained
    model = ToyModel()
    checkpoint = load_checkpoint(model, str(ckpt), map_location='cpu')
    assert checkpoint['meta']['iter'] == MAX_ITERS
    assert checkpoint['meta']['dataset_meta']['classes'] == \
        ToyDataset.metainfo['classes']
    for key, value in old.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    # the same file through the functional API with a '~'-free relative path
    cwd = os.getcwd()
    try:
        os.chdir(ckpt.parent)
        assert _load_checkpoint(ckpt.name)['meta']['iter'] == MAX_ITERS
    finally:
        os.chdir(cwd)


class Intruder:
    """A type outside the allow-list; unpickling it would run _mark."""

    def __reduce__(self):
        return (_mark_executed, ('Intruder',))


def _mark_executed(tag):
    _EXECUTED.append(tag)
    return tag


class _OsSystem:
    """Pickles as a call to os.system (posix.system on Linux)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_custom_class_is_refused(tmp_path):
    path = tmp_path / 'intruder.pth'
    torch.save(dict(state_dict=ToyModel().state_dict(), x=Intruder()), path)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint(ToyModel(), str(path))
    message = str(info.value)
    assert str(path) in message
    assert f'{__name__}._mark_executed' in message
    assert 'allow-list' in message
    assert 'add_checkpoint_safe_globals' in message
    assert _EXECUTED == []


def test_os_system_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'os_system.pth'
    torch.save(dict(meta=dict(), payload=_OsSystem(marker)), path)
    with pytest.raises(UnsafeCheckpointError) as info:
        _load_checkpoint(str(path))
    message = str(info.value)
    assert str(path) in message
    assert f'{os.system.__module__}.system' in message
    assert not marker.exists()


def test_getattr_is_restricted(tmp_path):
    """Only HistoryBuffer methods are reachable through builtins.getattr."""
    path = tmp_path / 'getattr.pth'

    class _Getattr:

        def __reduce__(self):
            return (getattr, (np.ndarray, 'tofile'))

    torch.save(dict(x=_Getattr()), path)
    with pytest.raises(UnsafeCheckpointError) as info:
        _load_checkpoint(str(path))
    assert 'tofile' in str(info.value)


def test_add_checkpoint_safe_globals(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_module, '_EXTRA_SAFE_GLOBALS', [])
    path = tmp_path / 'extra.pth'
    torch.save(dict(when=np.datetime64('2024-01-01')), path)
    with pytest.raises(UnsafeCheckpointError):
        _load_checkpoint(str(path))
    dtype_cls = type(np.dtype('datetime64[D]'))
    add_checkpoint_safe_globals(dtype_cls)
    assert _load_checkpoint(str(path))['when'] == np.datetime64('2024-01-01')
    with pytest.raises(TypeError):
        add_checkpoint_safe_globals('numpy.ndarray')
