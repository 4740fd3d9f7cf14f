# Copyright (c) MonoASD contributors. All rights reserved.
"""The interface a dense head offers for head (response) distillation."""
from typing import Dict, Sequence, Tuple

from torch import Tensor


class DistillableHeadMixin:
    """A dense head whose losses are a function of explicit targets.

    :class:`AlignSelectDistiller` checks ``isinstance(head,
    DistillableHeadMixin)``: for such a head it builds the targets once,
    runs the student and the teacher head on the same targets (the
    teacher's outputs are what head distillation compares with) and takes
    the student's detection losses from the same outputs. Any other mmdet3d
    dense head is trained through its own ``loss(x, batch_data_samples)``
    and gets feature distillation only.
    """

    def get_targets(self, batch_data_samples: Sequence,
                    feat_size: Tuple[int, int],
                    with_response_mask: bool = False) -> Dict:
        """Training targets of a batch on a feature map of ``feat_size``
        (everything read from the data samples); with
        ``with_response_mask`` also the (B, H, W) ``response_mask`` that
        head distillation compares the dense maps on."""
        raise NotImplementedError

    def forward_train(self, feat: Tensor, targets: Dict) -> Dict:
        """Head outputs at the targets' objects (dense maps and ROIs)."""
        raise NotImplementedError

    def loss_by_feat(self, outputs: Dict, targets: Dict) -> Dict:
        """Detection losses from :meth:`forward_train`'s outputs."""
        raise NotImplementedError
