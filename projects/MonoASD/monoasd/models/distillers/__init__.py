# Copyright (c) MonoASD contributors. All rights reserved.
from .align_select_distiller import AlignSelectDistiller

__all__ = ['AlignSelectDistiller']
