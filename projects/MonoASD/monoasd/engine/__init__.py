# Copyright (c) MonoASD contributors. All rights reserved.
from .hooks import *  # noqa: F401,F403
from .schedulers import CosineWarmupLR

__all__ = ['CosineWarmupLR']
