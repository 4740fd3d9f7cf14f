# Copyright (c) MonoASD contributors. All rights reserved.
from .did_m3d_head import (KITTI_MEAN_SIZES, DIDM3DHead,
                           centernet_gaussian_radius, decode_heading,
                           encode_heading)

__all__ = [
    'DIDM3DHead', 'KITTI_MEAN_SIZES', 'centernet_gaussian_radius',
    'encode_heading', 'decode_heading'
]
