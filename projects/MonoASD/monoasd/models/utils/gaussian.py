# Copyright (c) MonoASD contributors. All rights reserved.
"""Gaussian radius of CenterNet-style heatmap targets."""
import math


def centernet_gaussian_radius(width: float, height: float,
                              min_overlap: float = 0.7) -> int:
    """Gaussian radius as CenterNet/DID-M3D compute it (design D1.5).

    This is CenterNet's variant (each root divided by 2), which differs from
    mmdet's corrected CornerNet formula; DID-M3D's targets use this one.

    Args:
        width (float): Box width (feature pixels).
        height (float): Box height (feature pixels).
        min_overlap (float): Minimum IoU. Defaults to 0.7.

    Returns:
        int: ``max(0, int(min(r1, r2, r3)))``.
    """
    o = min_overlap
    b1 = height + width
    c1 = width * height * (1 - o) / (1 + o)
    r1 = (b1 + math.sqrt(max(b1**2 - 4 * c1, 0.0))) / 2
    b2 = 2 * (height + width)
    c2 = (1 - o) * width * height
    r2 = (b2 + math.sqrt(max(b2**2 - 16 * c2, 0.0))) / 2
    b3 = -2 * o * (height + width)
    c3 = (o - 1) * width * height
    r3 = (b3 + math.sqrt(max(b3**2 - 16 * o * c3, 0.0))) / 2
    return max(0, int(min(r1, r2, r3)))
