# Copyright (c) MonoASD contributors. All rights reserved.
"""Packing of the dense depth map with the data sample."""
import numpy as np
import torch
from mmdet3d.datasets.transforms import Pack3DDetInputs
from mmdet3d.registry import TRANSFORMS
from mmengine.structures import PixelData

#: Meta keys MonoASD adds to mmdet3d's defaults.
MONO_META_KEYS = ('aug_scale', 'depth_path', 'trans_mat_down_ratio')


@TRANSFORMS.register_module()
class PackMonoDepthInputs(Pack3DDetInputs):
    """:class:`Pack3DDetInputs` that also packs the dense ``depth_map``.

    ``results['depth_map']`` (H, W) metres becomes
    ``data_sample.gt_depth_map``, a :class:`PixelData` whose ``data`` is
    (1, H, W) float32 (the field name of mmseg's depth samples). It is the
    head's depth target and, through :class:`MonoDepthDataPreprocessor`,
    the teacher's input. The meta keys default to mmdet3d's plus
    :data:`MONO_META_KEYS`.

    Args:
        keys (tuple): Keys to pack, as in :class:`Pack3DDetInputs`;
            ``depth_map`` is allowed.
        meta_keys (tuple, optional): Meta keys; ``None`` means mmdet3d's
            defaults plus :data:`MONO_META_KEYS`.
    """

    def __init__(self, keys: tuple, meta_keys: tuple = None) -> None:
        keys = tuple(keys)
        self.pack_depth = 'depth_map' in keys
        keys = tuple(k for k in keys if k != 'depth_map')
        if meta_keys is None:
            super().__init__(keys=keys)
            meta_keys = tuple(self.meta_keys) + MONO_META_KEYS
        super().__init__(keys=keys, meta_keys=meta_keys)

    def pack_single_results(self, results: dict) -> dict:
        """Pack one sample; see :class:`Pack3DDetInputs`."""
        packed = super().pack_single_results(results)
        if self.pack_depth and results.get('depth_map') is not None:
            depth = results['depth_map']
            if isinstance(depth, np.ndarray):
                depth = torch.from_numpy(
                    np.ascontiguousarray(depth, dtype=np.float32))
            if depth.dim() == 2:
                depth = depth[None]
            packed['data_samples'].gt_depth_map = PixelData(data=depth)
        return packed
