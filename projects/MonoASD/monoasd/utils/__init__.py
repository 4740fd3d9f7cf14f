# Copyright (c) MonoASD contributors. All rights reserved.
"""Utilities; importing this package enables safe checkpoint loading."""
from .checkpoint import (UnsafeCheckpointError, add_checkpoint_safe_globals,
                         apply_safe_checkpoint_loading,
                         checkpoint_safe_globals, load_from_local_safe,
                         safe_torch_load)

apply_safe_checkpoint_loading()

__all__ = [
    'UnsafeCheckpointError', 'add_checkpoint_safe_globals',
    'apply_safe_checkpoint_loading', 'checkpoint_safe_globals',
    'load_from_local_safe', 'safe_torch_load'
]
