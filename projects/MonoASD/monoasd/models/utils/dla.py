# Copyright (c) MonoASD contributors. All rights reserved.
"""Parameters of mmdet3d's DLANet that never reach a loss."""
from typing import List

from mmdet3d.models.backbones.dla import Tree
from torch import nn


def freeze_dead_dla_projections(module: nn.Module) -> List[str]:
    """Stop gradients to the DLA ``project`` convs whose output is unused.

    In DLA-34 (mmdet3d's ``DLANet``, as in CenterNet) a ``Tree`` with
    ``levels > 1`` computes ``identity = project(bottom)`` and hands it to
    ``tree1``, itself a ``Tree``, whose forward overwrites the argument:
    the outer ``project`` (levels 3 and 4 of DLA-34, six tensors) runs but
    its output never reaches the loss. With ``requires_grad=False`` DDP no
    longer needs ``find_unused_parameters=True`` for them; the tensors stay
    in the state dict, so checkpoints and converted weights load as before.

    Args:
        module (nn.Module): Any module; every such Tree inside is handled.

    Returns:
        list[str]: Names of the frozen parameters.
    """
    frozen = []
    for name, m in module.named_modules():
        if isinstance(m, Tree) and m.levels > 1 and m.project is not None:
            for pname, p in m.project.named_parameters():
                p.requires_grad_(False)
                frozen.append(f'{name}.project.{pname}' if name else
                              f'project.{pname}')
    return frozen
