# Copyright (c) MonoASD contributors. All rights reserved.
"""Utilities; importing this package enables safe checkpoint loading."""
from .checkpoint import (UnsafeCheckpointError, add_checkpoint_safe_globals,
                         apply_safe_checkpoint_loading,
                         checkpoint_safe_globals, load_from_local_safe,
                         safe_torch_load, save_checkpoint_atomic)
from .reference_converter import (REFERENCE_CLASSES, ConversionError,
                                  convert_checkpoint_file,
                                  convert_imagenet_dla, convert_reference,
                                  fit_to_model, reference_state_dict)
from .machine import cpu_model, machine_info, machine_line
from .threads import torch_threads_kept

apply_safe_checkpoint_loading()

__all__ = [
    'UnsafeCheckpointError', 'add_checkpoint_safe_globals',
    'apply_safe_checkpoint_loading', 'checkpoint_safe_globals',
    'load_from_local_safe', 'safe_torch_load', 'save_checkpoint_atomic',
    'REFERENCE_CLASSES', 'ConversionError', 'convert_checkpoint_file',
    'convert_imagenet_dla', 'convert_reference', 'fit_to_model',
    'reference_state_dict', 'torch_threads_kept', 'cpu_model',
    'machine_info', 'machine_line'
]
