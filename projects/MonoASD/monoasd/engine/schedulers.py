# Copyright (c) MonoASD contributors. All rights reserved.
"""Cosine warm-up learning-rate schedule of DID-M3D/MonoASD."""
import math

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
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

    @classmethod
    def build_iter_from_epoch(cls, *args, warmup_steps, begin=0, end=INF,
                              by_epoch=True, epoch_length=None, **kwargs):
        """Build the iteration-based form of an epoch-based config
        (``convert_to_iter_based=True``): the lr then rises every iteration
        over the first ``warmup_steps`` epochs instead of once per epoch.

        ``warmup_steps`` and ``begin`` are scaled by ``epoch_length``; the
        scheduler ends one iteration after the warm-up (``end`` is kept if
        it is earlier), as ``end = begin + T + 1`` does by epoch, so that
        a schedule that starts at the end of the warm-up (a cosine from
        epoch ``T``) takes over from the base lr.
        """
        if not by_epoch:
            raise ValueError('only an epoch-based CosineWarmupLR '
                             '(by_epoch=True) can be converted')
        if not epoch_length or epoch_length <= 0:
            raise ValueError(
                f'epoch_length must be positive, got {epoch_length}')
        begin_iter = int(begin * epoch_length)
        warmup_iters = int(warmup_steps * epoch_length)
        end_iter = begin_iter + warmup_iters + 1
        if end != INF:
            end_iter = min(end_iter, int(end * epoch_length))
        return cls(*args, warmup_steps=warmup_iters, begin=begin_iter,
                   end=end_iter, by_epoch=False, **kwargs)

    def _get_value(self) -> list:
        progress = min(self.last_step, self.warmup_steps) / self.warmup_steps
        factor = (1 - math.cos(math.pi * progress)) / 2
        return [
            self.start_lr + (base - self.start_lr) * factor
            for base in self.base_values
        ]
