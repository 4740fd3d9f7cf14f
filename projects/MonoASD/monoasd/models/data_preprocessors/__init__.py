# Copyright (c) MonoASD contributors. All rights reserved.
from .mono_depth_preprocessor import (REFERENCE_DEPTH_DIVISOR,
                                      MonoDepthDataPreprocessor)

__all__ = ['MonoDepthDataPreprocessor', 'REFERENCE_DEPTH_DIVISOR']
