# Copyright (c) MonoASD contributors. All rights reserved.
"""Hook that ramps the distillation terms up at the start of training."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmdet3d.registry import HOOKS


@HOOKS.register_module()
class DistillWarmupHook(Hook):
    """Scale a distiller's ``distill.*`` losses by a factor that rises
    linearly from ``start_factor`` to 1 over the first ``warmup_iters``
    iterations, then stays at 1.

    A distiller's align / select / fusion modules start from random
    weights, so its feature losses are largest at the first iterations;
    at full weight their gradient swamps the detection losses in the
    student it starts from (docs/profile_search.md). Modules trained only
    by the distillation terms still learn at full speed under AdamW, which
    is invariant to the scale of their gradient. The factor is set before
    every iteration from ``runner.iter``, so a resumed run continues the
    same ramp, and is logged as ``distill_scale``.

    Args:
        warmup_iters (int): Iterations of the ramp (> 0).
        start_factor (float): Factor at iteration 0, in [0, 1].
            Defaults to 0.
    """
    priority = 'NORMAL'

    def __init__(self, warmup_iters: int, start_factor: float = 0.0) -> None:
        if int(warmup_iters) != warmup_iters or warmup_iters <= 0:
            raise ValueError('warmup_iters must be a positive integer, got '
                             f'{warmup_iters!r}')
        if not 0.0 <= start_factor <= 1.0:
            raise ValueError(f'start_factor must be in [0, 1], got '
                             f'{start_factor!r}')
        self.warmup_iters = int(warmup_iters)
        self.start_factor = float(start_factor)

    def factor(self, it: int) -> float:
        """Factor before iteration ``it`` (0-based)."""
        progress = min(it / self.warmup_iters, 1.0)
        return self.start_factor + (1.0 - self.start_factor) * progress

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        if not hasattr(model, 'distill_scale'):
            raise TypeError(
                'DistillWarmupHook scales the distillation losses of a '
                'distiller with a `distill_scale` attribute '
                f'(AlignSelectDistiller); the model is a '
                f'{type(model).__name__}. Remove the hook from custom_hooks.')

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        model.distill_scale = self.factor(runner.iter)
        runner.message_hub.update_scalar('train/distill_scale',
                                         model.distill_scale)
