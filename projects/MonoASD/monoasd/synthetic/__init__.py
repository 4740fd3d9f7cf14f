# Copyright (c) MonoASD contributors. All rights reserved.
"""Synthetic KITTI-format data (tools/create_synthetic_kitti.py)."""
from .generator import (SYNTHETIC_META, crop_depth, depth_crop_size,
                        generate_frame, make_splits, read_synthetic_meta,
                        write_dataset, write_frame)

__all__ = ['generate_frame', 'write_frame', 'write_dataset', 'make_splits',
           'crop_depth', 'depth_crop_size', 'SYNTHETIC_META',
           'read_synthetic_meta']
