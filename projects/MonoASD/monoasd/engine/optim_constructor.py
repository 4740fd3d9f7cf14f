# Copyright (c) MonoASD contributors. All rights reserved.
"""Optimizer constructor that leaves frozen modules out quietly."""
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmdet3d.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor, skipping wholly frozen sub-modules.

    With a ``paramwise_cfg``, mmengine's constructor logs one warning per
    frozen parameter ("... is skipped since its requires_grad=False"):
    hundreds for a distiller's frozen teacher. Here a sub-module whose
    parameters are all frozen is left out with one info line; everything
    else (param-wise rules, partly frozen modules) is mmengine's behaviour.
    """

    def add_params(self, params, module: nn.Module, prefix: str = '',
                   is_dcn_module=None) -> None:
        """Add the trainable parameters of ``module`` (see mmengine)."""
        own = list(module.parameters())
        if prefix and own and not any(p.requires_grad for p in own):
            print_log(f'optimizer: {prefix} is frozen ({len(own)} '
                      'parameter tensors), left out', 'current')
            return
        super().add_params(params, module, prefix, is_dcn_module)
