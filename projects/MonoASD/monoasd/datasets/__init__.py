# Copyright (c) MonoASD contributors. All rights reserved.
from .kitti_check import KittiFormatError, check_kitti_root, frame_name
from .kitti_mono_dataset import FrameError, MonoKittiDataset
from .transforms import (KittiObjectFilter, LoadDenseDepth, MonoAffineAug,
                         MonoColorJitter, PackMonoDepthInputs, flip_camera,
                         kitti_level, pad_depth_to_image, project,
                         similarity_matrix)

__all__ = [
    'FrameError', 'MonoKittiDataset', 'KittiFormatError', 'check_kitti_root',
    'frame_name',
    'LoadDenseDepth', 'pad_depth_to_image', 'KittiObjectFilter',
    'kitti_level', 'MonoAffineAug', 'similarity_matrix', 'flip_camera',
    'project', 'MonoColorJitter', 'PackMonoDepthInputs'
]
