# Copyright (c) MonoASD contributors. All rights reserved.
from .finite_loss import FiniteLossMixin
from .float32 import float32_region
from .grad_scale import scale_grad
from .htl import DID_PREREQUISITES, HierarchicalTaskLearning

__all__ = ['HierarchicalTaskLearning', 'DID_PREREQUISITES', 'FiniteLossMixin',
           'float32_region', 'scale_grad']
