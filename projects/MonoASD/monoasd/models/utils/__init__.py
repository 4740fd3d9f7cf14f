# Copyright (c) MonoASD contributors. All rights reserved.
from .htl import DID_PREREQUISITES, HierarchicalTaskLearning

__all__ = ['HierarchicalTaskLearning', 'DID_PREREQUISITES']
