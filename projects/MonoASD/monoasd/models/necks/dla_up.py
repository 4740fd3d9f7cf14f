# Copyright (c) MonoASD contributors. All rights reserved.
"""DID-M3D's non-deformable DLA-Up neck (design D2.2)."""
import math
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmdet3d.models.backbones.dla import dla_build_norm_layer
from mmdet3d.registry import MODELS
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm


def bilinear_fill_(deconv: nn.ConvTranspose2d) -> None:
    """Fill a depthwise transposed conv with bilinear up-sampling weights.

    For factor 2 (kernel 4) the 1-D kernel is [0.25, 0.75, 0.75, 0.25].
    """
    w = deconv.weight.data
    k = w.size(2)
    f = math.ceil(k / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    idx = torch.arange(k, dtype=torch.float64)
    kernel_1d = 1 - torch.abs(idx / f - c)
    kernel = (kernel_1d[:, None] * kernel_1d[None, :]).to(w.dtype)
    w.copy_(kernel.expand_as(w))


def conv_bn_relu(in_ch: int, out_ch: int,
                 norm_cfg: dict = dict(type='BN')) -> nn.Sequential:
    """3x3 conv (no bias) + norm (BN unless ``norm_cfg`` says otherwise,
    built as mmdet3d's DLANet builds its own) + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        dla_build_norm_layer(norm_cfg, out_ch)[1], nn.ReLU(inplace=True))


class IDAUp(nn.Module):
    """Iterative deep aggregation of maps at increasing strides.

    Args:
        in_channels (Sequence[int]): Channels of the inputs, finest first.
        up_factors (Sequence[int]): Up-sampling factor of each input to the
            finest resolution (the first is 1).
        out_channels (int): Output channels.
        norm_cfg (dict): Norm layer config. Defaults to BN.
    """

    def __init__(self, in_channels: Sequence[int],
                 up_factors: Sequence[int], out_channels: int,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        self.projs = nn.ModuleList()
        self.ups = nn.ModuleList()
        self.nodes = nn.ModuleList()
        for i, (ch, f) in enumerate(zip(in_channels, up_factors)):
            if i == 0:
                if ch != out_channels:
                    raise ValueError('the first IDAUp input must already have'
                                     f' {out_channels} channels, got {ch}')
                continue
            self.projs.append(conv_bn_relu(ch, out_channels, norm_cfg))
            f = int(f)
            up = nn.ConvTranspose2d(
                out_channels, out_channels, f * 2, stride=f,
                padding=f // 2, output_padding=0, groups=out_channels,
                bias=False) if f > 1 else nn.Identity()
            self.ups.append(up)
            self.nodes.append(
                conv_bn_relu(out_channels * 2, out_channels, norm_cfg))

    def forward(self, layers: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Fuse ``layers`` (finest first); returns (last, all outputs)."""
        x = layers[0]
        outs = [x]
        for i in range(1, len(layers)):
            y = self.ups[i - 1](self.projs[i - 1](layers[i]))
            x = self.nodes[i - 1](torch.cat([x, y], dim=1))
            outs.append(x)
        return x, outs


@MODELS.register_module()
class DLAUp(BaseModule):
    """DLA-Up neck of DID-M3D, returning the four maps MonoASD distils.

    Input: backbone levels [L2, L3, L4, L5] (channels 64/128/256/512,
    strides 4/8/16/32). Three IDAUps fuse them from coarse to fine.

    Returns a tuple of four maps ``(C3, B1, N0, L5)``, finest first:
    (B, 64, H/4, W/4), (B, 128, H/8, W/8), (B, 256, H/16, W/16) and the raw
    backbone level (B, 512, H/32, W/32). The head reads the first one.

    Args:
        in_channels (Sequence[int]): Channels of [L2, L3, L4, L5].
            Defaults to (64, 128, 256, 512).
        in_indices (Sequence[int]): Which backbone outputs are L2..L5.
            Defaults to (2, 3, 4, 5) (mmdet3d DLANet's full output).
        norm_cfg (dict): Norm layers, as DLANet's ``norm_cfg`` (e.g.
            ``dict(type='GN', num_groups=32)``). Defaults to BN (DID-M3D).
        init_cfg (dict, optional): Initialisation config. Defaults to None,
            i.e. DID-M3D's: conv N(0, sqrt(2 / (k * k * out))), BN (1, 0),
            bilinear deconvolutions.
    """

    def __init__(self,
                 in_channels: Sequence[int] = (64, 128, 256, 512),
                 in_indices: Sequence[int] = (2, 3, 4, 5),
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(in_channels) != 4 or len(in_indices) != 4:
            raise ValueError('DLAUp expects four input levels')
        self.in_indices = tuple(in_indices)
        self.in_channels = tuple(in_channels)
        c2, c3, c4, c5 = in_channels
        self.ida_0 = IDAUp([c4, c5], [1, 2], c4, norm_cfg)
        self.ida_1 = IDAUp([c3, c4, c4], [1, 2, 2], c3, norm_cfg)
        self.ida_2 = IDAUp([c2, c3, c3, c3], [1, 2, 2, 2], c2, norm_cfg)
        self._did_init()

    def _did_init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / n))
            elif isinstance(m, (_BatchNorm, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.ConvTranspose2d):
                bilinear_fill_(m)

    def init_weights(self) -> None:
        """Keep DID-M3D's init unless an explicit ``init_cfg`` is given."""
        if self.init_cfg is not None:
            super().init_weights()

    def forward(self, feats: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Fuse backbone levels; see the class docstring for shapes."""
        l2, l3, l4, l5 = [feats[i] for i in self.in_indices]
        n0, _ = self.ida_0([l4, l5])
        b1, outs_1 = self.ida_1([l3, l4, n0])
        a1 = outs_1[1]
        c3, _ = self.ida_2([l2, l3, a1, b1])
        return c3, b1, n0, l5
