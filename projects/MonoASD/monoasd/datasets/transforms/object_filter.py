# Copyright (c) MonoASD contributors. All rights reserved.
"""DID-M3D's object filter: KITTI difficulty level and minimum depth."""
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet3d.registry import TRANSFORMS

#: Per-instance keys that the filter keeps aligned.
INSTANCE_KEYS = ('gt_bboxes', 'gt_bboxes_labels', 'gt_bboxes_3d',
                 'gt_labels_3d', 'centers_2d', 'depths', 'attr_labels')

#: KITTI difficulty rules: (min 2D box height, max truncation, max occlusion)
KITTI_LEVELS = ((40.0, 0.15, 0), (25.0, 0.30, 1), (25.0, 0.50, 2))


def kitti_level(box_height: np.ndarray, truncated: np.ndarray,
                occluded: np.ndarray) -> np.ndarray:
    """KITTI difficulty of each object.

    Args:
        box_height (np.ndarray): 2D box heights ``y2 - y1 + 1`` (pixels), (N,).
        truncated (np.ndarray): Truncation in [0, 1], (N,).
        occluded (np.ndarray): Occlusion state 0..3, (N,).

    Returns:
        np.ndarray: 0 easy, 1 moderate, 2 hard, -1 unknown, shape (N,).
    """
    level = np.full(len(box_height), -1, dtype=np.int64)
    for lvl in reversed(range(len(KITTI_LEVELS))):
        min_h, max_trunc, max_occ = KITTI_LEVELS[lvl]
        ok = (box_height >= min_h) & (truncated <= max_trunc) & \
            (occluded <= max_occ)
        level[ok] = lvl
    return level


@TRANSFORMS.register_module()
class KittiObjectFilter(BaseTransform):
    """Drop objects DID-M3D does not train on (design D1.2).

    An object is kept when its KITTI level is Easy, Moderate or Hard (from
    the annotated 2D box height ``y2 - y1 + 1``, truncation and occlusion)
    and its depth is at least ``min_depth``. The per-instance ``truncated``,
    ``occluded`` and ``kitti_bbox`` fields come from the info files written
    by ``tools/create_data.py``.

    Args:
        min_depth (float): Minimum object depth z in metres. Defaults to 2.
        use_kitti_bbox (bool): Replace ``gt_bboxes`` (mmdet3d's projected 3D
            box) by the annotated KITTI 2D box, as DID-M3D does.
            Defaults to True.
        filter_levels (bool): Apply the difficulty filter. Defaults to True.
        max_objs (int): Keep at most this many objects. Defaults to 50.
    """

    def __init__(self,
                 min_depth: float = 2.0,
                 use_kitti_bbox: bool = True,
                 filter_levels: bool = True,
                 max_objs: int = 50) -> None:
        self.min_depth = min_depth
        self.use_kitti_bbox = use_kitti_bbox
        self.filter_levels = filter_levels
        self.max_objs = max_objs

    def _ann(self, results: dict, key: str) -> np.ndarray:
        ann = results.get('ann_info', {})
        if key not in ann:
            raise KeyError(
                f'KittiObjectFilter needs the per-instance key "{key}" in '
                f'the info file of {results.get("img_path", "this sample")}'
                '; create the infos with `python tools/create_data.py kitti`.')
        return np.asarray(ann[key])

    def transform(self, results: dict) -> dict:
        """Filter every per-instance key consistently."""
        num = len(results['gt_labels_3d'])
        if num == 0:
            return results
        if self.use_kitti_bbox:
            results['gt_bboxes'] = self._ann(
                results, 'kitti_bbox').astype(np.float32).reshape(-1, 4)
        keep = np.ones(num, dtype=bool)
        if self.filter_levels:
            boxes = results['gt_bboxes']
            height = boxes[:, 3] - boxes[:, 1] + 1
            level = kitti_level(height, self._ann(results, 'truncated'),
                                self._ann(results, 'occluded'))
            keep &= level >= 0
        depth = results['gt_bboxes_3d'].tensor[:, 2].numpy()
        keep &= depth >= self.min_depth
        keep &= np.cumsum(keep) <= self.max_objs
        for key in INSTANCE_KEYS:
            if key in results:
                value = results[key]
                mask = keep if isinstance(value, np.ndarray) \
                    else torch.from_numpy(keep)
                results[key] = value[mask]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(min_depth={self.min_depth}, '
                f'use_kitti_bbox={self.use_kitti_bbox}, '
                f'filter_levels={self.filter_levels}, '
                f'max_objs={self.max_objs})')
