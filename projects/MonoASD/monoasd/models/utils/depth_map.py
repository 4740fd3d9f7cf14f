# Copyright (c) MonoASD contributors. All rights reserved.
"""The dense depth map a batch carries in its data samples."""
import torch


def stack_depth_maps(batch_data_samples) -> torch.Tensor:
    """(B, 1, H, W) metric depth of a batch from each sample's
    ``gt_depth_map`` (padded to one size by
    :class:`MonoDepthDataPreprocessor`).

    Raises:
        KeyError: A sample has no ``gt_depth_map``; names the frame.
    """
    maps = []
    for s in batch_data_samples:
        if 'gt_depth_map' not in s:
            frame = s.metainfo.get('img_path', '?')
            raise KeyError(
                f'sample {frame} has no gt_depth_map, which the depth '
                'targets need: add LoadDenseDepth to the training pipeline '
                'and pack "depth_map" (PackMonoDepthInputs)')
        maps.append(s.gt_depth_map.data)
    return torch.stack(maps)
