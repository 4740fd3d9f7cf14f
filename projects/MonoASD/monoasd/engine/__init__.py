# Copyright (c) MonoASD contributors. All rights reserved.
from .hooks import (DistillWarmupHook, HTLHook, ModalityMetaHook,
                    model_input_key)
from .optim_constructor import TrainableOptimWrapperConstructor
from .schedulers import CosineWarmupLR

__all__ = [
    'DistillWarmupHook',
    'HTLHook',
    'ModalityMetaHook',
    'model_input_key',
    'CosineWarmupLR',
    'TrainableOptimWrapperConstructor'
]
