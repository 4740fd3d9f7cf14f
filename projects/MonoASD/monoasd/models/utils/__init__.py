# Copyright (c) MonoASD contributors. All rights reserved.
from .depth_map import stack_depth_maps
from .dla import freeze_dead_dla_projections
from .finite_loss import FiniteLossMixin
from .float32 import float32_region
from .gaussian import centernet_gaussian_radius
from .grad_scale import scale_grad
from .htl import DID_PREREQUISITES, HierarchicalTaskLearning
from .rank_mean import count_shares, mean_over_ranks

__all__ = ['HierarchicalTaskLearning', 'DID_PREREQUISITES', 'FiniteLossMixin',
           'float32_region', 'scale_grad', 'count_shares', 'mean_over_ranks',
           'freeze_dead_dla_projections', 'centernet_gaussian_radius',
           'stack_depth_maps']
