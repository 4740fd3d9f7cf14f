# Copyright (c) MonoASD contributors. All rights reserved.
from .finite_loss import FiniteLossMixin
from .htl import DID_PREREQUISITES, HierarchicalTaskLearning

__all__ = ['HierarchicalTaskLearning', 'DID_PREREQUISITES', 'FiniteLossMixin']
