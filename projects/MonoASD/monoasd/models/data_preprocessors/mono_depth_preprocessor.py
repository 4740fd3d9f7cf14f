# Copyright (c) MonoASD contributors. All rights reserved.
"""Data preprocessor that builds the RGB input and the teacher depth input."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmdet3d.models.data_preprocessors import Det3DDataPreprocessor
from mmdet3d.registry import MODELS
from mmengine.structures import PixelData

#: The reference's net teacher-input divisor: metres / 256 / 80 (quirk Q1).
REFERENCE_DEPTH_DIVISOR = 256.0 * 80.0


@MODELS.register_module()
class MonoDepthDataPreprocessor(Det3DDataPreprocessor):
    """Normalise RGB and stack the dense depth map and the teacher input.

    On top of :class:`Det3DDataPreprocessor` (which produces
    ``inputs['imgs']``), every sample's packed ``gt_depth_map`` (1, H, W,
    metres; :class:`PackMonoDepthInputs`) is zero-padded in place to the
    batch image size, which is what the head's depth targets read
    (``models/utils/depth_map.py``). The teacher's input is
    ``inputs['depth_imgs']`` (B, 3, H, W)::

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
        out = super().simple_process(data, training)
        samples = out.get('data_samples') or []
        with_depth = ['gt_depth_map' in s for s in samples]
        if not any(with_depth):
            return out
        if not all(with_depth):
            raise KeyError('some samples of the batch have no gt_depth_map: '
                           'pack "depth_map" for every sample')
        imgs = out['inputs'].get('imgs')
        depth = self._stack_depth([s.gt_depth_map.data for s in samples],
                                  imgs)
        for s, d in zip(samples, depth):
            s.gt_depth_map = PixelData(data=d)
        out['inputs']['depth_imgs'] = self.teacher_input(depth, samples)
        return out

    def _stack_depth(self, depth_maps, imgs: Optional[torch.Tensor]):
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
