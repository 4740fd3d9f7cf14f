# Copyright (c) MonoASD contributors. All rights reserved.
"""DID-M3D's geometric augmentation: flip, crop/scale/shift and warp."""
from typing import Optional, Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS
from mmdet3d.structures import limit_period


def similarity_matrix(center: np.ndarray, crop_w: float,
                      out_size: Tuple[int, int]) -> np.ndarray:
    """Similarity warp that maps a crop centre to the output centre.

    The scale is uniform, ``s = out_w / crop_w`` (the crop height is not used,
    exactly as in DID-M3D), and there is no rotation.

    Args:
        center (np.ndarray): Crop centre (cx, cy) in image pixels.
        crop_w (float): Crop width in image pixels.
        out_size (tuple[int, int]): Output (width, height).

    Returns:
        np.ndarray: 3x3 float64 matrix from image to output pixels.
    """
    out_w, out_h = out_size
    s = out_w / crop_w
    return np.array([[s, 0.0, out_w / 2.0 - s * center[0]],
                     [0.0, s, out_h / 2.0 - s * center[1]],
                     [0.0, 0.0, 1.0]])


def flip_camera(cam2img: np.ndarray, img_w: int) -> np.ndarray:
    """Camera matrix of a horizontally flipped image.

    With the 3D flip ``x -> -x`` and the pixel flip ``u -> W - 1 - u``,
    ``P' = F_img @ P @ F_3d`` exactly: ``cu' = W - 1 - cu`` and
    ``P'[0, 3] = (W - 1) * P[2, 3] - P[0, 3]``, so flipped 3D points project
    to flipped pixels (DID-M3D refits the same matrix by SVD).

    Args:
        cam2img (np.ndarray): 3x4 projection matrix.
        img_w (int): Image width in pixels.

    Returns:
        np.ndarray: 3x4 projection matrix of the flipped view.
    """
    f_img = np.array([[-1.0, 0.0, img_w - 1.0], [0.0, 1.0, 0.0],
                      [0.0, 0.0, 1.0]])
    f_3d = np.diag([-1.0, 1.0, 1.0, 1.0])
    return f_img @ cam2img @ f_3d


def project(points: np.ndarray, cam2img: np.ndarray) -> np.ndarray:
    """Project (N, 3) camera points with a 3x4 matrix to (N, 2) pixels."""
    homo = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    uvw = homo @ cam2img.T
    return uvw[:, :2] / uvw[:, 2:3]


def to_4x4(cam2img) -> np.ndarray:
    """Pad a 3x3 or 3x4 camera matrix to 4x4 (float64)."""
    mat = np.asarray(cam2img, dtype=np.float64)
    out = np.eye(4)
    out[:mat.shape[0], :mat.shape[1]] = mat
    return out


@TRANSFORMS.register_module()
class MonoAffineAug(BaseTransform):
    """Warp image, depth map and labels to the network input (design D1.3).

    Training draws, in this order: a horizontal flip with ``flip_prob``; a
    random crop with ``crop_prob`` of scale ``clip(1 + scale_std * N(0, 1),
    *scale_range)`` and centre shift ``clip(shift_std * N(0, 1), -shift_max,
    shift_max)`` of the image size. The crop is warped to ``out_size`` by a
    similarity (:func:`similarity_matrix`). In test mode only the warp of the
    whole image is applied. Image and depth map share the warp, so they stay
    pixel-aligned; labels are transformed consistently:

    - ``gt_bboxes`` corners are mapped (no clipping, as DID-M3D);
    - ``gt_bboxes_3d`` are flipped (``x -> -x``, ``ry -> pi - ry`` wrapped);
    - ``cam2img`` becomes the flipped original-frame camera;
    - ``centers_2d`` = projection of each box's gravity centre with
      ``trans_mat @ cam2img`` (input-frame pixels); ``depths`` = box z.

    Added keys: ``trans_mat`` (3x3, original -> input frame), ``aug_scale``
    (crop width / image width), ``flip``, ``ori_cam2img``.

    Args:
        out_size (tuple[int, int]): Network input (width, height).
            Defaults to (1280, 384).
        flip_prob (float): Flip probability in training. Defaults to 0.5.
        crop_prob (float): Crop probability in training. Defaults to 0.5.
        scale_std (float): Std of the random scale. Defaults to 0.4.
        scale_range (tuple[float, float]): Clip range of the scale.
            Defaults to (0.6, 1.4).
        shift_std (float): Std of the relative centre shift. Defaults to 0.1.
        shift_max (float): Clip of the relative shift. Defaults to 0.2.
        test_mode (bool): No random augmentation. Defaults to False.
        trans_mat_down_ratio (int): Store ``trans_mat`` to the input frame
            divided by this ratio. 1 (default) is what :class:`DIDM3DHead`
            expects; mmdet3d's SMOKE head expects the output frame (4).
    """

    def __init__(self,
                 out_size: Tuple[int, int] = (1280, 384),
                 flip_prob: float = 0.5,
                 crop_prob: float = 0.5,
                 scale_std: float = 0.4,
                 scale_range: Tuple[float, float] = (0.6, 1.4),
                 shift_std: float = 0.1,
                 shift_max: float = 0.2,
                 test_mode: bool = False,
                 trans_mat_down_ratio: int = 1) -> None:
        self.trans_mat_down_ratio = int(trans_mat_down_ratio)
        self.out_size = tuple(int(v) for v in out_size)
        self.flip_prob = flip_prob
        self.crop_prob = crop_prob
        self.scale_std = scale_std
        self.scale_range = tuple(scale_range)
        self.shift_std = shift_std
        self.shift_max = shift_max
        self.test_mode = test_mode

    def _draw(self, img_w: int,
              img_h: int) -> Tuple[bool, np.ndarray, float]:
        """Draw flip, crop centre and crop width (global numpy RNG)."""
        center = np.array([img_w / 2.0, img_h / 2.0])
        if self.test_mode:
            return False, center, float(img_w)
        flip = bool(np.random.random() < self.flip_prob)
        crop_w = float(img_w)
        if np.random.random() < self.crop_prob:
            scale = np.clip(1 + self.scale_std * np.random.randn(),
                            *self.scale_range)
            crop_w = img_w * float(scale)
            shift = np.clip(self.shift_std * np.random.randn(2),
                            -self.shift_max, self.shift_max)
            center = center + np.array([img_w, img_h]) * shift
        return flip, center, crop_w

    def _warp(self, arr: np.ndarray, trans: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(
            arr,
            trans[:2],
            self.out_size,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0)

    def transform(self, results: dict) -> Optional[dict]:
        """Apply the augmentation to one sample."""
        img = results['img']
        img_h, img_w = img.shape[:2]
        cam = to_4x4(results['cam2img'])
        flip, center, crop_w = self._draw(img_w, img_h)
        if flip:
            img = np.ascontiguousarray(img[:, ::-1])
            if 'depth_map' in results:
                results['depth_map'] = np.ascontiguousarray(
                    results['depth_map'][:, ::-1])
            cam[:3] = flip_camera(cam[:3], img_w)
            self._flip_labels(results, img_w)
        trans = similarity_matrix(center, crop_w, self.out_size)

        results['img'] = self._warp(img, trans)
        if 'depth_map' in results:
            results['depth_map'] = self._warp(
                results['depth_map'].astype(np.float32), trans)
        if 'gt_bboxes' in results and len(results['gt_bboxes']):
            boxes = np.asarray(results['gt_bboxes'], dtype=np.float64)
            boxes = boxes * trans[[0, 1, 0, 1], [0, 1, 0, 1]] + \
                trans[[0, 1, 0, 1], 2]
            results['gt_bboxes'] = boxes.astype(np.float32)
        if 'gt_bboxes_3d' in results:
            centers = results['gt_bboxes_3d'].gravity_center.numpy()
            results['centers_2d'] = project(
                centers, trans @ cam[:3]).astype(np.float32).reshape(-1, 2)
            results['depths'] = centers[:, 2].astype(np.float32)

        results['ori_cam2img'] = to_4x4(results['cam2img']).tolist()
        results['cam2img'] = cam.tolist()
        down = np.diag([1.0 / self.trans_mat_down_ratio] * 2 + [1.0])
        results['trans_mat'] = (down @ trans).astype(np.float32)
        results['trans_mat_down_ratio'] = self.trans_mat_down_ratio
        results['aug_scale'] = crop_w / img_w
        # whether a random crop/scale/shift was applied (SMOKE reads it)
        results['affine_aug'] = bool(
            crop_w != img_w or center[0] != img_w / 2.0
            or center[1] != img_h / 2.0)
        results['flip'] = flip
        results['img_shape'] = results['img'].shape[:2]
        return results

    @staticmethod
    def _flip_labels(results: dict, img_w: int) -> None:
        if 'gt_bboxes' in results and len(results['gt_bboxes']):
            boxes = np.asarray(results['gt_bboxes'], dtype=np.float32).copy()
            x1 = img_w - 1 - boxes[:, 2]
            boxes[:, 2] = img_w - 1 - boxes[:, 0]
            boxes[:, 0] = x1
            results['gt_bboxes'] = boxes
        if 'gt_bboxes_3d' in results:
            boxes_3d = results['gt_bboxes_3d'].clone()
            boxes_3d.flip('horizontal')
            boxes_3d.tensor[:, 6] = limit_period(
                boxes_3d.tensor[:, 6], offset=0.5, period=2 * np.pi)
            results['gt_bboxes_3d'] = boxes_3d

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(out_size={self.out_size}, '
                f'flip_prob={self.flip_prob}, crop_prob={self.crop_prob}, '
                f'scale_std={self.scale_std}, scale_range={self.scale_range}, '
                f'shift_std={self.shift_std}, shift_max={self.shift_max}, '
                f'test_mode={self.test_mode}, '
                f'trans_mat_down_ratio={self.trans_mat_down_ratio})')


__all__ = ['MonoAffineAug', 'similarity_matrix', 'flip_camera', 'project']
