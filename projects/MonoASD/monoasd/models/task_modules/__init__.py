# Copyright (c) MonoASD contributors. All rights reserved.
from .did_m3d_coder import (DIDM3DCoder, decode_heading, encode_heading,
                            wrap_angle)

__all__ = ['DIDM3DCoder', 'encode_heading', 'decode_heading', 'wrap_angle']
