# Copyright (c) MonoASD contributors. All rights reserved.
from .hooks import HTLHook, ModalityMetaHook, model_input_key
from .optim_constructor import TrainableOptimWrapperConstructor
from .schedulers import CosineWarmupLR

__all__ = ['HTLHook', 'ModalityMetaHook', 'model_input_key',
           'CosineWarmupLR', 'TrainableOptimWrapperConstructor']
