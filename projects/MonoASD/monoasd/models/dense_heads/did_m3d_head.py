# Copyright (c) MonoASD contributors. All rights reserved.
"""DID-M3D head: CenterNet 2D heads, ROI 3D heads, targets, losses, decoding.

Frames (docs/design.md): the *original* frame is the raw image, the
*input* frame is the network input (``trans_mat`` maps original -> input) and
the *feature* frame is the input frame divided by ``down_ratio`` (4).
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.ops import RoIAlign
from mmdet.models.utils.gaussian_target import (gen_gaussian_target,
                                                get_local_maximum,
                                                get_topk_from_heatmap)
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from mmdet3d.registry import MODELS
from mmdet3d.structures import CameraInstance3DBoxes
from torch import Tensor

from ..utils.float32 import float32_region
from ..utils.gaussian import centernet_gaussian_radius
from ..utils.grad_scale import scale_grad
from ..utils.rank_mean import mean_over_ranks, share
from .distillable_head import DistillableHeadMixin

#: KITTI mean object sizes (h, w, l) in metres (DID-M3D constants).
KITTI_MEAN_SIZES = {
    'Pedestrian': (1.76255119, 0.66068622, 0.84422524),
    'Car': (1.52563191462, 1.62856739989, 3.88311640418),
    'Cyclist': (1.73698127, 0.59706367, 1.76282397),
}

#: Names of the DID-M3D loss terms, in logging order.
TERMS = ('heatmap', 'offset_2d', 'size_2d', 'depth', 'offset_3d', 'size_3d',
         'heading')


def encode_heading(alpha: Tensor, num_bins: int = 12) -> Tuple[Tensor,
                                                               Tensor]:
    """Multi-bin heading encoding of observation angles ``alpha``.

    Returns:
        tuple[Tensor, Tensor]: bin index (long) and residual in
        [-pi / num_bins, pi / num_bins).
    """
    two_pi = 2 * math.pi
    step = two_pi / num_bins
    shifted = torch.remainder(torch.remainder(alpha, two_pi) + step / 2,
                              two_pi)
    bins = torch.floor(shifted / step).long().clamp(max=num_bins - 1)
    res = shifted - (bins.to(shifted) * step + step / 2)
    return bins, res


def decode_heading(heading: Tensor, num_bins: int = 12) -> Tensor:
    """Decode (N, 2 * num_bins) heading outputs into ``alpha`` in (-pi, pi].
    """
    bins = heading[:, :num_bins].argmax(dim=1)
    res = heading[:, num_bins:].gather(1, bins[:, None])[:, 0]
    alpha = bins.to(res) * (2 * math.pi / num_bins) + res
    return torch.where(alpha > math.pi, alpha - 2 * math.pi, alpha)


def wrap_angle(angle: Tensor) -> Tensor:
    """Wrap angles to [-pi, pi)."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def _head(in_ch: int, mid: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, mid, 3, padding=1, bias=True),
        nn.ReLU(inplace=True), nn.Conv2d(mid, out_ch, 1, bias=True))


def _roi_head(in_ch: int, mid: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, mid, 3, padding=1, bias=True), nn.BatchNorm2d(mid),
        nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
        nn.Conv2d(mid, out_ch, 1, bias=True))


def _depth_head(in_ch: int, mid: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, mid, 3, padding=1, bias=True),
        nn.LeakyReLU(0.01, inplace=True), nn.Conv2d(mid, 1, 1, bias=True))


@MODELS.register_module()
class DIDM3DHead(DistillableHeadMixin, BaseModule):
    """DID-M3D detection head (design D2.3-D2.5, D1.5-D1.6, D3).

    Args:
        in_channels (int): Channels of the input map (B, C, H/4, W/4).
            Defaults to 64.
        class_names (Sequence[str]): Classes in label order; their KITTI mean
            sizes are used. Defaults to ('Car', ).
        head_conv (int): Hidden channels of every head. Defaults to 256.
        down_ratio (int): Stride of the input map. Defaults to 4.
        roi_size (int): ROI-align output size. Defaults to 7.
        num_heading_bins (int): Heading bins. Defaults to 12.
        min_overlap (float): Gaussian radius IoU. Defaults to 0.7.
        depth_valid_margin (float): Visual-depth cells within +-margin of
            the object depth are valid. Defaults to 3.0 m.
        topk (int): Detections per image at test time. Defaults to 50.
        score_thr (float): Threshold on the heatmap peak. Defaults to 0.2.
        mean_sizes (Sequence, optional): (h, w, l) per class; defaults to the
            KITTI constants of ``class_names``.
        loss_heatmap, loss_offset_2d, loss_size_2d, loss_offset_3d,
        loss_size_3d, loss_heading, loss_depth (dict): Loss configs.
        htl (dict, optional): :class:`HierarchicalTaskLearning` config; None
            disables task weighting.
        reg_2d_init (str): Init of the offset_2d/size_2d heads: ``'did'``
            (both convs N(0, 0.001), the reference) or ``'fast'`` (PyTorch's
            default init for the hidden conv, N(0, 0.001) for the output
            conv), which learns much faster in short CPU schedules.
        depth_prior (float, optional): Initial visual depth in metres (the
            output bias of ``vis_depth`` is set to ``-log(depth_prior)``).
            None (the reference) leaves the Xavier init, whose visual depth
            starts near 1 m: the head then needs thousands of iterations
            just to reach the scale of the scene. A typical object depth
            (20 m for KITTI cars) lets short schedules learn depth. The
            visual depth is ``exp(-raw) * scale_depth`` with ``scale_depth``
            = input height / image height (about 1 at 384x1280, 0.26 for
            the tiny 96-pixel input), so give ``depth / scale_depth``.
        detach_scale_depth (bool): Stop the depth losses' gradient through
            ``scale_depth`` into the predicted 2D box (quirk Q19). The ratio
            is constant unless a tiny box hits its ``clamp(min=1)``, where
            the reference lets the depth loss shrink the 2D box to raise
            the depth; without HTL's warm-up this stalls ``size_2d``.
            Defaults to False (reference).
        min_radius (int): Smallest heatmap Gaussian radius (feature cells).
            The reference uses 0: an object a few cells wide is a single
            positive cell. Defaults to 0.
        roi_grad_scale (float): Factor on the gradient that the ROI branch
            (3D terms) sends into the shared feature map; the ROI heads
            themselves learn at full rate. At random init the depth term's
            gradient on the feature map is about 100x the heatmap's and
            keeps the 2D heads from learning without HTL's long warm-up.
            Defaults to 1.0 (reference).
        train_cfg, test_cfg (dict, optional): Passed by mmdet detectors;
            unused.
        init_cfg (dict, optional): Unused; DID-M3D's init is applied.
    """

    def __init__(self,
                 in_channels: int = 64,
                 class_names: Sequence[str] = ('Car', ),
                 head_conv: int = 256,
                 down_ratio: int = 4,
                 roi_size: int = 7,
                 num_heading_bins: int = 12,
                 min_overlap: float = 0.7,
                 depth_valid_margin: float = 3.0,
                 topk: int = 50,
                 score_thr: float = 0.2,
                 mean_sizes: Optional[Sequence[Sequence[float]]] = None,
                 loss_heatmap: dict = dict(
                     type='mmdet.GaussianFocalLoss', loss_weight=1.0),
                 loss_offset_2d: dict = dict(type='mmdet.L1Loss'),
                 loss_size_2d: dict = dict(type='mmdet.L1Loss'),
                 loss_offset_3d: dict = dict(type='mmdet.L1Loss'),
                 loss_size_3d: dict = dict(type='mmdet.L1Loss'),
                 loss_heading: dict = dict(type='HeadingBinLoss'),
                 loss_depth: dict = dict(type='LaplacianAleatoricLoss'),
                 htl: Optional[dict] = dict(type='HierarchicalTaskLearning'),
                 reg_2d_init: str = 'did',
                 depth_prior: Optional[float] = None,
                 detach_scale_depth: bool = False,
                 min_radius: int = 0,
                 roi_grad_scale: float = 1.0,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        if mean_sizes is None:
            unknown = [c for c in self.class_names
                       if c not in KITTI_MEAN_SIZES]
            if unknown:
                raise KeyError(f'no KITTI mean size for classes {unknown}; '
                               'pass mean_sizes')
            mean_sizes = [KITTI_MEAN_SIZES[c] for c in self.class_names]
        if len(mean_sizes) != self.num_classes:
            raise ValueError('mean_sizes needs one (h, w, l) per class')
        self.register_buffer('mean_sizes',
                             torch.tensor(mean_sizes, dtype=torch.float32))
        self.in_channels = in_channels
        self.down_ratio = down_ratio
        self.roi_size = roi_size
        self.num_heading_bins = num_heading_bins
        self.min_overlap = min_overlap
        self.depth_valid_margin = depth_valid_margin
        self.topk = topk
        self.score_thr = score_thr

        self.heatmap = _head(in_channels, head_conv, self.num_classes)
        self.offset_2d = _head(in_channels, head_conv, 2)
        self.size_2d = _head(in_channels, head_conv, 2)
        roi_ch = in_channels + 2 + self.num_classes
        self.offset_3d = _roi_head(roi_ch, head_conv, 2)
        self.size_3d = _roi_head(roi_ch, head_conv, 3)
        self.heading = _roi_head(roi_ch, head_conv, 2 * num_heading_bins)
        self.vis_depth = _depth_head(roi_ch, head_conv)
        self.att_depth = _depth_head(roi_ch, head_conv)
        self.vis_depth_uncer = _depth_head(roi_ch, head_conv)
        self.att_depth_uncer = _depth_head(roi_ch, head_conv)
        self.roi_align = RoIAlign((roi_size, roi_size), 1.0, 0,
                                  aligned=False)

        self.loss_heatmap = MODELS.build(loss_heatmap)
        self.loss_offset_2d = MODELS.build(loss_offset_2d)
        self.loss_size_2d = MODELS.build(loss_size_2d)
        self.loss_offset_3d = MODELS.build(loss_offset_3d)
        self.loss_size_3d = MODELS.build(loss_size_3d)
        self.loss_heading = MODELS.build(loss_heading)
        self.loss_depth = MODELS.build(loss_depth)
        self.htl = MODELS.build(htl) if htl is not None else None
        if reg_2d_init not in ('did', 'fast'):
            raise ValueError(f"reg_2d_init must be 'did' or 'fast', got "
                             f'{reg_2d_init!r}')
        self.reg_2d_init = reg_2d_init
        if depth_prior is not None and depth_prior <= 0:
            raise ValueError(f'depth_prior must be > 0 m, got {depth_prior}')
        self.depth_prior = depth_prior
        self.detach_scale_depth = detach_scale_depth
        self.min_radius = int(min_radius)
        if roi_grad_scale < 0:
            raise ValueError(
                f'roi_grad_scale must be >= 0, got {roi_grad_scale}')
        self.roi_grad_scale = float(roi_grad_scale)
        self._did_init()

    # ------------------------------------------------------------------ init
    def _did_init(self) -> None:
        self.heatmap[-1].bias.data.fill_(-2.19)
        for head in (self.offset_2d, self.size_2d):
            convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
            if self.reg_2d_init == 'fast':
                convs = convs[-1:]
            for m in convs:
                nn.init.normal_(m.weight, std=0.001)
                nn.init.zeros_(m.bias)
        for head in (self.offset_3d, self.size_3d, self.heading,
                     self.vis_depth, self.att_depth, self.vis_depth_uncer,
                     self.att_depth_uncer):
            for m in head.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
        if self.depth_prior is not None:
            # vis = exp(-raw) * scale: start every visual depth at the prior
            nn.init.constant_(self.vis_depth[-1].bias,
                              -math.log(self.depth_prior))

    def init_weights(self) -> None:
        """DID-M3D's init is applied at construction; keep it."""

    # ------------------------------------------------------------- geometry
    @staticmethod
    def _geometry(batch_data_samples: list,
                  device: torch.device) -> Tuple[Tensor, Tensor]:
        """Per-sample ``trans_mat`` (B, 3, 3) and 3x4 ``cam2img`` (B, 3, 4).
        """
        trans, cams = [], []
        for sample in batch_data_samples:
            meta = sample.metainfo
            for key in ('trans_mat', 'cam2img'):
                if key not in meta:
                    raise KeyError(
                        f'data sample of {meta.get("img_path", "?")} has no '
                        f'"{key}"; put MonoAffineAug in the pipeline and '
                        'pack it as a meta key')
            if meta.get('trans_mat_down_ratio', 1) != 1:
                raise ValueError(
                    'DIDM3DHead needs trans_mat to the input frame: set '
                    'MonoAffineAug(trans_mat_down_ratio=1)')
            trans.append(torch.as_tensor(meta['trans_mat'],
                                         dtype=torch.float32))
            cam = torch.as_tensor(meta['cam2img'], dtype=torch.float32)
            cams.append(cam[:3, :4] if cam.shape[1] >= 4 else F.pad(
                cam[:3], (0, 4 - cam.shape[1])))
        return torch.stack(trans).to(device), torch.stack(cams).to(device)

    def _to_original(self, u: Tensor, v: Tensor, trans: Tensor,
                     ) -> Tuple[Tensor, Tensor]:
        """Map feature-frame points to original-frame pixels (exact inverse
        affine, corrected quirk Q13). ``trans`` is (N, 3, 3) per point."""
        inv = torch.linalg.inv(trans)
        ui, vi = u * self.down_ratio, v * self.down_ratio
        uo = inv[:, 0, 0] * ui + inv[:, 0, 1] * vi + inv[:, 0, 2]
        vo = inv[:, 1, 0] * ui + inv[:, 1, 1] * vi + inv[:, 1, 2]
        return uo, vo

    # -------------------------------------------------------------- forward
    def forward(self, feat: Tensor) -> Dict[str, Tensor]:
        """Dense 2D heads on the stride-4 map ``feat`` (B, C, H, W)."""
        return dict(
            heatmap=self.heatmap(feat),
            offset_2d=self.offset_2d(feat),
            size_2d=self.size_2d(feat))

    def forward_rois(self, feat: Tensor, batch_idx: Tensor, centers: Tensor,
                     labels: Tensor, dense: Dict[str, Tensor], trans: Tensor,
                     cams: Tensor) -> Dict[str, Tensor]:
        """ROI branch at the given stride-4 cells (design D2.4).

        The ROI box is the network's own 2D prediction at each cell
        (quirk Q14, faithful to DID-M3D).

        Args:
            feat (Tensor): (B, C, H, W) stride-4 features.
            batch_idx (Tensor): (N,) sample of each ROI.
            centers (Tensor): (N, 2) integer cells (x, y).
            labels (Tensor): (N,) class of each ROI.
            dense (dict): Output of :meth:`forward`.
            trans (Tensor): (B, 3, 3) ``trans_mat``.
            cams (Tensor): (B, 3, 4) camera matrices (original frame).

        Returns:
            dict: ``offset_3d`` (N, 2), ``size_3d`` (N, 3), ``heading``
            (N, 2 * bins), ``vis_depth``, ``att_depth``, ``ins_depth``,
            ``vis_depth_uncer``, ``att_depth_uncer``, ``ins_depth_uncer``
            (N, 7, 7), ``boxes`` (N, 4) feature-frame ROI boxes.
        """
        w = feat.shape[-1]
        idx = (centers[:, 1] * w + centers[:, 0]).long()
        off = dense['offset_2d'].flatten(2)[batch_idx, :, idx]
        size = dense['size_2d'].flatten(2)[batch_idx, :, idx]
        ctr = centers.to(off) + off
        boxes = torch.cat([ctr - size / 2, ctr + size / 2], dim=1)
        n = boxes.shape[0]
        rois = torch.cat([batch_idx.to(boxes)[:, None], boxes], dim=1)
        # mmcv's CPU RoIAlign has no half kernels: float32 under autocast
        roi_in = scale_grad(feat, self.roi_grad_scale)
        with torch.autocast(device_type=feat.device.type, enabled=False):
            roi_feat = self.roi_align(roi_in.float(), rois.float())

        # coordinate channels: box corners back-projected at depth 1
        t = trans[batch_idx]
        cam = cams[batch_idx]
        u1, v1 = self._to_original(boxes[:, 0], boxes[:, 1], t)
        u2, v2 = self._to_original(boxes[:, 2], boxes[:, 3], t)
        fu, fv = cam[:, 0, 0], cam[:, 1, 1]
        cu, cv = cam[:, 0, 2], cam[:, 1, 2]
        bx, by = cam[:, 0, 3] / -fu, cam[:, 1, 3] / -fv
        x1, x2 = (u1 - cu) / fu + bx, (u2 - cu) / fu + bx
        y1, y2 = (v1 - cv) / fv + by, (v2 - cv) / fv + by
        steps = torch.linspace(0, 1, self.roi_size, device=feat.device)
        xs = x1[:, None] + (x2 - x1)[:, None] * steps  # (N, S)
        ys = y1[:, None] + (y2 - y1)[:, None] * steps
        s = self.roi_size
        coord = torch.stack(
            [xs[:, None, :].expand(n, s, s), ys[:, :, None].expand(n, s, s)],
            dim=1)
        onehot = F.one_hot(labels.long(), self.num_classes).to(roi_feat)
        onehot = onehot[:, :, None, None].expand(n, self.num_classes, s, s)
        x = torch.cat([roi_feat, coord.to(roi_feat), onehot], dim=1)

        # DID-M3D depth composition
        h_feat = (boxes[:, 3] - boxes[:, 1])
        h_orig = v2 - v1
        scale_depth = (h_feat * self.down_ratio).clamp(min=1) / \
            h_orig.clamp(min=1)
        if self.detach_scale_depth:
            scale_depth = scale_depth.detach()
        vis = torch.exp(-self.vis_depth(x)[:, 0]) * scale_depth[:, None,
                                                                None]
        att = self.att_depth(x)[:, 0]
        u_vis = self.vis_depth_uncer(x)[:, 0]
        u_att = self.att_depth_uncer(x)[:, 0]
        return dict(
            offset_3d=self.offset_3d(x).flatten(1),
            size_3d=self.size_3d(x).flatten(1),
            heading=self.heading(x).flatten(1),
            vis_depth=vis,
            att_depth=att,
            ins_depth=vis + att,
            vis_depth_uncer=u_vis,
            att_depth_uncer=u_att,
            ins_depth_uncer=torch.logsumexp(
                torch.stack([u_vis, u_att]), dim=0),
            boxes=boxes)

    def forward_train(self, feat: Tensor,
                      targets: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Dense heads plus the ROI branch at the GT cells.

        Returns:
            dict: Dense outputs of :meth:`forward` and ``rois`` (the output
            of :meth:`forward_rois`).
        """
        out = self.forward(feat)
        out['rois'] = self.forward_rois(feat, targets['batch_idx'],
                                        targets['cells'], targets['labels'],
                                        out, targets['trans'],
                                        targets['cams'])
        return out

    # -------------------------------------------------------------- targets
    @torch.no_grad()
    def get_targets(self, batch_data_samples: list, depth_map: Tensor,
                    feat_hw: Tuple[int, int]) -> Dict[str, Tensor]:
        """Stride-4 targets of design D1.5-D1.6 for a batch.

        Args:
            batch_data_samples (list[Det3DDataSample]): With
                ``gt_instances`` (input-frame ``bboxes``, ``labels``),
                ``gt_instances_3d`` (``bboxes_3d``, ``centers_2d``) and the
                meta keys ``trans_mat`` and ``cam2img``.
            depth_map (Tensor): (B, 1, H_in, W_in) metric depth.
            feat_hw (tuple): Feature size (H, W).

        Returns:
            dict: ``heatmap`` (B, K, H, W) and per-object tensors in
            batch-major order: ``batch_idx``, ``cells`` (N, 2), ``labels``,
            ``offset_2d``, ``size_2d``, ``offset_3d``, ``depth``,
            ``size_3d``, ``heading_bin``, ``heading_res``, ``vis_depth``,
            ``att_depth``, ``depth_mask`` (N, 7, 7), ``boxes_2d`` (N, 4,
            input frame); plus ``trans`` and ``cams``.
        """
        device = depth_map.device
        fh, fw = feat_hw
        trans, cams = self._geometry(batch_data_samples, device)
        heatmap = torch.zeros(len(batch_data_samples), self.num_classes, fh,
                              fw, device=device)
        down_depth = F.interpolate(depth_map, size=(fh, fw), mode='area')
        keys = ('batch_idx', 'cells', 'labels', 'offset_2d', 'size_2d',
                'offset_3d', 'depth', 'size_3d', 'heading_bin',
                'heading_res', 'boxes_2d', 'vis_depth', 'att_depth',
                'depth_mask')
        parts = {k: [] for k in keys}
        for b, sample in enumerate(batch_data_samples):
            boxes_2d = sample.gt_instances.bboxes
            boxes_2d = getattr(boxes_2d, 'tensor', boxes_2d).to(device)
            labels = sample.gt_instances_3d.labels_3d.to(device)
            boxes_3d = sample.gt_instances_3d.bboxes_3d.tensor.to(device)
            centers = sample.gt_instances_3d.centers_2d.to(device)
            if len(labels) == 0:
                continue
            b4 = boxes_2d / self.down_ratio
            c3 = centers / self.down_ratio
            ci = torch.trunc(c3).long()
            valid = (ci[:, 0] >= 0) & (ci[:, 0] < fw) & (ci[:, 1] >= 0) & \
                (ci[:, 1] < fh)
            if not valid.any():
                continue
            b4, c3, ci = b4[valid], c3[valid], ci[valid]
            labels, boxes_3d = labels[valid], boxes_3d[valid]
            boxes_2d = boxes_2d[valid]
            wh = b4[:, 2:] - b4[:, :2]
            for j in range(len(labels)):
                radius = max(self.min_radius, centernet_gaussian_radius(
                    float(wh[j, 0]), float(wh[j, 1]), self.min_overlap))
                gen_gaussian_target(heatmap[b, int(labels[j])],
                                    [int(ci[j, 0]), int(ci[j, 1])], radius)
            c2 = (b4[:, :2] + b4[:, 2:]) / 2
            z = boxes_3d[:, 2]
            hwl = boxes_3d[:, [4, 5, 3]]
            # alpha from the original-frame 2D box centre and the camera
            u_c, _ = self._to_original(
                c2[:, 0], c2[:, 1], trans[b].expand(len(c2), 3, 3))
            cam = cams[b]
            alpha = wrap_angle(boxes_3d[:, 6] -
                               torch.atan2(u_c - cam[0, 2], cam[0, 0]))
            hbin, hres = encode_heading(alpha, self.num_heading_bins)
            # visual / attribute depth targets from the down-sampled map
            rois = torch.cat([b4.new_full((len(b4), 1), b), b4], dim=1)
            roi_depth = self.roi_align(down_depth, rois)[:, 0]
            zz = z[:, None, None]
            ok = (roi_depth > zz - self.depth_valid_margin) & \
                (roi_depth < zz + self.depth_valid_margin) & (roi_depth > 0)
            vis = roi_depth * ok
            parts['batch_idx'].append(torch.full_like(labels, b))
            parts['cells'].append(ci)
            parts['labels'].append(labels)
            parts['offset_2d'].append(c2 - ci)
            parts['size_2d'].append(wh)
            parts['offset_3d'].append(c3 - ci)
            parts['depth'].append(z)
            parts['size_3d'].append(hwl - self.mean_sizes[labels])
            parts['heading_bin'].append(hbin)
            parts['heading_res'].append(hres)
            parts['boxes_2d'].append(boxes_2d)
            parts['vis_depth'].append(vis)
            parts['att_depth'].append(zz - vis)
            parts['depth_mask'].append(ok)
        empty = {
            'batch_idx': (0, ), 'cells': (0, 2), 'labels': (0, ),
            'offset_2d': (0, 2), 'size_2d': (0, 2), 'offset_3d': (0, 2),
            'depth': (0, ), 'size_3d': (0, 3), 'heading_bin': (0, ),
            'heading_res': (0, ), 'boxes_2d': (0, 4),
            'vis_depth': (0, self.roi_size, self.roi_size),
            'att_depth': (0, self.roi_size, self.roi_size),
            'depth_mask': (0, self.roi_size, self.roi_size)
        }
        long_keys = ('batch_idx', 'cells', 'labels', 'heading_bin')
        targets = dict(heatmap=heatmap, trans=trans, cams=cams)
        for k in keys:
            if parts[k]:
                targets[k] = torch.cat(parts[k])
            else:
                dtype = torch.long if k in long_keys else (
                    torch.bool if k == 'depth_mask' else torch.float32)
                targets[k] = torch.zeros(empty[k], dtype=dtype,
                                         device=device)
        return targets

    # --------------------------------------------------------------- losses
    @float32_region
    def loss_by_outputs(self, outputs: Dict[str, Tensor],
                        targets: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """DID-M3D losses (design D3), weighted by HTL when enabled.

        Returns:
            dict: ``loss_<term>`` for every term of :data:`TERMS`.
        """
        heat = outputs['heatmap'].sigmoid().clamp(1e-4, 1 - 1e-4)
        num_pos = int((targets['heatmap'] == 1).sum())
        n = targets['labels'].numel()
        n_mask = int(targets['depth_mask'].sum())
        # means over all ranks' objects, not this rank's (rank_mean.py)
        pos_mean, n_mean, mask_mean = mean_over_ranks([num_pos, n, n_mask])
        share_n, share_mask = share(n, n_mean), share(n_mask, mask_mean)
        raw = dict(heatmap=self.loss_heatmap(
            heat, targets['heatmap'], avg_factor=max(pos_mean, 1.0)))
        rois = outputs['rois']
        if n == 0:
            zero = sum(v.sum() for v in rois.values()) * 0.0 + \
                (outputs['offset_2d'].sum() + outputs['size_2d'].sum()) * 0.0
            for term in TERMS[1:]:
                raw[term] = zero
        else:
            b, cells = targets['batch_idx'], targets['cells']
            idx = cells[:, 1] * heat.shape[-1] + cells[:, 0]
            off2d = outputs['offset_2d'].flatten(2)[b, :, idx]
            size2d = outputs['size_2d'].flatten(2)[b, :, idx]
            raw['offset_2d'] = self.loss_offset_2d(off2d,
                                                   targets['offset_2d'])
            raw['size_2d'] = self.loss_size_2d(size2d, targets['size_2d'])
            mask = targets['depth_mask']
            z = targets['depth'][:, None, None].expand_as(rois['ins_depth'])
            ins = self.loss_depth(rois['ins_depth'], z,
                                  rois['ins_depth_uncer'])
            vis_att = self.loss_depth(
                rois['vis_depth'], targets['vis_depth'],
                rois['vis_depth_uncer'], mask) + self.loss_depth(
                    rois['att_depth'], targets['att_depth'],
                    rois['att_depth_uncer'], mask)
            raw['depth'] = vis_att + ins
            raw['offset_3d'] = self.loss_offset_3d(rois['offset_3d'],
                                                   targets['offset_3d'])
            raw['size_3d'] = self.loss_size_3d(rois['size_3d'],
                                               targets['size_3d'])
            raw['heading'] = self.loss_heading(rois['heading'],
                                               targets['heading_bin'],
                                               targets['heading_res'])
            if share_n != 1.0 or share_mask != 1.0:
                raw['depth'] = vis_att * share_mask + ins * share_n
                for term in TERMS[1:]:
                    if term != 'depth':
                        raw[term] = raw[term] * share_n
        if self.htl is not None and self.training:
            self.htl.accumulate(raw)
        losses = {}
        for term in TERMS:
            w = self.htl.weight(term) if self.htl is not None else 1.0
            losses[f'loss_{term}'] = raw[term] * w
        return losses

    def loss(self, feat: Tensor, batch_data_samples: list,
             depth_map: Tensor) -> Dict[str, Tensor]:
        """Targets, forward and losses for one batch."""
        if depth_map is None:
            raise KeyError('DIDM3DHead.loss needs inputs["depth_map"] for '
                           'its depth targets: add LoadDenseDepth to the '
                           'training pipeline and pack "depth_map"')
        targets = self.get_targets(batch_data_samples, depth_map,
                                   feat.shape[-2:])
        outputs = self.forward_train(feat, targets)
        return self.loss_by_outputs(outputs, targets)

    # ------------------------------------------------------------- decoding
    def predict(self, feat: Tensor,
                batch_data_samples: list) -> Tuple[List[InstanceData],
                                                   List[InstanceData]]:
        """Detect objects; see :meth:`decode`."""
        dense = self.forward(feat)
        return self.decode(feat, dense, batch_data_samples)

    def decode(self, feat: Tensor, dense: Dict[str, Tensor],
               batch_data_samples: list) -> Tuple[List[InstanceData],
                                                  List[InstanceData]]:
        """Decode top-k heatmap peaks into KITTI boxes (design D2.5).

        Returns:
            tuple[list[InstanceData], list[InstanceData]]: 3D results
            (``bboxes_3d`` as :class:`CameraInstance3DBoxes` in the original
            camera frame, ``scores_3d``, ``labels_3d``) and 2D results
            (original-frame ``bboxes``, ``scores``, ``labels``).
        """
        bsz, _, fh, fw = feat.shape
        trans, cams = self._geometry(batch_data_samples, feat.device)
        heat = dense['heatmap'].sigmoid().clamp(1e-4, 1 - 1e-4)
        heat = get_local_maximum(heat, kernel=3)
        k = min(self.topk, heat[0].numel())
        scores, _, clses, ys, xs = get_topk_from_heatmap(heat, k=k)
        batch_idx = torch.arange(bsz, device=feat.device)[:, None].expand(
            bsz, k).reshape(-1)
        cells = torch.stack([xs, ys], dim=-1).reshape(-1, 2).long()
        labels = clses.reshape(-1).long()
        rois = self.forward_rois(feat, batch_idx, cells, labels, dense,
                                 trans, cams)
        idx = cells[:, 1] * fw + cells[:, 0]
        off2d = dense['offset_2d'].flatten(2)[batch_idx, :, idx]
        size2d = dense['size_2d'].flatten(2)[batch_idx, :, idx]

        conf = torch.exp(-torch.exp(0.5 * rois['ins_depth_uncer'])).flatten(1)
        conf_sum = conf.sum(1).clamp(min=torch.finfo(conf.dtype).tiny)
        depth = (rois['ins_depth'].flatten(1) * conf).sum(1) / conf_sum
        depth_conf = (conf**2).sum(1) / conf_sum

        t = trans[batch_idx]
        cam = cams[batch_idx]
        ctr = cells.to(off2d) + off2d
        u1, v1 = self._to_original(ctr[:, 0] - size2d[:, 0] / 2,
                                   ctr[:, 1] - size2d[:, 1] / 2, t)
        u2, v2 = self._to_original(ctr[:, 0] + size2d[:, 0] / 2,
                                   ctr[:, 1] + size2d[:, 1] / 2, t)
        boxes_2d = torch.stack([u1, v1, u2, v2], dim=1)
        alpha = decode_heading(rois['heading'], self.num_heading_bins)
        u_2d = (u1 + u2) / 2
        ry = wrap_angle(alpha + torch.atan2(u_2d - cam[:, 0, 2],
                                            cam[:, 0, 0]))
        hwl = rois['size_3d'] + self.mean_sizes[labels]
        c3 = cells.to(off2d) + rois['offset_3d']
        u3, v3 = self._to_original(c3[:, 0], c3[:, 1], t)
        # exact inverse of P @ [X, Y, Z, 1] for known Z = depth
        zt = depth + cam[:, 2, 3]
        x = (u3 * zt - cam[:, 0, 2] * depth - cam[:, 0, 3]) / cam[:, 0, 0]
        y = (v3 * zt - cam[:, 1, 2] * depth - cam[:, 1, 3]) / cam[:, 1, 1]
        y = y + hwl[:, 0] / 2
        boxes_3d = torch.stack(
            [x, y, depth, hwl[:, 2], hwl[:, 0], hwl[:, 1], ry], dim=1)

        flat_scores = scores.reshape(-1)
        keep = (flat_scores > self.score_thr) & (hwl > 0).all(dim=1) & \
            (depth > 0) & torch.isfinite(boxes_3d).all(dim=1) & \
            torch.isfinite(boxes_2d).all(dim=1)
        final_scores = flat_scores * depth_conf
        results_3d, results_2d = [], []
        for b in range(bsz):
            sel = keep & (batch_idx == b)
            res3d = InstanceData()
            res3d.bboxes_3d = CameraInstance3DBoxes(
                boxes_3d[sel].detach(), box_dim=7, origin=(0.5, 1.0, 0.5))
            res3d.scores_3d = final_scores[sel].detach()
            res3d.labels_3d = labels[sel]
            res2d = InstanceData()
            res2d.bboxes = boxes_2d[sel].detach()
            res2d.scores = final_scores[sel].detach()
            res2d.labels = labels[sel]
            results_3d.append(res3d)
            results_2d.append(res2d)
        return results_3d, results_2d
