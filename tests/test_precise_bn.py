"""PreciseBNHook / update_bn_stats: BatchNorm statistics recomputed."""
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from monoasd.engine.hooks import PreciseBNHook, update_bn_stats


class ToyModel(BaseModel):
    """A linear layer, a BatchNorm and a frozen ``teacher`` BatchNorm."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.bn = nn.BatchNorm1d(3)
        self.teacher = nn.BatchNorm1d(3)

    def train(self, mode=True):
        super().train(mode)
        self.teacher.eval()  # as AlignSelectDistiller keeps its teacher
        return self

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.bn(self.fc(inputs))
        self.teacher(inputs)
        if mode == 'loss':
            return dict(loss=(out - 1).pow(2).mean() + out.abs().mean())
        return out


class ToyData(Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(8, 3, generator=g) * 3 + 5

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i])


def test_update_bn_stats_averages_batch_statistics():
    model = ToyModel()
    model.eval()
    model.bn.momentum = 0.3
    data = ToyData().x
    batches = [dict(inputs=data[i:i + 2]) for i in range(0, 8, 2)]
    teacher_mean = model.teacher.running_mean.clone()
    assert update_bn_stats(model, iter(batches), 3) == 3
    with torch.no_grad():
        feats = [model.fc(b['inputs']) for b in batches[:3]]
    mean = torch.stack([f.mean(0) for f in feats]).mean(0)
    var = torch.stack([f.var(0, unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(model.bn.running_mean, mean)
    torch.testing.assert_close(model.bn.running_var, var)
    assert model.bn.momentum == 0.3 and not model.training
    torch.testing.assert_close(model.teacher.running_mean, teacher_mean)


def _train(tmp_path, hooks):
    torch.manual_seed(0)
    runner = Runner(
        model=ToyModel(), work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=ToyData(), batch_size=2, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=True, max_epochs=3),
        custom_hooks=hooks, default_hooks=dict(checkpoint=None),
        randomness=dict(seed=0), default_scope='mmdet3d')
    runner.train()
    return runner.model, torch.rand(3)


def test_precise_bn_hook_after_last_epoch(tmp_path):
    plain, rand_plain = _train(tmp_path / 'a', [])
    hooked, rand_hooked = _train(
        tmp_path / 'b', [dict(type='PreciseBNHook', num_iters=4)])
    # training and the random stream are those of the run without the hook
    torch.testing.assert_close(hooked.fc.weight, plain.fc.weight)
    torch.testing.assert_close(rand_hooked, rand_plain)
    # the statistics are the mean of the 4 batches' (one epoch's) statistics
    with torch.no_grad():
        feats = hooked.fc(ToyData().x)
    batch_means = feats.reshape(4, 2, 3).mean(1)
    torch.testing.assert_close(hooked.bn.running_mean, batch_means.mean(0),
                               rtol=1e-5, atol=1e-5)
    assert not torch.allclose(plain.bn.running_mean, hooked.bn.running_mean)
    # the frozen teacher's statistics are left alone
    torch.testing.assert_close(hooked.teacher.running_mean,
                               plain.teacher.running_mean)


def test_precise_bn_hook_rejects_bad_num_iters():
    import pytest
    with pytest.raises(ValueError, match='num_iters'):
        PreciseBNHook(num_iters=0)
