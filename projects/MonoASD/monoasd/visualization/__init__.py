# Copyright (c) MonoASD contributors. All rights reserved.
"""Pictures of predictions (camera view and bird's-eye view)."""
from .drawing import (draw_boxes_on_image, kitti_lines, side_by_side,
                      write_kitti_txt)

__all__ = ['draw_boxes_on_image', 'side_by_side', 'kitti_lines',
           'write_kitti_txt']
