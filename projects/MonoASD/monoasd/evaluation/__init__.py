# Copyright (c) MonoASD contributors. All rights reserved.
"""Evaluation helpers; importing this package gives KittiMetric a CPU path.

See :mod:`monoasd.evaluation.kitti_cpu_iou` for what is patched and why.
"""
from .box_errors import box_errors, format_box_errors
from .kitti_cpu_iou import (apply_kitti_cpu_iou_patch, kitti_iou_path,
                            rotate_iou_cpu_eval)
from .kitti_mono_metric import (MonoKittiMetric, info_frame_name, r40_ceiling,
                                small_split_warnings)
from .oracle import mode_groups, oracle_from_config, run_oracle

apply_kitti_cpu_iou_patch()

__all__ = [
    'apply_kitti_cpu_iou_patch', 'box_errors', 'format_box_errors',
    'kitti_iou_path', 'rotate_iou_cpu_eval',
    'MonoKittiMetric', 'info_frame_name', 'mode_groups', 'oracle_from_config',
    'run_oracle', 'r40_ceiling', 'small_split_warnings'
]
