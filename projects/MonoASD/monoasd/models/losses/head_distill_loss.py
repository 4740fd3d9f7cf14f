# Copyright (c) MonoASD contributors. All rights reserved.
"""Head (response) distillation between two DID-M3D heads (design D5.6)."""
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from torch import Tensor

from ..utils.float32 import float32_region
from ..utils.rank_mean import count_shares


@MODELS.register_module()
class DIDHeadDistillLoss(nn.Module):
    """Response distillation of DID-M3D's 2D maps and ROI outputs.

    Terms (each weighted 1 in the reference):

    - ``offset_2d``/``size_2d``: L1 between student and teacher dense maps
      over the targets' ``response_mask`` (CenterNet Gaussians at the 2D
      box centres, :meth:`DIDM3DCoder.response_mask`);
    - ``offset_3d``/``size_3d``: L1 between ROI outputs;
    - ``depth``: L1 of visual, attribute and instance depth (all 7x7 cells);
    - ``heading``: KL(teacher || student) over the bin logits plus L1 of the
      residuals at the GT bin.

    Args:
        kl_mode (str): ``'batchmean'`` (default; ``log_softmax`` and
            per-sample KL, corrected quirk Q12) or ``'reference'``
            (``log(softmax)`` and ``kl_div(reduction='mean')``, which divides
            by N * bins).
        kl_weight (float, optional): Weight of the KL term. Defaults to
            ``1 / bins`` in 'batchmean' mode, so the magnitude matches the
            reference, and 1 in 'reference' mode.
        loss_weight (float): Weight of every term. Defaults to 1.0.

    The number of heading bins is read from the heads' outputs (2 * bins
    channels) and the mask from the targets, so nothing the head sets
    (bins, stride, Gaussian overlap) is restated here.
    """

    def __init__(self,
                 kl_mode: str = 'batchmean',
                 kl_weight: float = None,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if kl_mode not in ('batchmean', 'reference'):
            raise ValueError(f'kl_mode must be batchmean or reference, got '
                             f'{kl_mode!r}')
        self.kl_mode = kl_mode
        self.kl_weight = kl_weight
        self.loss_weight = loss_weight

    def kl_weight_for(self, num_bins: int) -> float:
        """The KL term's weight for ``num_bins`` heading bins."""
        if self.kl_weight is not None:
            return self.kl_weight
        return 1.0 / num_bins if self.kl_mode == 'batchmean' else 1.0

    def heading_kl(self, student: Tensor, teacher: Tensor) -> Tensor:
        """KL(p_teacher || q_student) over (N, bins) logits."""
        p_t = F.softmax(teacher.detach(), dim=1)
        if self.kl_mode == 'batchmean':
            return F.kl_div(F.log_softmax(student, dim=1), p_t,
                            reduction='batchmean')
        return F.kl_div(torch.log(F.softmax(student, dim=1)), p_t,
                        reduction='mean')

    @float32_region
    def forward(self, student: Dict, teacher: Dict,
                targets: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Compute the terms.

        Args:
            student (dict): Output of ``DIDM3DHead.forward_train``.
            teacher (dict): The teacher's output for the same targets.
            targets (dict): Output of ``DIDM3DHead.get_targets``.

        Returns:
            dict: ``offset_2d``, ``size_2d``, ``offset_3d``, ``size_3d``,
            ``depth``, ``heading`` (weighted scalars).
        """
        s_roi, t_roi = student['rois'], teacher['rois']
        n = targets['labels'].numel()
        bsz, _, h, w = student['offset_2d'].shape
        if 'response_mask' not in targets:
            raise KeyError('head distillation needs targets["response_mask"]: '
                           'build the targets with get_targets(..., '
                           'with_response_mask=True)')
        mask = targets['response_mask']
        if tuple(mask.shape) != (bsz, h, w):
            raise ValueError(
                f'response_mask of shape {tuple(mask.shape)} does not match '
                f'the dense maps ({bsz}, {h}, {w})')
        bins = s_roi['heading'].shape[1] // 2
        # means over all ranks' objects and cells (models/utils/rank_mean)
        share_n, share_mask = count_shares([n, int(mask.sum())])
        if n == 0:
            zero = sum(v.sum() for v in s_roi.values()) * 0.0 + \
                (student['offset_2d'].sum() + student['size_2d'].sum()) * 0.
            return {k: zero for k in ('offset_2d', 'size_2d', 'offset_3d',
                                      'size_3d', 'depth', 'heading')}
        mask = mask[:, None].expand(bsz, 2, h, w)

        def masked_l1(key):
            s, t = student[key], teacher[key].detach()
            if not mask.any():
                return s.sum() * 0.0
            return (s - t).abs()[mask].mean()

        def l1(key):
            return F.l1_loss(s_roi[key], t_roi[key].detach())

        gt_bin = targets['heading_bin'][:, None]
        s_res = s_roi['heading'][:, bins:].gather(1, gt_bin)
        t_res = t_roi['heading'][:, bins:].gather(1, gt_bin)
        heading = self.kl_weight_for(bins) * self.heading_kl(
            s_roi['heading'][:, :bins],
            t_roi['heading'][:, :bins]) + F.l1_loss(s_res, t_res.detach())
        terms = dict(
            offset_2d=masked_l1('offset_2d'),
            size_2d=masked_l1('size_2d'),
            offset_3d=l1('offset_3d'),
            size_3d=l1('size_3d'),
            depth=l1('vis_depth') + l1('att_depth') + l1('ins_depth'),
            heading=heading)
        if share_n != 1.0 or share_mask != 1.0:
            for k in terms:
                terms[k] = terms[k] * (share_mask if k in (
                    'offset_2d', 'size_2d') else share_n)
        return {k: v * self.loss_weight for k, v in terms.items()}
