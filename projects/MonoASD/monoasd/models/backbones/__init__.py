# Copyright (c) MonoASD contributors. All rights reserved.
from .width_dla import WidthDLANet

__all__ = ['WidthDLANet']
