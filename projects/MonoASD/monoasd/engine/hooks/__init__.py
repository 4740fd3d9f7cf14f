# Copyright (c) MonoASD contributors. All rights reserved.
from .htl_hook import HTLHook
from .modality_meta_hook import ModalityMetaHook, model_input_key

__all__ = ['HTLHook', 'ModalityMetaHook', 'model_input_key']
