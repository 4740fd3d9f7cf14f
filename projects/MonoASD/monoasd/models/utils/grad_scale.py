# Copyright (c) MonoASD contributors. All rights reserved.
"""Identity in the forward pass, scaled gradient in the backward pass."""
import torch
from torch import Tensor


class _ScaleGrad(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.scale, None


def scale_grad(x: Tensor, scale: float) -> Tensor:
    """Return ``x`` unchanged; its gradient is multiplied by ``scale``.

    ``scale=1`` returns ``x`` itself and ``scale=0`` is ``x.detach()``.
    Used by :class:`DIDM3DHead` (``roi_grad_scale``, design D2.4) to bound
    how much the ROI branch's losses move the shared feature map.
    """
    scale = float(scale)
    if scale < 0:
        raise ValueError(f'gradient scale must be >= 0, got {scale}')
    if scale == 1.0:
        return x
    if scale == 0.0:
        return x.detach()
    return _ScaleGrad.apply(x, scale)
