# Copyright (c) MonoASD contributors. All rights reserved.
"""Cosine warm-up learning-rate schedule of DID-M3D/MonoASD."""
import math

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import _ParamScheduler
from mmengine.registry import PARAM_SCHEDULERS


@PARAM_SCHEDULERS.register_module()
class CosineWarmupLR(LRSchedulerMixin, _ParamScheduler):
    """Increase the learning rate from ``start_lr`` to the base lr by a cosine.

    ``lr_e = start_lr + (base_lr - start_lr) * (1 - cos(pi * e / T)) / 2``
    for ``e < T`` and ``base_lr`` from ``e = T`` on (the reference's
    CosineWarmupLR over the first ``T`` epochs). Use ``end = begin + T + 1``
    so that the step at ``e = T`` restores the base lr.

    Args:
        optimizer: Wrapped optimizer.
        warmup_steps (int): ``T`` in steps (epochs when ``by_epoch``).
        start_lr (float): Learning rate at step 0. Defaults to 1e-5.
        **kwargs: ``begin``, ``end``, ``by_epoch``, ... of mmengine
            schedulers.
    """

    def __init__(self,
                 optimizer,
                 warmup_steps: int,
                 start_lr: float = 1e-5,
                 **kwargs) -> None:
        if warmup_steps <= 0:
            raise ValueError('warmup_steps must be positive')
        self.warmup_steps = warmup_steps
        self.start_lr = start_lr
        super().__init__(optimizer, **kwargs)

    def _get_value(self) -> list:
        progress = min(self.last_step, self.warmup_steps) / self.warmup_steps
        factor = (1 - math.cos(math.pi * progress)) / 2
        return [
            self.start_lr + (base - self.start_lr) * factor
            for base in self.base_values
        ]
