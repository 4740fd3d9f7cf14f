# Copyright (c) MonoASD contributors. All rights reserved.
"""mmdet3d's KittiDataset, made safe for real KITTI copies.

mmdet3d 1.4's :class:`~mmdet3d.datasets.KittiDataset` has three faults that
every real KITTI copy meets, fixed here without changing what it loads:

* a frame with no objects (or only DontCare lines) gets a 0-d
  ``gt_bboxes_labels`` array and crashes ``_remove_dontcare`` with
  ``IndexError: too many indices``; here it gets an empty (0,) array;
* a v1 info file, or one without ``cam_instances``, fails deep inside with a
  ``KeyError``; here the error names the file and the tool that writes the
  right one (``tools/create_data.py kitti``);
* any error while loading or transforming a frame (a corrupt image, a bad
  depth map) is re-raised naming the frame and its image.
"""
import numpy as np
from mmdet3d.datasets import KittiDataset
from mmdet3d.registry import DATASETS

from .kitti_check import frame_name

#: What to run when an info file is missing something.
INFO_HINT = ('write it with "python tools/create_data.py kitti --root-path '
             '<kitti root>" (mmdet3d v2 infos with cam_instances)')


class FrameError(RuntimeError):
    """Loading or transforming one frame failed; names the frame."""


@DATASETS.register_module()
class MonoKittiDataset(KittiDataset):
    """:class:`KittiDataset` for monocular KITTI that survives real data.

    Same arguments and outputs as mmdet3d's ``KittiDataset``; see the
    module docstring for what differs (empty frames, info-file checks,
    errors that name the frame).
    """

    def load_data_list(self) -> list:
        """mmdet3d's loading; a file that is no v2 info file names the tool.
        """
        try:
            return super().load_data_list()
        except (TypeError, ValueError) as exc:
            # mmengine's own format checks, raised before any frame is read
            msg = str(exc)
            if 'should be a dict' in msg:
                kind = ('a list (the old v1 format)' if 'list' in msg else
                        msg.split('got ')[-1].rstrip('!'))
            elif 'must have data_list and metainfo' in msg:
                kind = 'a dict without data_list/metainfo'
            else:
                raise
            raise ValueError(f'info file {self.ann_file} is {kind}, not an '
                             f'mmdet3d v2 info file: {INFO_HINT}') from exc

    def parse_data_info(self, info: dict) -> dict:
        """Check ``cam_instances``; label-less frames (the test split) get
        empty instance lists."""
        if self.load_type == 'fov_image_based':
            if 'cam_instances' not in info and not self.test_mode:
                raise KeyError(
                    f'info file {self.ann_file}: frame '
                    f'{info.get("sample_idx", "?")} has no "cam_instances" '
                    f"(needed by load_type='fov_image_based'); {INFO_HINT}")
            info.setdefault('cam_instances', {}).setdefault(
                self.default_cam_key, [])
        return super().parse_data_info(info)

    def _remove_dontcare(self, ann_info: dict) -> dict:
        """mmdet3d's filter, after giving empty frames 1-d label arrays."""
        labels = ann_info.get('gt_bboxes_labels')
        if labels is not None and np.ndim(labels) == 0:
            ann_info['gt_bboxes_labels'] = np.zeros(0, dtype=np.int64)
        return super()._remove_dontcare(ann_info)

    def prepare_data(self, index: int):
        """Load and transform frame ``index``; errors name the frame."""
        try:
            return super().prepare_data(index)
        except FrameError:
            raise
        except Exception as exc:
            info = self.get_data_info(index)
            img = info.get('img_path') or info.get('images', {}).get(
                self.default_cam_key, {}).get('img_path', '?')
            frame = frame_name(str(img))
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, AttributeError) and 'NoneType' in reason:
                reason = ('the image could not be decoded (corrupt or '
                          f'truncated file?): {reason}')
            raise FrameError(f'frame {frame} (image {img}, ann_file '
                             f'{self.ann_file}): {type(exc).__name__}: '
                             f'{reason}') from exc
