# Copyright (c) MonoASD contributors. All rights reserved.
"""Packing of the dense depth map beside the image."""
import numpy as np
import torch
from mmdet3d.datasets.transforms import Pack3DDetInputs
from mmdet3d.registry import TRANSFORMS

#: Meta keys MonoASD adds to mmdet3d's defaults.
MONO_META_KEYS = ('aug_scale', 'depth_path', 'trans_mat_down_ratio')


@TRANSFORMS.register_module()
class PackMonoDepthInputs(Pack3DDetInputs):
    """:class:`Pack3DDetInputs` that also packs ``depth_map`` as an input.

    ``results['depth_map']`` (H, W) metres becomes ``inputs['depth_map']``
    of shape (1, H, W) float32, next to ``inputs['img']``. The meta keys
    default to mmdet3d's plus ``aug_scale`` and ``depth_path``.

    Args:
        keys (tuple): Keys to pack, as in :class:`Pack3DDetInputs`;
            ``depth_map`` is allowed.
        meta_keys (tuple, optional): Meta keys; ``None`` means mmdet3d's
            defaults plus :data:`MONO_META_KEYS`.
    """
    INPUTS_KEYS = ['points', 'img', 'depth_map']

    def __init__(self, keys: tuple, meta_keys: tuple = None) -> None:
        if meta_keys is None:
            super().__init__(keys=keys)
            meta_keys = tuple(self.meta_keys) + MONO_META_KEYS
        super().__init__(keys=keys, meta_keys=meta_keys)

    def pack_single_results(self, results: dict) -> dict:
        """Pack one sample; see :class:`Pack3DDetInputs`."""
        depth = results.get('depth_map')
        if isinstance(depth, np.ndarray):
            depth = np.ascontiguousarray(depth, dtype=np.float32)
            results['depth_map'] = torch.from_numpy(depth)[None]
        return super().pack_single_results(results)
