# Copyright (c) MonoASD contributors. All rights reserved.
"""Synthetic KITTI-format data (tools/create_synthetic_kitti.py)."""
from .generator import (crop_depth, depth_crop_size, generate_frame,
                        make_splits, write_dataset, write_frame)

__all__ = ['generate_frame', 'write_frame', 'write_dataset', 'make_splits',
           'crop_depth', 'depth_crop_size']
