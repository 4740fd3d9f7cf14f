# Copyright (c) MonoASD contributors. All rights reserved.
from typing import Tuple

from mmdet3d.models.backbones.dla import DLANet
from mmdet3d.registry import MODELS


@MODELS.register_module()
class WidthDLANet(DLANet):
    """mmdet3d's ``DLANet`` with every level's channels scaled.

    The same levels, blocks and trees as ``DLANet`` of the given depth,
    with ``channels[i] * widen_factor`` channels (rounded, at least
    ``min_channels``), as mmdet's ``widen_factor`` does for CSPDarknet.
    ``widen_factor=1.0`` builds exactly ``DLANet``. A narrower network
    trains several times faster on a CPU (0.5 halves every level: about a
    quarter of the convolutions' FLOPs); its weights do not match
    ImageNet-pretrained DLA checkpoints, so use it with random init.

    Args:
        widen_factor (float): Scale of every level's channels. Defaults
            to 1.0.
        min_channels (int): Lower bound of a scaled level. Defaults to 8.
        **kwargs: ``DLANet``'s arguments (``depth``, ``in_channels``,
            ``norm_cfg``, ``init_cfg``, ...).
    """

    def __init__(self,
                 widen_factor: float = 1.0,
                 min_channels: int = 8,
                 **kwargs) -> None:
        depth = kwargs.get('depth')
        if depth not in DLANet.arch_settings:
            raise KeyError(f'invalid depth {depth} for DLA, expected one '
                           f'of {sorted(DLANet.arch_settings)}')
        if widen_factor <= 0:
            raise ValueError(f'widen_factor must be > 0, got {widen_factor}')
        block, levels, channels = DLANet.arch_settings[depth]
        # an instance attribute shadows the class table that
        # DLANet.__init__ reads; the class table is left untouched
        self.arch_settings = {
            depth: (block, levels,
                    self.scaled_channels(channels, widen_factor,
                                         min_channels))
        }
        super().__init__(**kwargs)

    @staticmethod
    def scaled_channels(channels: Tuple[int, ...], widen_factor: float,
                        min_channels: int = 8) -> Tuple[int, ...]:
        """``channels`` scaled by ``widen_factor`` (rounded), each at least
        ``min_channels``."""
        return tuple(
            max(min_channels, int(round(c * widen_factor))) for c in channels)
