# Copyright (c) MonoASD contributors. All rights reserved.
"""CenterNet-style colour augmentation used by MonoASD (design D1.3 step 4)."""
from typing import Sequence

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS

#: PCA lighting of ImageNet RGB (CenterNet constants).
EIG_VAL = np.array([0.2141788, 0.01817699, 0.00341571], dtype=np.float32)
EIG_VEC = np.array([[-0.58752847, -0.69563484, 0.41340352],
                    [-0.5832747, 0.00994535, -0.81221408],
                    [-0.56089297, 0.71832671, 0.41158938]],
                   dtype=np.float32)


@TRANSFORMS.register_module()
class MonoColorJitter(BaseTransform):
    """Brightness, contrast, saturation (random order) and PCA lighting.

    Works on the BGR image that mmdet3d loads; the image is converted to RGB
    in [0, 1] internally, jittered as in MonoDistill/MonoASD, and written
    back as float32 BGR in [0, 255] without clipping (the reference does not
    clip), so the data preprocessor's usual mean/std applies unchanged.
    Random numbers come from numpy's global RNG, which mmengine seeds per
    worker (corrected quirk Q15: the reference copies one ``RandomState(123)``
    into every worker).

    Args:
        brightness (float): Brightness var. Defaults to 0.4.
        contrast (float): Contrast var. Defaults to 0.4.
        saturation (float): Saturation var. Defaults to 0.4.
        lighting_std (float): Std of the PCA lighting. Defaults to 0.1.
        gray_bgr_weights (bool): Compute grey with BGR weights on RGB data as
            the reference does (quirk Q15). Defaults to False (RGB2GRAY).
        prob (float): Probability of applying the jitter. Defaults to 1.0.
    """

    def __init__(self,
                 brightness: float = 0.4,
                 contrast: float = 0.4,
                 saturation: float = 0.4,
                 lighting_std: float = 0.1,
                 gray_bgr_weights: bool = False,
                 prob: float = 1.0) -> None:
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.lighting_std = lighting_std
        self.gray_bgr_weights = gray_bgr_weights
        self.prob = prob

    def _gray(self, rgb: np.ndarray) -> np.ndarray:
        code = cv2.COLOR_BGR2GRAY if self.gray_bgr_weights \
            else cv2.COLOR_RGB2GRAY
        return cv2.cvtColor(rgb, code)[..., None]

    def jitter(self, rgb: np.ndarray) -> np.ndarray:
        """Jitter an RGB float32 image in [0, 1] of shape (H, W, 3)."""
        gray = self._gray(rgb)
        ops: Sequence = [self._brightness, self._contrast, self._saturation]
        for idx in np.random.permutation(len(ops)):
            rgb = ops[idx](rgb, gray)
        alpha = np.random.normal(scale=self.lighting_std,
                                 size=(3, )).astype(np.float32)
        return rgb + EIG_VEC @ (EIG_VAL * alpha)

    def _brightness(self, rgb, gray):
        alpha = 1.0 + np.random.uniform(-self.brightness, self.brightness)
        return rgb * np.float32(alpha)

    def _contrast(self, rgb, gray):
        alpha = 1.0 + np.random.uniform(-self.contrast, self.contrast)
        return rgb * np.float32(alpha) + np.float32(
            (1 - alpha) * gray.mean())

    def _saturation(self, rgb, gray):
        alpha = 1.0 + np.random.uniform(-self.saturation, self.saturation)
        return rgb * np.float32(alpha) + np.float32(1 - alpha) * gray

    def transform(self, results: dict) -> dict:
        """Jitter ``results['img']`` (BGR) in place of the original."""
        if np.random.random() >= self.prob:
            return results
        bgr = results['img'].astype(np.float32) / 255.0
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        rgb = self.jitter(rgb)
        results['img'] = np.ascontiguousarray(rgb[..., ::-1] * 255.0,
                                              dtype=np.float32)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(brightness={self.brightness}, '
                f'contrast={self.contrast}, saturation={self.saturation}, '
                f'lighting_std={self.lighting_std}, '
                f'gray_bgr_weights={self.gray_bgr_weights}, '
                f'prob={self.prob})')
