# Copyright (c) MonoASD contributors. All rights reserved.
from .did_m3d_head import KITTI_MEAN_SIZES, DIDM3DHead
from .distillable_head import DistillableHeadMixin

__all__ = ['DIDM3DHead', 'DistillableHeadMixin', 'KITTI_MEAN_SIZES']
