# Copyright (c) MonoASD contributors. All rights reserved.
from .distill_warmup_hook import DistillWarmupHook
from .htl_hook import HTLHook
from .modality_meta_hook import ModalityMetaHook, model_input_key
from .precise_bn_hook import PreciseBNHook, update_bn_stats
from .rng_state_hook import RNGStateHook, get_rng_state, set_rng_state

__all__ = [
    'DistillWarmupHook',
    'HTLHook',
    'ModalityMetaHook',
    'model_input_key',
    'PreciseBNHook',
    'update_bn_stats',
    'RNGStateHook',
    'get_rng_state',
    'set_rng_state'
]
