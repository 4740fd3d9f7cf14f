# Copyright (c) MonoASD contributors. All rights reserved.
"""Recompute BatchNorm statistics over training batches (precise BN)."""
import itertools

import torch
import torch.nn as nn
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmdet3d.registry import HOOKS

from .rng_state_hook import get_rng_state, set_rng_state


def _batch_norms(model: nn.Module):
    """Trainable BatchNorm layers, skipping a distiller's ``teacher``."""
    return [
        m for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and m.track_running_stats and not name.startswith('teacher')
    ]


@torch.no_grad()
def update_bn_stats(model: nn.Module, batches, num_iters: int) -> int:
    """Set every BatchNorm's running mean/var to the average of its batch
    statistics over ``num_iters`` preprocessed training batches.

    With small batches the exponential moving average that BatchNorm keeps
    lags and differs from the statistics the network was trained with
    (docs/design.md, D3.1). The forward is the detector's
    ``mode='tensor'`` path (backbone, neck and dense heads) in train mode
    without gradients; momenta and train/eval modes are restored.

    Returns:
        int: Number of batches used.
    """
    bns = _batch_norms(model)
    if not bns:
        return 0
    momenta = [m.momentum for m in bns]
    was_training = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average of the batch statistics
    model.train()
    n = 0
    try:
        for data in itertools.islice(batches, num_iters):
            data = model.data_preprocessor(data, True)
            model(**data, mode='tensor')
            n += 1
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was_training)
    if n == 0:
        raise ValueError('update_bn_stats got no batch')
    if get_world_size() > 1:
        for m in bns:
            all_reduce(m.running_mean, op='mean')
            all_reduce(m.running_var, op='mean')
    return n


@HOOKS.register_module()
class PreciseBNHook(Hook):
    """Recompute BatchNorm statistics over ``num_iters`` training batches
    after the last training epoch (and every ``interval`` epochs, if set),
    before validation and the checkpoint of that epoch.

    Measured on the overfit test's teacher (docs/design.md, D3.1): with
    batch 2 the moving averages differ from the training-time statistics
    (mean depth error at the training objects 1.40 m in eval mode, 0.43 m
    in train mode, 0.85 m after this hook), yet the same weights scored
    Car AP3D@0.5 7.00 with the hook against 22.50 without: it is off in
    every config. The random state is saved and restored around the extra
    pass, so training continues as without the hook.

    Args:
        num_iters (int): Training batches to average. Defaults to 50.
        interval (int, optional): Also every ``interval`` epochs. Defaults
            to None (the last epoch only).
    """
    priority = 'ABOVE_NORMAL'  # before CheckpointHook and validation

    def __init__(self, num_iters: int = 50, interval=None) -> None:
        if num_iters < 1:
            raise ValueError(f'num_iters must be >= 1, got {num_iters}')
        self.num_iters = int(num_iters)
        self.interval = interval

    def after_train_epoch(self, runner) -> None:
        last = self.is_last_train_epoch(runner)
        if not last and not (self.interval and self.every_n_epochs(
                runner, self.interval)):
            return
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        state = get_rng_state()
        try:
            loader = runner.train_dataloader
            batches = itertools.chain.from_iterable(
                iter(loader) for _ in range(
                    -(-self.num_iters // max(len(loader), 1))))
            n = update_bn_stats(model, batches, self.num_iters)
        finally:
            set_rng_state(state)
        runner.logger.info(f'PreciseBN: BatchNorm statistics recomputed '
                           f'over {n} training batches')
