# Copyright (c) MonoASD contributors. All rights reserved.
"""KittiMetric whose submission files are named by frame id."""
import logging
import os
import os.path as osp
import shutil
import tempfile
from typing import List, Optional

import numpy as np
from mmengine.logging import print_log

from mmdet3d.evaluation.functional.kitti_utils.eval import \
    clean_data, get_thresholds
from mmdet3d.evaluation.metrics import KittiMetric
from mmdet3d.registry import METRICS

from ..datasets.kitti_check import frame_name
from ..utils.threads import torch_threads_kept
from .box_errors import (ERROR_KEYS, KITTI_EVAL_CLASSES, box_errors,
                         format_box_errors)


def info_frame_name(info: dict, cam_key: str = 'CAM2') -> str:
    """Frame name of an info entry: its image's file stem ('000123')."""
    img = info.get('images', {}).get(cam_key, {}).get('img_path')
    if img:
        return frame_name(img)
    return f'{int(info["sample_idx"]):06d}'


#: Difficulties KITTI's ``clean_data`` knows, in its order (the classes:
#: ``KITTI_EVAL_CLASSES``).
KITTI_DIFFICULTIES = ('easy', 'moderate', 'hard')


def r40_ceiling(num_valid_gt: int) -> float:
    """Highest AP|R40 (%) KITTI's evaluation can give on a split with
    ``num_valid_gt`` objects of a class and difficulty.

    ``get_thresholds`` takes at most one recall sample per true positive,
    and the AP averages the 40 samples above recall 0, so with fewer than
    41 objects even perfect detections score below 100: 33 objects give
    at most 32 / 40 = 80.
    """
    if num_valid_gt <= 0:
        return 0.0
    scores = np.linspace(1.0, 0.5, num_valid_gt)
    n = len(get_thresholds(scores, num_valid_gt))
    return 100.0 * min(n - 1, 40) / 40


def count_valid_gt(gt_annos: List[dict], class_name: str,
                   difficulty: int) -> int:
    """Objects of ``class_name`` KITTI's evaluation counts at
    ``difficulty`` (0 easy, 1 moderate, 2 hard) over ``gt_annos``."""
    no_dets = dict(name=np.zeros(0, dtype=str), bbox=np.zeros((0, 4)))
    cls = KITTI_EVAL_CLASSES.index(class_name)
    return sum(clean_data(anno, no_dets, cls, difficulty)[0]
               for anno in gt_annos)


def small_split_warnings(gt_annos: List[dict],
                         classes: Optional[List[str]]) -> List[str]:
    """One line per class and difficulty whose AP|R40 cannot reach 100
    on these frames (:func:`r40_ceiling`); none when the annotations lack
    the fields KITTI's difficulty needs."""
    needed = ('name', 'bbox', 'occluded', 'truncated')
    if not all(k in anno for anno in gt_annos for k in needed):
        return []
    lines = []
    for name in classes or KITTI_EVAL_CLASSES:
        if name not in KITTI_EVAL_CLASSES:
            continue
        for d, diff in enumerate(KITTI_DIFFICULTIES):
            n = count_valid_gt(gt_annos, name, d)
            top = r40_ceiling(n)
            if 0 < n and top < 100:
                lines.append(f'{name} {diff}: {n} objects, AP|R40 cannot '
                             f'exceed {top:.2f}')
    return lines


@METRICS.register_module()
class MonoKittiMetric(KittiMetric):
    """mmdet3d's :class:`KittiMetric`, with submission txt files named by
    the frame they describe.

    mmdet3d names every ``--format-only`` file by the frame's *position* in
    the split (``000000.txt``, ``000001.txt``, ...); on a split whose ids
    have gaps (KITTI val, a test subset) the names are wrong. Here each
    file is renamed to its image's file stem (``000007.txt``). AP values are
    unchanged (they never depend on the names).

    mmdet3d's ``kitti_eval`` also reads ``gt_annos[i]['alpha'][0]`` of the
    frames in order until one has an object, so a val split whose *first*
    frame has no label line at all raises ``IndexError``. Frames are handed
    to it with annotated frames first (AP does not depend on frame order).

    On a split with fewer than 41 objects of a class and difficulty, KITTI's
    AP|R40 cannot reach 100 even for perfect detections
    (:func:`r40_ceiling`); the evaluation logs a warning with the ceiling.

    With ``box_errors=True`` it also pairs every moderate object of each
    evaluated class with the nearest detection and reports the median
    location, size and yaw errors (:func:`~.box_errors.box_errors`) as
    ``pred_instances_3d/KITTI/Car_moderate_err_dz`` and so on, and in one
    log line per class: what keeps boxes under IoU 0.7.

    Its numba ``parallel=True`` IoU kernel would raise torch's thread count
    for the rest of the process (``monoasd/utils/threads.py``); the
    evaluation runs on torch's thread count and leaves it unchanged.
    """

    def __init__(self, *args, box_errors: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.box_errors = box_errors

    def kitti_evaluate(self, results_dict: dict, gt_annos: List[dict],
                       metric: Optional[str] = None,
                       classes: Optional[List[str]] = None,
                       logger=None) -> dict:
        """mmdet3d's evaluation with annotated frames first."""
        def rank(i):  # 0: a real object, 1: DontCare lines only, 2: empty
            alpha = np.asarray(gt_annos[i]['alpha'])
            return 0 if (alpha != -10).any() else (1 if alpha.size else 2)

        ranks = [rank(i) for i in range(len(gt_annos))]
        order = sorted(range(len(gt_annos)), key=lambda i: ranks[i])
        if 0 not in ranks:
            # no object anywhere: every AP is 0; mmdet3d would crash on the
            # empty frames, so only frames with (DontCare) lines go in
            order = [i for i in order if ranks[i] == 1]
            if not order:
                raise ValueError(
                    f'{self.ann_file}: no frame of the split has a label '
                    'line; nothing to evaluate (use --format-only for a '
                    'split without labels)')
        gt_annos = [gt_annos[i] for i in order]
        capped = small_split_warnings(gt_annos, classes)
        if capped:
            print_log(f'{self.ann_file}: too few objects for AP|R40 to reach '
                      '100 (KITTI samples one recall point per true '
                      'positive): ' + '; '.join(capped), logger=logger,
                      level=logging.WARNING)
        results_dict = {name: [dets[i] for i in order]
                        for name, dets in results_dict.items()}
        with torch_threads_kept():
            metrics = super().kitti_evaluate(results_dict, gt_annos, metric,
                                             classes, logger)
        if self.box_errors:
            metrics.update(self._box_errors(results_dict, gt_annos, classes,
                                            logger))
        return metrics

    def _box_errors(self, results_dict, gt_annos, classes, logger) -> dict:
        out = {}
        for name, dets in results_dict.items():
            if name == 'pred_instances':  # 2D boxes only
                continue
            for cls in classes or KITTI_EVAL_CLASSES:
                if cls not in KITTI_EVAL_CLASSES:
                    continue
                err = box_errors(gt_annos, dets, cls, difficulty=1)
                if not err['num_objects']:
                    continue
                print_log(format_box_errors(
                    err, f'{name} {cls} moderate box errors (m, rad)'),
                    logger=logger)
                for k in ERROR_KEYS:
                    out[f'{name}/KITTI/{cls}_moderate_err_{k}'] = round(
                        err[k], 4)
        return out

    def bbox2result_kitti(self, net_outputs: List[dict],
                          sample_idx_list: List[int], class_names: List[str],
                          pklfile_prefix: Optional[str] = None,
                          submission_prefix: Optional[str] = None):
        """mmdet3d's 3D conversion, then files renamed by frame id."""
        return self._named(super().bbox2result_kitti, net_outputs,
                           sample_idx_list, class_names, pklfile_prefix,
                           submission_prefix)

    def bbox2result_kitti2d(self, net_outputs: List[dict],
                            sample_idx_list: List[int],
                            class_names: List[str],
                            pklfile_prefix: Optional[str] = None,
                            submission_prefix: Optional[str] = None):
        """mmdet3d's 2D conversion, then files renamed by frame id."""
        return self._named(super().bbox2result_kitti2d, net_outputs,
                           sample_idx_list, class_names, pklfile_prefix,
                           submission_prefix)

    def _named(self, convert, net_outputs, sample_idx_list, class_names,
               pklfile_prefix, submission_prefix):
        if submission_prefix is None:
            return convert(net_outputs, sample_idx_list, class_names,
                           pklfile_prefix, None)
        os.makedirs(submission_prefix, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=submission_prefix) as tmp:
            out = convert(net_outputs, sample_idx_list, class_names,
                          pklfile_prefix, tmp)
            for pos in sample_idx_list:
                src = osp.join(tmp, f'{pos:06d}.txt')
                if osp.isfile(src):
                    name = info_frame_name(self.data_infos[pos],
                                           self.default_cam_key)
                    shutil.move(src, osp.join(submission_prefix,
                                              name + '.txt'))
        return out
