# Copyright (c) MonoASD contributors. All rights reserved.
from .hooks import HTLHook
from .schedulers import CosineWarmupLR

__all__ = ['HTLHook', 'CosineWarmupLR']
