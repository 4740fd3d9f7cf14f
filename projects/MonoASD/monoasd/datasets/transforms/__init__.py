# Copyright (c) MonoASD contributors. All rights reserved.
from .color_aug import MonoColorJitter
from .formatting import PackMonoDepthInputs
from .loading import LoadDenseDepth, pad_depth_to_image
from .mono_affine import (MonoAffineAug, flip_camera, project,
                          similarity_matrix)
from .object_filter import KittiObjectFilter, kitti_level

__all__ = [
    'LoadDenseDepth', 'pad_depth_to_image', 'KittiObjectFilter',
    'kitti_level', 'MonoAffineAug', 'similarity_matrix', 'flip_camera',
    'project', 'MonoColorJitter', 'PackMonoDepthInputs'
]
