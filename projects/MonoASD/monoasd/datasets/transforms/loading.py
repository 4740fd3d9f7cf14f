# Copyright (c) MonoASD contributors. All rights reserved.
"""Loading of the dense depth map that sits beside every KITTI image."""
import os.path as osp

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS

from ..kitti_io import DEPTH_SCALE, read_depth_png


def pad_depth_to_image(depth: np.ndarray, img_hw: tuple,
                       path: str = '<array>',
                       max_pad_ratio: float = 0.1) -> np.ndarray:
    """Pad a crop-sized depth map back to the image size.

    Depth-completion maps are often bottom-anchored and horizontally centred
    crops of the image (e.g. 1216x352 for a 1242x375 image). They are padded
    with edge replication: ``pad_top = H - h``,
    ``pad_left = floor((W - w) / 2)``, ``pad_right = W - pad_left - w`` and no
    bottom padding, so the sky rows repeat the first valid row.

    Args:
        depth (np.ndarray): Depth map of shape (h, w).
        img_hw (tuple): Target image size (H, W).
        path (str): File name used in error messages.
        max_pad_ratio (float): Largest share of the image height or width
            that padding may fill. KITTI's depth-completion crops miss 23
            rows and 26 columns of a 1242x375 image (6-7%); a map that
            would need more padding is not a crop of this image, and
            padding it would invent depth (an error instead).

    Returns:
        np.ndarray: Depth map of shape (H, W).
    """
    h, w = depth.shape[:2]
    img_h, img_w = int(img_hw[0]), int(img_hw[1])
    if h > img_h or w > img_w:
        raise ValueError(
            f'Depth map {path} has size {w}x{h}, larger than its image '
            f'({img_w}x{img_h}); it does not belong to this image.')
    if (h, w) == (img_h, img_w):
        return depth
    if img_h - h > max_pad_ratio * img_h or img_w - w > max_pad_ratio * img_w:
        raise ValueError(
            f'Depth map {path} has size {w}x{h} but its image is '
            f'{img_w}x{img_h}: a depth-completion crop misses at most '
            f'{max_pad_ratio:.0%} of the rows and columns (KITTI: 1216x352 '
            'of 1242x375). Regenerate it with tools/dense_depth.py or raise '
            'LoadDenseDepth(max_pad_ratio=...).')
    pad_top = img_h - h
    pad_left = (img_w - w) // 2
    pad_right = img_w - pad_left - w
    return cv2.copyMakeBorder(depth, pad_top, 0, pad_left, pad_right,
                              cv2.BORDER_REPLICATE)


@TRANSFORMS.register_module()
class LoadDenseDepth(BaseTransform):
    """Load the dense depth map of the current image.

    The path is derived from the image path by replacing the image folder
    (``image_2``) with ``depth_dir``: ``training/image_2/000001.png`` ->
    ``training/depth_dense/000001.png``. The PNG holds uint16 depth in metres
    times ``depth_scale``; 0 means no depth. Crop-sized maps are padded back
    to the image size (see :func:`pad_depth_to_image`).

    Required Keys: ``img_path`` (or ``images['CAM2']['img_path']``),
    ``img_shape``.
    Added Keys: ``depth_map`` (np.float32, (H, W), metres), ``depth_path``.

    Args:
        depth_dir (str): Name of the depth folder beside the image folder.
            Defaults to 'depth_dense'.
        img_dir (str): Name of the image folder. Defaults to 'image_2'.
        depth_scale (float): Stored value per metre. Defaults to 256.
        max_pad_ratio (float): See :func:`pad_depth_to_image`. Defaults to
            0.1.
    """

    def __init__(self,
                 depth_dir: str = 'depth_dense',
                 img_dir: str = 'image_2',
                 depth_scale: float = DEPTH_SCALE,
                 max_pad_ratio: float = 0.1) -> None:
        self.depth_dir = depth_dir
        self.max_pad_ratio = float(max_pad_ratio)
        self.img_dir = img_dir
        self.depth_scale = float(depth_scale)

    def depth_path(self, img_path: str) -> str:
        """Derive the depth-map path of ``img_path``."""
        folder, name = osp.split(img_path)
        parent, leaf = osp.split(folder)
        if leaf != self.img_dir:
            raise ValueError(
                f'Cannot derive the depth map of {img_path}: expected the '
                f'image inside a "{self.img_dir}" folder (set img_dir).')
        stem = osp.splitext(name)[0]
        return osp.join(parent, self.depth_dir, stem + '.png')

    def transform(self, results: dict) -> dict:
        """Load the depth map into ``results['depth_map']``."""
        img_path = results.get('img_path')
        if img_path is None:
            img_path = results['images']['CAM2']['img_path']
        path = self.depth_path(img_path)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'Dense depth map {path} (for image {img_path}) is missing; '
                'create it with tools/dense_depth.py.')
        depth = read_depth_png(path, self.depth_scale)
        img_hw = results['img_shape'][:2] if 'img_shape' in results \
            else results['img'].shape[:2]
        results['depth_map'] = pad_depth_to_image(depth, img_hw, path,
                                                  self.max_pad_ratio)
        results['depth_path'] = path
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(depth_dir={self.depth_dir!r}, '
                f'img_dir={self.img_dir!r}, depth_scale={self.depth_scale})')
