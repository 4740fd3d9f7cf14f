# Copyright (c) MonoASD contributors. All rights reserved.
"""Hook that drives Hierarchical Task Learning once per epoch."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmdet3d.registry import HOOKS

from ...models.utils import HierarchicalTaskLearning


@HOOKS.register_module()
class HTLHook(Hook):
    """Update every trainable :class:`HierarchicalTaskLearning` module at the
    start of each training epoch and log the new weights.

    The per-epoch loss means are reduced across ranks inside
    :meth:`HierarchicalTaskLearning.update`; all state is in module buffers
    (saved in checkpoints), so resuming continues the same weighting.
    Modules under a ``teacher`` attribute (a distiller's frozen teacher)
    are skipped.
    """
    priority = 'NORMAL'

    def before_train_epoch(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        for name, module in model.named_modules():
            if not isinstance(module, HierarchicalTaskLearning):
                continue
            if name.startswith('teacher'):
                continue
            weights = module.update(runner.epoch)
            for term, w in weights.items():
                runner.message_hub.update_scalar(f'train/htl_{term}', w)
            text = ', '.join(f'{k}={v:.4f}' for k, v in weights.items())
            runner.logger.info(f'HTL weights ({name}) at epoch '
                               f'{runner.epoch + 1}: {text}')
