# Copyright (c) MonoASD contributors. All rights reserved.
from .htl_hook import HTLHook

__all__ = ['HTLHook']
