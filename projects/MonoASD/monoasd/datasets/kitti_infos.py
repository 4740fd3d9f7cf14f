# Copyright (c) MonoASD contributors. All rights reserved.
"""mmdet3d v2 KITTI info files for monocular 3D detection.

Reuses mmdet3d's own converters from the installed wheel
(``mmdet3d/.mim/tools/dataset_converters``): ``create_kitti_info_file``
writes the v1 infos and ``update_pkl_infos`` turns them into v2 infos with
``cam_instances``. MonoASD then adds three per-instance fields to every
``cam_instances['CAM2']`` entry, taken from the matching label line:
``truncated``, ``occluded`` and ``kitti_bbox`` (the annotated 2D box;
mmdet3d's ``bbox`` there is the projected 3D box), and names label -1
``DontCare`` in ``metainfo['categories']`` so that KittiMetric can read
DontCare lines (mmdet3d 1.4 raises ``KeyError: -1`` on them otherwise).
KittiDataset and KittiMetric read the files unchanged. Command line:
``tools/create_data.py``.
"""
import logging
import os
import os.path as osp
import shutil
import sys
import tempfile
import warnings

import mmdet3d
import mmengine
import numpy as np
from mmengine.logging import print_log

from .kitti_check import check_kitti_root

SPLITS = ('train', 'val', 'trainval', 'test')


def _converters():
    """Import mmdet3d's dataset converters shipped inside the wheel."""
    mim_dir = osp.join(osp.dirname(mmdet3d.__file__), '.mim')
    if not osp.isdir(osp.join(mim_dir, 'tools', 'dataset_converters')):
        raise ImportError(
            f'mmdet3d dataset converters not found under {mim_dir}; '
            'install the mmdet3d 1.4.0 wheel from PyPI.')
    if mim_dir not in sys.path:
        sys.path.insert(0, mim_dir)
    from tools.dataset_converters import kitti_converter
    from tools.dataset_converters.update_infos_to_v2 import update_pkl_infos
    return kitti_converter, update_pkl_infos


def add_kitti_fields(data_list: list) -> int:
    """Add truncated/occluded/kitti_bbox to each camera instance.

    Camera instances are matched to label instances by their 3D box.

    Args:
        data_list (list[dict]): ``data_list`` of a v2 info file (modified in
            place).

    Returns:
        int: Number of camera instances annotated.
    """
    count = 0
    for info in data_list:
        # the test split has no labels: give it empty instance lists so that
        # KittiDataset (fov_image_based) can load it for submissions
        info.setdefault('instances', [])
        info.setdefault('cam_instances', {}).setdefault('CAM2', [])
        instances = info['instances']
        cams = info.get('cam_instances', {}).get('CAM2', [])
        if not cams:
            continue
        boxes = np.array([ins['bbox_3d'] for ins in instances],
                         dtype=np.float64).reshape(-1, 7)
        for cam in cams:
            dist = np.abs(boxes - np.asarray(cam['bbox_3d'])).max(axis=1)
            idx = int(np.argmin(dist))
            if dist[idx] > 1e-4:
                raise ValueError(
                    f'sample {info.get("sample_idx")}: camera instance '
                    f'{cam["bbox_3d"]} has no matching label instance')
            src = instances[idx]
            cam['truncated'] = float(src['truncated'])
            cam['occluded'] = int(src['occluded'])
            cam['kitti_bbox'] = [float(v) for v in src['bbox']]
            count += 1
    return count


def plain_categories(categories: dict) -> dict:
    """KITTI classes with plain ``str`` keys, and -1 named DontCare only.

    mmdet3d's v2 converter adds every class it does not know (DontCare,
    or e.g. 'Bus') as an ``np.str_`` key with label -1, in set order (which
    depends on the hash seed). KittiMetric inverts the mapping, so the last
    -1 name wins and DontCare regions may be renamed; and the numpy keys
    travel into checkpoint meta. Label -1 lines are ignore regions, so -1
    is named 'DontCare' alone (else KittiMetric raises ``KeyError: -1``).
    """
    out = {str(k): int(v) for k, v in categories.items() if int(v) >= 0}
    out['DontCare'] = -1
    return out


def empty_v2_infos() -> dict:
    """The v2 info file of a split without frames (an empty ImageSets
    list, e.g. a copy without ``testing``), with the metainfo that
    mmdet3d's updater writes for a split that has them."""
    from mmdet3d.datasets import KittiDataset
    categories = {c: i for i, c in enumerate(KittiDataset.METAINFO['classes'])}
    return dict(metainfo=dict(categories=categories, dataset='kitti',
                              info_version='1.1'), data_list=[])


def create_kitti_infos(root_path: str,
                       out_dir: str = None,
                       pkl_prefix: str = 'kitti') -> dict:
    """Write ``{prefix}_infos_{train,val,trainval,test}.pkl`` atomically.

    Args:
        root_path (str): KITTI root with ``training``, ``testing`` and
            ``ImageSets``.
        out_dir (str, optional): Output folder. Defaults to ``root_path``.
        pkl_prefix (str): File prefix. Defaults to 'kitti'.

    Returns:
        dict: Split name -> (info file path, number of frames, number of
        annotated camera instances).
    """
    kitti_converter, update_pkl_infos = _converters()
    out_dir = out_dir or root_path
    for name in ('ImageSets', 'training'):
        if not osp.isdir(osp.join(root_path, name)):
            raise FileNotFoundError(
                f'{osp.join(root_path, name)} is missing: not a KITTI root.')
    # every frame is checked first; all problems are reported at once
    checked = check_kitti_root(root_path)
    for name, count in sorted(checked['unknown_classes'].items()):
        msg = (f'{count} label line(s) of class {name!r}, which KITTI does '
               'not define: they become DontCare (ignore) regions')
        warnings.warn(msg)
        print_log(msg, 'current', level=logging.WARNING)
    os.makedirs(out_dir, exist_ok=True)
    summary = {}
    tmp = tempfile.mkdtemp(prefix='.infos_', dir=out_dir)
    # v1 and v2 infos live in sibling folders: update_pkl_infos sleeps 5 s
    # per file ("may overwrite") when its out_dir is part of pkl_path.
    v1_dir, v2_dir = osp.join(tmp, 'v1'), osp.join(tmp, 'v2')
    os.makedirs(v1_dir)
    os.makedirs(v2_dir)
    try:
        kitti_converter.create_kitti_info_file(
            root_path, pkl_prefix, with_plane=False, save_path=v1_dir,
            relative_path=True)
        for split in SPLITS:
            name = f'{pkl_prefix}_infos_{split}.pkl'
            path = osp.join(v2_dir, name)
            if mmengine.load(osp.join(v1_dir, name)):
                update_pkl_infos('kitti', out_dir=v2_dir,
                                 pkl_path=osp.join(v1_dir, name))
            else:  # mmdet3d's updater fails on an empty split
                mmengine.dump(empty_v2_infos(), path)
            infos = mmengine.load(path)
            n_ins = add_kitti_fields(infos['data_list'])
            infos['metainfo']['categories'] = plain_categories(
                infos['metainfo']['categories'])
            mmengine.dump(infos, path)
            summary[split] = (osp.join(out_dir, osp.basename(path)),
                              len(infos['data_list']), n_ins)
        for split in SPLITS:
            name = f'{pkl_prefix}_infos_{split}.pkl'
            os.replace(osp.join(v2_dir, name), osp.join(out_dir, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary
