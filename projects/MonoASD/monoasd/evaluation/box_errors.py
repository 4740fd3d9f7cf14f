# Copyright (c) MonoASD contributors. All rights reserved.
"""How far 3D boxes are from their objects, in metres and radians.

KITTI's AP says *whether* boxes clear an IoU threshold; these errors say
*why not*. Each object KITTI counts at a difficulty is paired with the
nearest detection of its class (bird's-eye-view centre distance, one-to-one,
nearest pairs first, within ``max_dist`` metres), and the pairs' errors are
summarised by medians: at IoU 0.7 a car 3.9 m long and 1.6 m wide leaves
room for about 0.2 m of error in each of x and z together.
"""
from typing import Dict, List

import numpy as np
from mmdet3d.evaluation.functional.kitti_utils.eval import (clean_data,
                                                            d3_box_overlap)

#: KITTI's evaluated classes, in the order ``clean_data`` indexes them.
KITTI_EVAL_CLASSES = ('Car', 'Pedestrian', 'Cyclist')
#: Error names, in the order :func:`box_errors` reports them.
ERROR_KEYS = ('recall', 'dx', 'dy', 'dz', 'dz_rel', 'dz_bias', 'dl', 'dh',
              'dw', 'dyaw', 'flip', 'iou', 'hit70')


def _boxes(anno: dict, idx: np.ndarray) -> np.ndarray:
    """(N, 7) camera boxes x, y, z, l, h, w, ry of ``anno``'s rows."""
    return np.concatenate([
        np.asarray(anno['location'], dtype=np.float64).reshape(-1, 3)[idx],
        np.asarray(anno['dimensions'], dtype=np.float64).reshape(-1, 3)[idx],
        np.asarray(anno['rotation_y'], dtype=np.float64).reshape(-1, 1)[idx]
    ], axis=1)


def match_nearest(gt_xz: np.ndarray, dt_xz: np.ndarray,
                  max_dist: float) -> List[tuple]:
    """One-to-one (gt, dt) index pairs, nearest first, within
    ``max_dist`` (bird's-eye-view centre distance)."""
    if not len(gt_xz) or not len(dt_xz):
        return []
    dist = np.linalg.norm(gt_xz[:, None] - dt_xz[None], axis=-1)
    pairs, used_g, used_d = [], set(), set()
    for flat in np.argsort(dist, axis=None, kind='stable'):
        g, d = np.unravel_index(flat, dist.shape)
        if dist[g, d] > max_dist:
            break
        if g in used_g or d in used_d:
            continue
        used_g.add(g)
        used_d.add(d)
        pairs.append((int(g), int(d)))
    return pairs


def box_errors(gt_annos: List[dict],
               dt_annos: List[dict],
               class_name: str = 'Car',
               difficulty: int = 1,
               max_dist: float = 2.0) -> Dict[str, float]:
    """Median errors of the detections nearest to the objects.

    Args:
        gt_annos (list[dict]): KITTI annotations per frame (``name``,
            ``bbox``, ``truncated``, ``occluded``, ``location``,
            ``dimensions`` as l, h, w, ``rotation_y``), as KittiMetric
            hands them to ``kitti_eval``.
        dt_annos (list[dict]): Detections per frame, same keys.
        class_name (str): One of KITTI's evaluated classes.
        difficulty (int): 0 easy, 1 moderate, 2 hard (KITTI's filters).
        max_dist (float): Largest centre distance of a pair (m).

    Returns:
        dict: ``num_objects``, ``num_matched`` and :data:`ERROR_KEYS`:
        ``recall`` (matched / objects), median absolute ``dx``, ``dy``,
        ``dz``, ``dl``, ``dh``, ``dw`` (m), ``dz_rel`` (median |dz| / z),
        ``dz_bias`` (mean signed dz, m), ``dyaw`` (median absolute yaw
        error modulo pi, rad: a box turned by pi is the same box),
        ``flip`` (share of pairs whose yaw is off by more than pi / 2) and
        ``iou`` (median 3D IoU), ``hit70`` (share of the objects whose
        paired box reaches 3D IoU 0.7). Errors are NaN without pairs.
    """
    if class_name not in KITTI_EVAL_CLASSES:
        raise ValueError(f'box_errors: class {class_name!r} is not one of '
                         f"KITTI's evaluated classes {KITTI_EVAL_CLASSES}")
    if len(gt_annos) != len(dt_annos):
        raise ValueError(f'box_errors: {len(gt_annos)} annotated frames but '
                         f'{len(dt_annos)} frames of detections')
    cls = KITTI_EVAL_CLASSES.index(class_name)
    rows, ious, num_objects = [], [], 0
    for gt, dt in zip(gt_annos, dt_annos):
        _, ignored_gt, _, _ = clean_data(gt, dt, cls, difficulty)
        valid = np.flatnonzero(np.asarray(ignored_gt) == 0)
        num_objects += len(valid)
        names = np.asarray(dt['name'])
        mine = np.flatnonzero(names == class_name) if len(names) else \
            np.zeros(0, dtype=int)
        if not len(valid) or not len(mine):
            continue
        g_box, d_box = _boxes(gt, valid), _boxes(dt, mine)
        for g, d in match_nearest(g_box[:, [0, 2]], d_box[:, [0, 2]],
                                  max_dist):
            diff = d_box[d] - g_box[g]
            yaw = (diff[6] + np.pi) % (2 * np.pi) - np.pi
            rows.append([*diff[:6], g_box[g, 2], yaw])
            ious.append(d3_box_overlap(g_box[g:g + 1], d_box[d:d + 1],
                                       -1)[0, 0])
    out = dict(num_objects=num_objects, num_matched=len(rows),
               recall=len(rows) / num_objects if num_objects else float('nan'))
    if not rows:
        out.update({k: float('nan') for k in ERROR_KEYS if k != 'recall'})
        if num_objects:
            out['hit70'] = 0.0
        return out
    r = np.asarray(rows)
    med = lambda v: float(np.median(np.abs(v)))  # noqa: E731
    yaw = r[:, 7]
    out.update(
        dx=med(r[:, 0]), dy=med(r[:, 1]), dz=med(r[:, 2]),
        dz_rel=med(r[:, 2] / np.maximum(r[:, 6], 1e-6)),
        dz_bias=float(r[:, 2].mean()), dl=med(r[:, 3]), dh=med(r[:, 4]),
        dw=med(r[:, 5]),
        dyaw=med((yaw + np.pi / 2) % np.pi - np.pi / 2),
        flip=float((np.abs(yaw) > np.pi / 2).mean()),
        iou=float(np.median(ious)),
        hit70=float(np.sum(np.asarray(ious) >= 0.7)) / num_objects)
    return out


def format_box_errors(errors: Dict[str, float], label: str) -> str:
    """One log line of :func:`box_errors`' result."""
    return (f'{label}: {errors["num_matched"]} of {errors["num_objects"]} '
            'objects paired with a detection; ' + ', '.join(
                f'{k} {errors[k]:.3f}' for k in ERROR_KEYS if k != 'recall'))
