# Copyright (c) MonoASD contributors. All rights reserved.
"""Record the model's input modality in every checkpoint's meta."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmdet3d.registry import HOOKS


def model_input_key(model) -> str:
    """Input the deployed network reads: 'imgs' (RGB) or 'depth_imgs'."""
    if is_model_wrapper(model):
        model = model.module
    model = getattr(model, 'student', model)  # a distiller deploys it
    return getattr(model, 'input_key', 'imgs')


@HOOKS.register_module()
class ModalityMetaHook(Hook):
    """Write ``meta['input_key']`` into checkpoints.

    The distiller reads it to refuse an RGB checkpoint given as
    ``teacher_ckpt`` (and a depth checkpoint as ``student_ckpt``).
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Add the input key of the trained model."""
        checkpoint.setdefault('meta', {})['input_key'] = model_input_key(
            runner.model)
