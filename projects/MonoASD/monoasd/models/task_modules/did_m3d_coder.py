# Copyright (c) MonoASD contributors. All rights reserved.
"""Box encoding, decoding and camera geometry of DID-M3D (docs/design.md).

Frames: the *original* frame is the raw image, the *input* frame is the
network input (``trans_mat`` maps original -> input) and the *feature*
frame is the input frame divided by ``down_ratio``.
"""
import math
from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.task_modules.coders.base_bbox_coder import BaseBBoxCoder
from mmdet.models.utils.gaussian_target import gen_gaussian_target
from mmdet3d.registry import TASK_UTILS
from torch import Tensor

from ..utils.gaussian import centernet_gaussian_radius


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


@TASK_UTILS.register_module()
class DIDM3DCoder(BaseBBoxCoder):
    """Encoder/decoder of DID-M3D's regression targets, as mmdet3d's
    ``SMOKECoder`` is for SMOKE.

    It holds the numbers the head, its targets and head distillation must
    agree on, set once here: the heading bins, the stride of the dense maps
    and the Gaussian overlap of the heatmap and of the response mask.

    Per object (feature frame unless said otherwise): ``offset_2d`` = 2D
    box centre - cell, ``size_2d`` = box size, ``offset_3d`` = projected 3D
    centre - cell, ``depth`` = z, ``size_3d`` = (h, w, l) - class mean,
    ``heading`` = multi-bin encoding of the observation angle ``alpha``
    (from the yaw and the original-frame 2D box centre). Decoding maps the
    points back through the exact inverse of ``trans_mat`` and solves
    ``P @ [X, Y, Z, 1]`` for known ``Z`` (exact for a P2 with a
    translation column).

    Args:
        num_heading_bins (int): Heading bins. Defaults to 12.
        down_ratio (int): Stride of the dense maps. Defaults to 4.
        min_overlap (float): CenterNet Gaussian radius IoU. Defaults to 0.7.
    """
    encode_size = 7

    def __init__(self,
                 num_heading_bins: int = 12,
                 down_ratio: int = 4,
                 min_overlap: float = 0.7) -> None:
        super().__init__()
        if num_heading_bins < 1 or down_ratio < 1:
            raise ValueError('num_heading_bins and down_ratio must be >= 1')
        self.num_heading_bins = int(num_heading_bins)
        self.down_ratio = int(down_ratio)
        self.min_overlap = float(min_overlap)

    # ------------------------------------------------------------ geometry
    @staticmethod
    def batch_geometry(batch_data_samples: Sequence,
                       device: torch.device) -> Tuple[Tensor, Tensor]:
        """Per-sample ``trans_mat`` (B, 3, 3) and 3x4 ``cam2img`` (B, 3, 4)
        from the samples' meta keys (errors name the frame)."""
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

    def to_original(self, u: Tensor, v: Tensor,
                    trans: Tensor) -> Tuple[Tensor, Tensor]:
        """Feature-frame points to original-frame pixels (exact inverse
        affine, corrected quirk Q13). ``trans`` is (N, 3, 3) per point."""
        inv = torch.linalg.inv(trans)
        ui, vi = u * self.down_ratio, v * self.down_ratio
        uo = inv[:, 0, 0] * ui + inv[:, 0, 1] * vi + inv[:, 0, 2]
        vo = inv[:, 1, 0] * ui + inv[:, 1, 1] * vi + inv[:, 1, 2]
        return uo, vo

    @staticmethod
    def back_project(u: Tensor, v: Tensor, depth: Tensor,
                     cam: Tensor) -> Tuple[Tensor, Tensor]:
        """Camera X, Y of original-frame pixels at known depth Z: the exact
        inverse of ``P @ [X, Y, Z, 1]`` for a (N, 3, 4) ``cam``."""
        zt = depth + cam[:, 2, 3]
        x = (u * zt - cam[:, 0, 2] * depth - cam[:, 0, 3]) / cam[:, 0, 0]
        y = (v * zt - cam[:, 1, 2] * depth - cam[:, 1, 3]) / cam[:, 1, 1]
        return x, y

    @staticmethod
    def normalized_coords(u: Tensor, v: Tensor,
                          cam: Tensor) -> Tuple[Tensor, Tensor]:
        """Original-frame pixels back-projected at depth 1 (the ROI
        branch's coordinate channels; P2's baseline term included)."""
        fu, fv = cam[:, 0, 0], cam[:, 1, 1]
        bx, by = cam[:, 0, 3] / -fu, cam[:, 1, 3] / -fv
        return (u - cam[:, 0, 2]) / fu + bx, (v - cam[:, 1, 2]) / fv + by

    @staticmethod
    def alpha_to_yaw(alpha: Tensor, u: Tensor, cam: Tensor) -> Tensor:
        """Yaw from the observation angle at original-frame column ``u``."""
        return wrap_angle(alpha + torch.atan2(u - cam[:, 0, 2], cam[:, 0, 0]))

    @staticmethod
    def yaw_to_alpha(yaw: Tensor, u: Tensor, cam: Tensor) -> Tensor:
        """Observation angle of ``yaw`` at original-frame column ``u``."""
        return wrap_angle(yaw - torch.atan2(u - cam[:, 0, 2], cam[:, 0, 0]))

    # -------------------------------------------------------------- masks
    def gaussian_radius(self, width: float, height: float) -> int:
        """Heatmap Gaussian radius of a feature-frame box."""
        return centernet_gaussian_radius(width, height, self.min_overlap)

    def response_mask(self, boxes_2d: Tensor, batch_idx: Tensor,
                      batch_size: int, feat_hw: Tuple[int, int]) -> Tensor:
        """Union of CenterNet Gaussians at the objects' 2D box centres
        (B, H, W) bool: where head distillation compares the dense maps.

        Only valid objects are drawn (corrected quirk Q10: the reference
        also draws the zero boxes of empty slots at pixel (0, 0)).

        Args:
            boxes_2d (Tensor): (N, 4) input-frame 2D boxes.
            batch_idx (Tensor): (N,) sample of each box.
            batch_size (int): B.
            feat_hw (tuple): (H, W) of the dense maps.
        """
        heat = boxes_2d.new_zeros((batch_size, *feat_hw))
        boxes = boxes_2d / self.down_ratio
        for box, b in zip(boxes.tolist(), batch_idx.tolist()):
            radius = self.gaussian_radius(box[2] - box[0], box[3] - box[1])
            cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
            if 0 <= cx < feat_hw[1] and 0 <= cy < feat_hw[0]:
                gen_gaussian_target(heat[b], [cx, cy], radius)
        return heat > 0

    # ---------------------------------------------------- encode / decode
    def encode(self, boxes_2d: Tensor, centers_2d: Tensor, cells: Tensor,
               boxes_3d: Tensor, mean_sizes: Tensor, trans: Tensor,
               cam: Tensor) -> Dict[str, Tensor]:
        """Regression targets of N objects of one image.

        Args:
            boxes_2d (Tensor): (N, 4) feature-frame 2D boxes.
            centers_2d (Tensor): (N, 2) feature-frame projected 3D centres.
            cells (Tensor): (N, 2) integer cells (x, y) of the objects.
            boxes_3d (Tensor): (N, 7) camera boxes (x, y, z, l, h, w, yaw),
                bottom centre, original frame.
            mean_sizes (Tensor): (N, 3) class mean (h, w, l) per object.
            trans (Tensor): (3, 3) ``trans_mat`` of the image.
            cam (Tensor): (3, 4) camera matrix of the image.

        Returns:
            dict: ``offset_2d``, ``size_2d``, ``offset_3d`` (N, 2),
            ``depth`` (N, ), ``size_3d`` (N, 3), ``heading_bin`` (long),
            ``heading_res`` (N, ).
        """
        n = len(cells)
        c2 = (boxes_2d[:, :2] + boxes_2d[:, 2:]) / 2
        u_c, _ = self.to_original(c2[:, 0], c2[:, 1], trans.expand(n, 3, 3))
        alpha = self.yaw_to_alpha(boxes_3d[:, 6], u_c, cam.expand(n, 3, 4))
        hbin, hres = encode_heading(alpha, self.num_heading_bins)
        cells = cells.to(c2)
        return dict(
            offset_2d=c2 - cells,
            size_2d=boxes_2d[:, 2:] - boxes_2d[:, :2],
            offset_3d=centers_2d - cells,
            depth=boxes_3d[:, 2],
            size_3d=boxes_3d[:, [4, 5, 3]] - mean_sizes,
            heading_bin=hbin,
            heading_res=hres)

    def decode(self, cells: Tensor, offset_2d: Tensor, size_2d: Tensor,
               offset_3d: Tensor, size_3d: Tensor, heading: Tensor,
               depth: Tensor, mean_sizes: Tensor, trans: Tensor,
               cam: Tensor) -> Tuple[Tensor, Tensor]:
        """Boxes of N detections from the head's outputs at their cells.

        Args:
            cells (Tensor): (N, 2) cells (x, y).
            offset_2d, size_2d, offset_3d (Tensor): (N, 2) outputs.
            size_3d (Tensor): (N, 3) size residual (h, w, l).
            heading (Tensor): (N, 2 * bins) bin logits and residuals.
            depth (Tensor): (N, ) depth (metres).
            mean_sizes (Tensor): (N, 3) class mean (h, w, l) per detection.
            trans (Tensor): (N, 3, 3) ``trans_mat`` per detection.
            cam (Tensor): (N, 3, 4) camera matrix per detection.

        Returns:
            tuple[Tensor, Tensor]: (N, 7) camera boxes (x, y, z, l, h, w,
            yaw; bottom centre, original frame) and (N, 4) original-frame
            2D boxes.
        """
        cells = cells.to(offset_2d)
        ctr = cells + offset_2d
        u1, v1 = self.to_original(ctr[:, 0] - size_2d[:, 0] / 2,
                                  ctr[:, 1] - size_2d[:, 1] / 2, trans)
        u2, v2 = self.to_original(ctr[:, 0] + size_2d[:, 0] / 2,
                                  ctr[:, 1] + size_2d[:, 1] / 2, trans)
        boxes_2d = torch.stack([u1, v1, u2, v2], dim=1)
        alpha = decode_heading(heading, self.num_heading_bins)
        yaw = self.alpha_to_yaw(alpha, (u1 + u2) / 2, cam)
        hwl = size_3d + mean_sizes
        c3 = cells + offset_3d
        u3, v3 = self.to_original(c3[:, 0], c3[:, 1], trans)
        x, y = self.back_project(u3, v3, depth, cam)
        y = y + hwl[:, 0] / 2  # gravity centre -> bottom centre
        boxes_3d = torch.stack(
            [x, y, depth, hwl[:, 2], hwl[:, 0], hwl[:, 1], yaw], dim=1)
        return boxes_3d, boxes_2d
