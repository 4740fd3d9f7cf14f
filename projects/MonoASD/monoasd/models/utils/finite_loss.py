# Copyright (c) MonoASD contributors. All rights reserved.
"""Stop training on a NaN/Inf loss before it reaches the weights."""
import math
from typing import Dict, Tuple

import torch
from mmengine.logging import MessageHub
from torch import Tensor


class FiniteLossMixin:
    """``parse_losses`` that refuses a non-finite total loss.

    Mixed into MonoASD's models before mmengine's ``BaseModel``. The check
    runs before ``backward`` and the optimizer step, so a NaN never reaches
    the weights nor a checkpoint. The error names every non-finite term and
    the iteration, e.g. ``FloatingPointError: non-finite loss at iteration
    41: loss_depth=nan``.
    """

    def parse_losses(self, losses: Dict[str, Tensor]
                     ) -> Tuple[Tensor, Dict[str, Tensor]]:
        """mmengine's parse_losses, then a finiteness check."""
        loss, log_vars = super().parse_losses(losses)
        if not bool(torch.isfinite(loss.detach()).all()):
            bad = []
            for name, value in log_vars.items():
                v = float(value.detach().float().mean()) if isinstance(
                    value, Tensor) else float(value)
                if name != 'loss' and not math.isfinite(v):
                    bad.append(f'{name}={v}')
            hub = MessageHub.get_current_instance()
            it = hub.get_info('iter')
            where = f'iteration {it + 1}' if it is not None else 'this step'
            raise FloatingPointError(
                f'non-finite loss at {where}: {", ".join(bad) or loss}. '
                'Nothing was written to the weights. Check the inputs of '
                'that batch (depth maps, labels) and the learning rate.')
        return loss, log_vars
