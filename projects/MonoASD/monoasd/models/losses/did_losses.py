# Copyright (c) MonoASD contributors. All rights reserved.
"""Losses of DID-M3D that mmdet does not provide (design D3)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from torch import Tensor

from ..utils.float32 import float32_region

#: The reference writes sqrt(2) as 1.4142.
SQRT2 = math.sqrt(2.0)


def laplacian_aleatoric_loss(pred: Tensor, target: Tensor,
                             log_variance: Tensor) -> Tensor:
    """Elementwise Laplacian aleatoric uncertainty loss.

    ``sqrt(2) * exp(-u / 2) * |x - t| + u / 2`` with ``u`` a log-variance.

    Args:
        pred (Tensor): Predictions, any shape.
        target (Tensor): Targets, same shape.
        log_variance (Tensor): Log-variances ``u``, same shape.

    Returns:
        Tensor: Elementwise loss, same shape.
    """
    return SQRT2 * torch.exp(-0.5 * log_variance) * \
        (pred - target).abs() + 0.5 * log_variance


@MODELS.register_module()
class LaplacianAleatoricLoss(nn.Module):
    """Mean Laplacian aleatoric loss over the selected elements.

    An empty selection gives 0 (with a graph) instead of the reference's NaN
    (corrected quirk Q16).

    Args:
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    @float32_region
    def forward(self,
                pred: Tensor,
                target: Tensor,
                log_variance: Tensor,
                mask: Tensor = None) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): Predictions (N, ...).
            target (Tensor): Targets (N, ...).
            log_variance (Tensor): Log-variances (N, ...).
            mask (Tensor, optional): Boolean selection (N, ...).

        Returns:
            Tensor: Scalar loss.
        """
        if mask is not None:
            pred, target, log_variance = pred[mask], target[mask], \
                log_variance[mask]
        if pred.numel() == 0:
            return (pred.sum() + log_variance.sum()) * 0.0
        loss = laplacian_aleatoric_loss(pred, target, log_variance).mean()
        return self.loss_weight * loss


@MODELS.register_module()
class HeadingBinLoss(nn.Module):
    """Multi-bin heading loss: CE over bins + L1 on the GT bin's residual.

    Args:
        num_bins (int): Number of heading bins. Defaults to 12.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def __init__(self, num_bins: int = 12, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.num_bins = num_bins
        self.loss_weight = loss_weight

    @float32_region
    def forward(self, pred: Tensor, target_bin: Tensor,
                target_res: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): (N, 2 * num_bins): bin logits then residuals.
            target_bin (Tensor): (N,) long.
            target_res (Tensor): (N,) residuals in radians.

        Returns:
            Tensor: Scalar loss.
        """
        if pred.shape[0] == 0:
            return pred.sum() * 0.0
        logits = pred[:, :self.num_bins]
        res = pred[:, self.num_bins:].gather(1, target_bin.view(-1, 1))[:, 0]
        loss = F.cross_entropy(logits, target_bin) + \
            F.l1_loss(res, target_res)
        return self.loss_weight * loss
