"""CPU fallback for the rotated-box overlap used by mmdet3d's KITTI metric.

mmdet3d's :class:`~mmdet3d.evaluation.metrics.KittiMetric` evaluates with
``mmdet3d/evaluation/functional/kitti_utils/eval.py``, whose
``bev_box_overlap`` and ``d3_box_overlap`` obtain rotated BEV overlaps from
``rotate_iou_gpu_eval`` in ``kitti_utils/rotate_iou.py``. That is a numba
CUDA kernel declared with an explicit signature, so numba compiles it while
the module is *imported*; without a CUDA driver (numba 0.68 still ships its
built-in CUDA target) the import raises ``CudaSupportError`` ("CUDA driver
library cannot be found"). ``eval.py`` imports the module lazily inside
those two functions, so the failure surfaces when KittiMetric computes the
BEV/3D APs, and a CPU-only machine cannot evaluate at all.

What is patched, and how (by :func:`apply_kitti_cpu_iou_patch`, which
``import monoasd`` runs once):

* ``eval.py`` does not bind ``rotate_iou_gpu_eval`` at import time; both
  callers run ``from .rotate_iou import rotate_iou_gpu_eval`` on every call.
  Replacing the attribute ``rotate_iou_gpu_eval`` of the module
  ``mmdet3d.evaluation.functional.kitti_utils.rotate_iou`` is therefore
  enough to redirect the metric, and neither ``eval.py`` nor ``KittiMetric``
  is modified.
* If that module cannot be imported (the case above, or numba without a
  CUDA target), a stand-in module of the same name that holds only the CPU
  implementation is put into ``sys.modules`` (and onto its parent package),
  so the relative import in ``eval.py`` resolves to it.
* When ``torch.cuda.is_available()`` and ``numba.cuda.is_available()`` both
  hold and the kernel module imports (compiles), nothing is patched and
  mmdet3d's CUDA kernel runs as before.

The CPU implementation, :func:`rotate_iou_cpu_eval`, has the semantics of
``rotate_iou_gpu_eval(boxes, query_boxes, criterion)``:

* boxes are ``[x, y, w, h, angle]`` rows; a box's corners are its local
  corners ``(+-w/2, +-h/2)`` mapped by ``x' = cos(a) x + sin(a) y + cx``,
  ``y' = -sin(a) x + cos(a) y + cy`` (the kernel's ``rbbox_to_corners``;
  eval.py feeds camera ``[x, z, l, w, ry]``);
* the result has shape ``(N, K)``; entry ``[n, k]`` relates ``boxes[n]``
  to ``query_boxes[k]``;
* ``criterion`` -1 gives the IoU, 0 the intersection over the area of the
  *query* box ``query_boxes[k]``, 1 the intersection over the area of
  ``boxes[n]`` (the kernel calls ``devRotateIoUEval(query_box, box)``, so
  its "area1" is the query box), and any other value (eval.py's
  ``d3_box_overlap`` passes 2) the raw intersection area, which
  ``d3_box_overlap_kernel`` then multiplies by the height overlap;
* box areas are ``w * h``, as in the kernel.

The intersection is computed exactly (convex polygon clipping) in float64,
whereas the CUDA kernel works in float32, so the two agree to float32
precision and the CPU result is the more accurate one.
"""
import importlib
import logging
import math
import sys
import types
from typing import Optional, Tuple

import numba
import numpy as np

ROTATE_IOU_MODULE = 'mmdet3d.evaluation.functional.kitti_utils.rotate_iou'

# Which implementation serves ``rotate_iou_gpu_eval``: None until
# :func:`apply_kitti_cpu_iou_patch` has run, then 'cuda' or 'cpu'.
_ACTIVE_PATH: Optional[str] = None


@numba.njit(cache=True)
def _box_corners(box: np.ndarray, out: np.ndarray) -> None:
    """Write the corners of one ``[x, y, w, h, angle]`` box into ``out``.

    The corners come out counter-clockwise (the map used by the CUDA
    kernel has determinant +1, so it keeps the orientation of the local
    corner order).
    """
    cos_a = math.cos(box[4])
    sin_a = math.sin(box[4])
    half_w = 0.5 * box[2]
    half_h = 0.5 * box[3]
    for i in range(4):
        # (-,-), (+,-), (+,+), (-,+): counter-clockwise in the box frame.
        local_x = half_w if (i == 1 or i == 2) else -half_w
        local_y = half_h if i >= 2 else -half_h
        out[i, 0] = cos_a * local_x + sin_a * local_y + box[0]
        out[i, 1] = -sin_a * local_x + cos_a * local_y + box[1]


@numba.njit(cache=True)
def _convex_intersection_area(subject: np.ndarray, clip: np.ndarray,
                              buf_a: np.ndarray, buf_b: np.ndarray) -> float:
    """Area of the intersection of two counter-clockwise quadrilaterals.

    Sutherland-Hodgman clipping of ``subject`` by the four half-planes of
    ``clip``; both are convex, so the result is exact up to rounding.
    ``buf_a`` and ``buf_b`` are scratch arrays of shape ``(16, 2)``.
    """
    for i in range(4):
        buf_a[i, 0] = subject[i, 0]
        buf_a[i, 1] = subject[i, 1]
    src, dst = buf_a, buf_b
    num = 4
    for e in range(4):
        ax = clip[e, 0]
        ay = clip[e, 1]
        ex = clip[(e + 1) % 4, 0] - ax
        ey = clip[(e + 1) % 4, 1] - ay
        count = 0
        for i in range(num):
            j = (i + 1) % num
            px = src[i, 0]
            py = src[i, 1]
            qx = src[j, 0]
            qy = src[j, 1]
            # >= 0: on the inner (left) side of the directed clip edge.
            side_p = ex * (py - ay) - ey * (px - ax)
            side_q = ex * (qy - ay) - ey * (qx - ax)
            if side_p >= 0.0:
                dst[count, 0] = px
                dst[count, 1] = py
                count += 1
            if (side_p >= 0.0) != (side_q >= 0.0):
                t = side_p / (side_p - side_q)
                dst[count, 0] = px + t * (qx - px)
                dst[count, 1] = py + t * (qy - py)
                count += 1
        if count < 3:
            return 0.0
        src, dst = dst, src
        num = count
    twice_area = 0.0
    for i in range(num):
        j = (i + 1) % num
        twice_area += src[i, 0] * src[j, 1] - src[j, 0] * src[i, 1]
    return 0.5 * abs(twice_area)


@numba.njit(cache=True, error_model='numpy')
def _rotate_overlaps(boxes: np.ndarray, query_boxes: np.ndarray,
                     criterion: int) -> np.ndarray:
    """Pairwise rotated overlaps; see :func:`rotate_iou_cpu_eval`."""
    num_boxes = boxes.shape[0]
    num_query = query_boxes.shape[0]
    result = np.zeros((num_boxes, num_query), dtype=np.float64)
    corners = np.empty((num_boxes, 4, 2), dtype=np.float64)
    query_corners = np.empty((num_query, 4, 2), dtype=np.float64)
    radius = np.empty(num_boxes, dtype=np.float64)
    query_radius = np.empty(num_query, dtype=np.float64)
    for n in range(num_boxes):
        _box_corners(boxes[n], corners[n])
        radius[n] = 0.5 * math.sqrt(boxes[n, 2]**2 + boxes[n, 3]**2)
    for k in range(num_query):
        _box_corners(query_boxes[k], query_corners[k])
        query_radius[k] = 0.5 * math.sqrt(query_boxes[k, 2]**2 +
                                          query_boxes[k, 3]**2)
    buf_a = np.empty((16, 2), dtype=np.float64)
    buf_b = np.empty((16, 2), dtype=np.float64)
    for n in range(num_boxes):
        area = boxes[n, 2] * boxes[n, 3]
        for k in range(num_query):
            query_area = query_boxes[k, 2] * query_boxes[k, 3]
            inter = 0.0
            dx = boxes[n, 0] - query_boxes[k, 0]
            dy = boxes[n, 1] - query_boxes[k, 1]
            reach = radius[n] + query_radius[k]
            # Boxes whose circumcircles are apart cannot overlap; boxes with
            # a non-positive side have no area to share.
            if (dx * dx + dy * dy <= reach * reach and area > 0.0
                    and query_area > 0.0 and boxes[n, 2] > 0.0
                    and query_boxes[k, 2] > 0.0):
                inter = _convex_intersection_area(corners[n],
                                                  query_corners[k], buf_a,
                                                  buf_b)
            if criterion == -1:
                result[n, k] = inter / (area + query_area - inter)
            elif criterion == 0:
                result[n, k] = inter / query_area
            elif criterion == 1:
                result[n, k] = inter / area
            else:
                result[n, k] = inter
    return result


def rotate_iou_cpu_eval(boxes: np.ndarray,
                        query_boxes: np.ndarray,
                        criterion: int = -1,
                        device_id: int = 0) -> np.ndarray:
    """CPU drop-in for mmdet3d's ``rotate_iou_gpu_eval``.

    Args:
        boxes (np.ndarray): ``(N, 5)`` rotated boxes ``[x, y, w, h, angle]``
            in the convention of mmdet3d's kernel (camera BEV, clockwise
            positive angle).
        query_boxes (np.ndarray): ``(K, 5)`` boxes in the same format.
        criterion (int): -1 for IoU, 0 for intersection over the area of
            the query box, 1 for intersection over the area of the box in
            ``boxes``, any other value for the raw intersection area.
            Defaults to -1.
        device_id (int): Ignored; kept for signature compatibility.

    Returns:
        np.ndarray: ``(N, K)`` float64 overlaps.
    """
    del device_id  # CPU implementation: no device to select.
    boxes = np.ascontiguousarray(boxes, dtype=np.float64).reshape(-1, 5)
    query_boxes = np.ascontiguousarray(
        query_boxes, dtype=np.float64).reshape(-1, 5)
    if boxes.shape[0] == 0 or query_boxes.shape[0] == 0:
        return np.zeros((boxes.shape[0], query_boxes.shape[0]),
                        dtype=np.float64)
    return _rotate_overlaps(boxes, query_boxes, int(criterion))


def _cuda_path_usable() -> Tuple[bool, str]:
    """Tell whether mmdet3d's numba CUDA kernel can run here, and why not."""
    try:
        import torch
        if not torch.cuda.is_available():
            return False, 'torch.cuda.is_available() is False'
    except Exception as exc:  # pragma: no cover - torch is a hard dependency
        return False, f'torch.cuda failed: {exc!r}'
    try:
        from numba import cuda
        if not cuda.is_available():
            return False, 'numba.cuda.is_available() is False'
    except Exception as exc:
        return False, f'numba has no usable CUDA target ({exc!r})'
    return True, 'torch and numba both see a CUDA device'


def _install_cpu_module(reason: str) -> types.ModuleType:
    """Provide the rotate_iou module with only the CPU implementation."""
    module = types.ModuleType(
        ROTATE_IOU_MODULE,
        'MonoASD stand-in for mmdet3d kitti_utils.rotate_iou: the original '
        f'module could not be imported ({reason}); rotate_iou_gpu_eval runs '
        'monoasd.evaluation.kitti_cpu_iou.rotate_iou_cpu_eval on the CPU.')
    module.rotate_iou_gpu_eval = rotate_iou_cpu_eval
    module.rotate_iou_cpu_eval = rotate_iou_cpu_eval
    sys.modules[ROTATE_IOU_MODULE] = module
    parent_name, _, child = ROTATE_IOU_MODULE.rpartition('.')
    parent = sys.modules.get(parent_name)
    if parent is not None:
        setattr(parent, child, module)
    return module


def apply_kitti_cpu_iou_patch(force_cpu: bool = False) -> str:
    """Route mmdet3d's KITTI rotated IoU to the CPU when CUDA is unusable.

    Idempotent: the decision is taken once per process and logged once.

    Args:
        force_cpu (bool): Use the CPU implementation even when the CUDA
            path looks usable. Defaults to False.

    Returns:
        str: ``'cuda'`` if mmdet3d's kernel is left in place, ``'cpu'`` if
        the CPU implementation serves it, ``'unpatched'`` if mmdet3d's
        evaluation package cannot be imported at all.
    """
    global _ACTIVE_PATH
    if _ACTIVE_PATH is not None and not (force_cpu
                                         and _ACTIVE_PATH == 'cuda'):
        return _ACTIVE_PATH
    from mmengine.logging import print_log

    usable, reason = _cuda_path_usable()
    use_cuda = usable and not force_cpu
    if force_cpu:
        reason = 'CPU forced'
    parent_name = ROTATE_IOU_MODULE.rpartition('.')[0]
    try:
        importlib.import_module(parent_name)
    except Exception as exc:
        # mmdet3d's evaluation package itself is broken (e.g. a missing
        # optional dependency of another metric): KittiMetric cannot be
        # used either, so leave everything alone; a later call retries.
        print_log(
            f'MonoASD: cannot import {parent_name} ({exc!r}); the KITTI '
            'rotated-IoU CPU patch is not applied.',
            logger='current',
            level=logging.WARNING)
        return 'unpatched'
    try:
        # numba compiles the CUDA kernel while importing rotate_iou.py
        # (explicit signature); without a CUDA driver that raises
        # CudaSupportError, so the import doubles as a check of the kernel.
        module = importlib.import_module(ROTATE_IOU_MODULE)
    except Exception as exc:
        if use_cuda:
            reason = ('mmdet3d\'s numba CUDA kernel failed to compile '
                      f'({type(exc).__name__})')
        _install_cpu_module(f'{type(exc).__name__}: {exc}'.strip())
        how = ('stand-in rotate_iou module, the original failed to import '
               f'with {type(exc).__name__}')
    else:
        if use_cuda:
            _ACTIVE_PATH = 'cuda'
            print_log(
                'MonoASD: KITTI rotated IoU uses mmdet3d\'s numba CUDA '
                f'kernel ({reason}).',
                logger='current')
            return _ACTIVE_PATH
        module.rotate_iou_gpu_eval = rotate_iou_cpu_eval
        how = 'patched rotate_iou_gpu_eval'
    _ACTIVE_PATH = 'cpu'
    print_log(
        'MonoASD: KITTI rotated IoU runs on the CPU '
        f'(float64 polygon clipping; {how}) because {reason}.',
        logger='current')
    return _ACTIVE_PATH


def kitti_iou_path() -> Optional[str]:
    """Return ``'cuda'``, ``'cpu'`` or None (patch not applied yet)."""
    return _ACTIVE_PATH
