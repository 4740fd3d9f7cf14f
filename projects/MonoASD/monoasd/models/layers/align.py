"""Align module: large-kernel attention and student/teacher cross-alignment.
"""
from typing import Tuple

import torch
from mmdet3d.registry import MODELS
from torch import Tensor, nn


@MODELS.register_module()
class LargeKernelAttention(nn.Module):
    """LSK-style large-kernel attention map, as used by MonoASD's align.

    Two depthwise convolutions in sequence (5x5, then 7x7 with dilation 3;
    receptive field 23) give two context maps. Each is reduced to
    ``dim // 2`` channels by a 1x1 conv, and a 7x7 conv over their
    channel-mean and channel-max maps gives two sigmoid selection weights.
    The weighted sum is projected back to ``dim`` channels. The output is
    the attention map itself: unlike LSKNet there is no final sigmoid and
    no multiplication with the input. Every conv has a bias and PyTorch's
    default init.

    Args:
        dim (int): Channels C of the input and the output (even).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f'LargeKernelAttention needs an even dim, got '
                             f'{dim}.')
        self.dim = dim
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv_spatial = nn.Conv2d(
            dim, dim, 7, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim, dim // 2, 1)
        self.conv2 = nn.Conv2d(dim, dim // 2, 1)
        self.conv_squeeze = nn.Conv2d(2, 2, 7, padding=3)
        self.conv = nn.Conv2d(dim // 2, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Compute the attention map.

        Args:
            x (Tensor): Features, shape (B, C, H, W).

        Returns:
            Tensor: Attention map, shape (B, C, H, W).
        """
        local_ctx = self.conv0(x)
        wide_ctx = self.conv_spatial(local_ctx)
        local_ctx = self.conv1(local_ctx)
        wide_ctx = self.conv2(wide_ctx)
        both = torch.cat([local_ctx, wide_ctx], dim=1)
        channel_max, _ = both.max(dim=1, keepdim=True)
        pooled = torch.cat([both.mean(dim=1, keepdim=True), channel_max], 1)
        select = self.conv_squeeze(pooled).sigmoid()
        attn = local_ctx * select[:, 0:1] + wide_ctx * select[:, 1:2]
        return self.conv(attn)


@MODELS.register_module()
class FeatureAlign(nn.Module):
    """Cross-alignment of student and teacher maps (MonoASD align module).

    Each side has its own :class:`LargeKernelAttention`; each side is
    modulated by the other side's attention::

        A_s = S * LKA_t(T),    A_t = T * LKA_s(S)

    Args:
        dim (int): Channels C of both maps.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.stu_attn = LargeKernelAttention(dim)
        self.tea_attn = LargeKernelAttention(dim)

    def forward(self, student: Tensor,
                teacher: Tensor) -> Tuple[Tensor, Tensor]:
        """Align the two maps.

        Args:
            student (Tensor): Student map S, shape (B, C, H, W).
            teacher (Tensor): Teacher map T, shape (B, C, H, W).

        Returns:
            tuple[Tensor, Tensor]: A_s and A_t, each (B, C, H, W).
        """
        aligned_student = student * self.tea_attn(teacher)
        aligned_teacher = teacher * self.stu_attn(student)
        return aligned_student, aligned_teacher
