# Copyright (c) MonoASD contributors. All rights reserved.
"""Head (response) distillation between two DID-M3D heads (design D5.6)."""
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.utils.gaussian_target import gen_gaussian_target
from mmdet3d.registry import MODELS
from torch import Tensor

from ..utils.float32 import float32_region
from ..utils.gaussian import centernet_gaussian_radius
from ..utils.rank_mean import count_shares


def head_distill_mask(boxes_2d: Tensor, batch_idx: Tensor, batch_size: int,
                      feat_hw, down_ratio: int = 4,
                      min_overlap: float = 0.7) -> Tensor:
    """Union of CenterNet Gaussians at the valid objects' 2D box centres.

    Only valid objects are drawn (corrected quirk Q10: the reference also
    draws the zero boxes of empty slots at pixel (0, 0)).

    Args:
        boxes_2d (Tensor): (N, 4) input-frame 2D boxes.
        batch_idx (Tensor): (N,) sample of each box.
        batch_size (int): B.
        feat_hw (tuple): (H, W) of the stride-``down_ratio`` maps.

    Returns:
        Tensor: Boolean mask (B, H, W).
    """
    heat = boxes_2d.new_zeros((batch_size, *feat_hw))
    boxes = boxes_2d / down_ratio
    for box, b in zip(boxes.tolist(), batch_idx.tolist()):
        radius = centernet_gaussian_radius(box[2] - box[0], box[3] - box[1],
                                           min_overlap)
        cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
        if 0 <= cx < feat_hw[1] and 0 <= cy < feat_hw[0]:
            gen_gaussian_target(heat[b], [cx, cy], radius)
    return heat > 0


@MODELS.register_module()
class DIDHeadDistillLoss(nn.Module):
    """Response distillation of DID-M3D's 2D maps and ROI outputs.

    Terms (each weighted 1 in the reference):

    - ``offset_2d``/``size_2d``: L1 between student and teacher dense maps
      over the positions of :func:`head_distill_mask`;
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
            ``1 / num_bins`` in 'batchmean' mode, so the magnitude matches
            the reference, and 1 in 'reference' mode.
        num_bins (int): Heading bins. Defaults to 12.
        down_ratio (int): Stride of the dense maps. Defaults to 4.
        loss_weight (float): Weight of every term. Defaults to 1.0.
    """

    def __init__(self,
                 kl_mode: str = 'batchmean',
                 kl_weight: float = None,
                 num_bins: int = 12,
                 down_ratio: int = 4,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if kl_mode not in ('batchmean', 'reference'):
            raise ValueError(f'kl_mode must be batchmean or reference, got '
                             f'{kl_mode!r}')
        self.kl_mode = kl_mode
        if kl_weight is None:
            kl_weight = 1.0 / num_bins if kl_mode == 'batchmean' else 1.0
        self.kl_weight = kl_weight
        self.num_bins = num_bins
        self.down_ratio = down_ratio
        self.loss_weight = loss_weight

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
        mask = head_distill_mask(targets['boxes_2d'], targets['batch_idx'],
                                 bsz, (h, w), self.down_ratio)
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

        bins = targets['heading_bin'][:, None]
        s_res = s_roi['heading'][:, self.num_bins:].gather(1, bins)
        t_res = t_roi['heading'][:, self.num_bins:].gather(1, bins)
        heading = self.kl_weight * self.heading_kl(
            s_roi['heading'][:, :self.num_bins],
            t_roi['heading'][:, :self.num_bins]) + F.l1_loss(
                s_res, t_res.detach())
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
