# Copyright (c) MonoASD contributors. All rights reserved.
"""KittiMetric whose submission files are named by frame id."""
import os
import os.path as osp
import shutil
import tempfile
from typing import List, Optional

import numpy as np

from mmdet3d.evaluation.metrics import KittiMetric
from mmdet3d.registry import METRICS

from ..datasets.kitti_check import frame_name
from ..utils.threads import torch_threads_kept


def info_frame_name(info: dict, cam_key: str = 'CAM2') -> str:
    """Frame name of an info entry: its image's file stem ('000123')."""
    img = info.get('images', {}).get(cam_key, {}).get('img_path')
    if img:
        return frame_name(img)
    return f'{int(info["sample_idx"]):06d}'


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

    Its numba ``parallel=True`` IoU kernel would raise torch's thread count
    for the rest of the process (``monoasd/utils/threads.py``); the
    evaluation runs on torch's thread count and leaves it unchanged.
    """

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
        results_dict = {name: [dets[i] for i in order]
                        for name, dets in results_dict.items()}
        with torch_threads_kept():
            return super().kitti_evaluate(results_dict, gt_annos, metric,
                                          classes, logger)

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
