# Copyright (c) MonoASD contributors. All rights reserved.
"""Data preprocessor that builds the RGB input and the teacher depth input."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmdet3d.models.data_preprocessors import Det3DDataPreprocessor
from mmdet3d.registry import MODELS

#: The reference's net teacher-input divisor: metres / 256 / 80 (quirk Q1).
REFERENCE_DEPTH_DIVISOR = 256.0 * 80.0


@MODELS.register_module()
class MonoDepthDataPreprocessor(Det3DDataPreprocessor):
    """Normalise RGB and stack the dense depth map and the teacher input.

    On top of :class:`Det3DDataPreprocessor` (which produces
    ``inputs['imgs']``), the packed ``depth_map`` of every sample (1, H, W,
    metres) is padded to the batch image size and stacked into
    ``inputs['depth_map']`` (B, 1, H, W). The teacher's input (design D1.3
    step 5) is ``inputs['depth_imgs']`` (B, 3, H, W)::

        depth_imgs = clip(depth_m, 0, depth_max) * aug_scale / depth_divisor

    replicated to 3 channels, where ``aug_scale`` is the per-sample crop
    scale of :class:`MonoAffineAug`.

    Args:
        depth_divisor (float): Divisor of the teacher input. The default
            20480 (= 256 * 80) reproduces the reference, whose depth is
            divided by 256 twice (quirk Q1); 80 is the corrected form.
        depth_max (float, optional): Clip depth (metres) before scaling.
            Defaults to None (no clipping, as the reference).
        use_aug_scale (bool): Multiply by ``aug_scale``. Defaults to True.
        **kwargs: Arguments of :class:`Det3DDataPreprocessor` (mean, std,
            bgr_to_rgb, pad_size_divisor, ...).
    """

    def __init__(self,
                 depth_divisor: float = REFERENCE_DEPTH_DIVISOR,
                 depth_max: Optional[float] = None,
                 use_aug_scale: bool = True,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if depth_divisor <= 0:
            raise ValueError(f'depth_divisor must be > 0, got {depth_divisor}')
        self.depth_divisor = float(depth_divisor)
        self.depth_max = depth_max
        self.use_aug_scale = use_aug_scale

    def simple_process(self, data: dict, training: bool = False) -> dict:
        """Process RGB as mmdet3d does, then the depth maps."""
        depth_maps = data['inputs'].pop('depth_map', None)
        out = super().simple_process(data, training)
        if depth_maps is None:
            return out
        imgs = out['inputs'].get('imgs')
        depth = self._stack_depth(depth_maps, imgs)
        out['inputs']['depth_map'] = depth
        out['inputs']['depth_imgs'] = self.teacher_input(
            depth, out['data_samples'])
        return out

    def _stack_depth(self, depth_maps, imgs: Optional[torch.Tensor]):
        if isinstance(depth_maps, torch.Tensor):
            depth_maps = list(depth_maps)
        if imgs is not None:
            target_hw = imgs.shape[-2:]
        else:
            target_hw = (max(d.shape[-2] for d in depth_maps),
                         max(d.shape[-1] for d in depth_maps))
        padded = []
        for d in depth_maps:
            d = d.to(self.device).float()
            if d.dim() == 2:
                d = d[None]
            pad_h = target_hw[0] - d.shape[-2]
            pad_w = target_hw[1] - d.shape[-1]
            if pad_h < 0 or pad_w < 0:
                raise ValueError(
                    f'depth map of shape {tuple(d.shape)} is larger than the '
                    f'batch image shape {tuple(target_hw)}')
            padded.append(F.pad(d, (0, pad_w, 0, pad_h), value=0.0))
        return torch.stack(padded)

    def teacher_input(self, depth: torch.Tensor,
                      data_samples: Optional[list]) -> torch.Tensor:
        """Build the 3-channel teacher input from metric depth (B, 1, H, W).
        """
        x = depth
        if self.depth_max is not None:
            x = x.clamp(0, self.depth_max)
        if self.use_aug_scale and data_samples is not None:
            scale = [float(s.metainfo.get('aug_scale', 1.0))
                     for s in data_samples]
            x = x * x.new_tensor(scale).view(-1, 1, 1, 1)
        return (x / self.depth_divisor).expand(-1, 3, -1, -1).contiguous()
