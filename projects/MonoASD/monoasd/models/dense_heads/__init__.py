# Copyright (c) MonoASD contributors. All rights reserved.
from ..utils.gaussian import centernet_gaussian_radius
from .did_m3d_head import (KITTI_MEAN_SIZES, DIDM3DHead, decode_heading,
                           encode_heading)
from .distillable_head import DistillableHeadMixin

__all__ = [
    'DIDM3DHead', 'DistillableHeadMixin', 'KITTI_MEAN_SIZES',
    'centernet_gaussian_radius', 'encode_heading', 'decode_heading'
]
