"""DistillWarmupHook and AlignSelectDistiller.distill_scale: the
distillation terms ramp from 0 to full weight over the first iterations
(README, "Components"; docs/profile_search.md)."""
from unittest.mock import MagicMock

import pytest
import torch
from mmengine.model import BaseModel

from monoasd.engine import DistillWarmupHook

from test_distiller import batch, build, train_losses  # noqa: F401


def _runner(model, it):
    runner = MagicMock()
    runner.model = model
    runner.iter = it
    return runner


def test_factor_by_hand():
    hook = DistillWarmupHook(warmup_iters=8)
    assert [hook.factor(i) for i in (0, 2, 4, 8, 100)] == \
        [0.0, 0.25, 0.5, 1.0, 1.0]
    hook = DistillWarmupHook(warmup_iters=4, start_factor=0.2)
    assert hook.factor(0) == pytest.approx(0.2)
    assert hook.factor(2) == pytest.approx(0.6)
    assert hook.factor(4) == pytest.approx(1.0)


@pytest.mark.parametrize('kwargs', [dict(warmup_iters=0),
                                    dict(warmup_iters=2.5),
                                    dict(warmup_iters=4, start_factor=1.5)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        DistillWarmupHook(**kwargs)


def test_hook_sets_and_logs_the_scale_from_runner_iter():
    model = MagicMock(spec=['distill_scale'])
    hook = DistillWarmupHook(warmup_iters=10)
    # a resumed run at iteration 5 continues the ramp where it was
    runner = _runner(model, 5)
    hook.before_train(runner)
    hook.before_train_iter(runner, batch_idx=0)
    assert model.distill_scale == pytest.approx(0.5)
    runner.message_hub.update_scalar.assert_called_once_with(
        'train/distill_scale', pytest.approx(0.5))


def test_hook_refuses_a_model_without_distillation_terms():
    class Plain(BaseModel):
        def forward(self, *args, **kwargs):
            pass

    with pytest.raises(TypeError, match='Plain.*Remove the hook'):
        DistillWarmupHook(warmup_iters=4).before_train(_runner(Plain(), 0))


def test_distill_scale_multiplies_only_the_distillation_losses(batch):  # noqa: F811,E501
    full = train_losses(build(), batch)
    model = build()
    assert model.distill_scale == 1.0
    model.distill_scale = 0.25
    scaled = train_losses(model, batch)
    assert set(scaled) == set(full)
    for k, v in scaled.items():
        want = full[k] * 0.25 if k.startswith('distill.') else full[k]
        torch.testing.assert_close(v, want, rtol=1e-5, atol=1e-7, msg=k)
    # at 0 the modules trained only by distillation get no gradient,
    # the student still learns from its detection losses
    model = build()
    model.distill_scale = 0.0
    sum(train_losses(model, batch).values()).backward()
    assert all(p.grad is None or not p.grad.any()
               for p in model.aligns.parameters())
    assert model.student.bbox_head.heatmap[-1].weight.grad.abs().sum() > 0
