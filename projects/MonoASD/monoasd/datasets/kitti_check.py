# Copyright (c) MonoASD contributors. All rights reserved.
"""Validation of a KITTI-format copy before mmdet3d's converters read it.

:func:`check_kitti_root` reads every frame of every split listed in
``ImageSets/`` and collects all problems at once (file, line, what is
wrong), so that a user fixes a broken copy in one pass instead of meeting
mmdet3d's first ``cannot reshape array`` or ``IndexError``.
"""
import os.path as osp
from collections import Counter
from typing import Dict, List, Sequence

import numpy as np
from PIL import Image

from .kitti_io import CALIB_ALIASES, CALIB_SHAPES

#: KITTI object classes mmdet3d's converter knows; others become -1.
KITTI_CLASSES = ('Car', 'Van', 'Truck', 'Pedestrian', 'Person_sitting',
                 'Cyclist', 'Tram', 'Misc', 'DontCare')
#: Calib keys and their number of values (kitti_io.CALIB_SHAPES).
CALIB_KEYS = {k: h * w for k, (h, w) in CALIB_SHAPES.items()}
IMAGE_EXTS = ('.png', '.jpg', '.jpeg')


class KittiFormatError(ValueError):
    """A KITTI copy has bad frames; ``problems`` lists them all."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        head = '\n  '.join(self.problems[:50])
        more = len(self.problems) - 50
        super().__init__(
            f'{len(self.problems)} problem(s) in the KITTI copy:\n  {head}' +
            (f'\n  ... and {more} more' if more > 0 else ''))


def check_label_file(path: str) -> (List[str], Counter):
    """Check one label_2 file: 15 fields (16 with a score), numbers.

    Returns:
        tuple: problems (list of str) and a Counter of class names.
    """
    problems, names = [], Counter()
    with open(path) as f:
        lines = f.read().splitlines()
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (15, 16):
            problems.append(f'{path}:{n}: {len(fields)} fields, expected 15 '
                            '(type, truncated, occluded, alpha, bbox x4, '
                            'h w l, x y z, rotation_y) or 16 with a score')
            continue
        bad = []
        for i, v in enumerate(fields[1:], 1):
            try:
                if not np.isfinite(float(v)):
                    bad.append(f'field {i + 1} {v!r}')
            except ValueError:
                bad.append(f'field {i + 1} {v!r}')
        if bad:
            problems.append(f'{path}:{n}: non-numeric value(s) '
                            f'{", ".join(bad)}')
            continue
        names[fields[0]] += 1
    return problems, names


def check_calib_file(path: str) -> List[str]:
    """Check one calib file: P0-P3 and Tr_velo_to_cam with 12 numbers,
    R0_rect with 9."""
    problems, found = [], {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if ':' not in line:
                continue
            key, values = line.split(':', 1)
            key = CALIB_ALIASES.get(key.strip(), key.strip())
            try:
                found[key] = [float(v) for v in values.split()]
            except ValueError:
                problems.append(f'{path}:{n}: {key} has non-numeric values')
                found[key] = None
    for key, size in CALIB_KEYS.items():
        if key == 'Tr_imu_to_velo' and key not in found:
            continue  # not needed for camera-only use
        if key not in found:
            problems.append(f'{path}: no {key} line')
        elif found[key] is not None and len(found[key]) != size:
            problems.append(f'{path}: {key} has {len(found[key])} values, '
                            f'expected {size}')
    return problems


def check_image_file(path: str) -> List[str]:
    """Check that an image decodes completely (catches truncated files)."""
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # PIL raises many types
        return [f'{path}: not a readable image ({exc})']
    return []


def frame_name(img_path: str) -> str:
    """Frame name of an image path: its file stem ('.../000123.png' ->
    '000123')."""
    return osp.splitext(osp.basename(img_path))[0]


def find_image(folder: str, idx: str) -> str:
    """Path of frame ``idx`` in ``folder`` ('' when there is none)."""
    for ext in IMAGE_EXTS:
        path = osp.join(folder, idx + ext)
        if osp.isfile(path):
            return path
    return ''


def check_kitti_root(root: str,
                     splits: Sequence[str] = ('train', 'val', 'test'),
                     with_velodyne: bool = True) -> Dict[str, object]:
    """Check every frame of ``ImageSets/{split}.txt`` under ``root``.

    Args:
        root (str): KITTI root (``ImageSets``, ``training``, ``testing``).
        splits (Sequence[str]): Splits to check; missing split files are
            skipped. 'test' frames are read from ``testing/`` and have no
            labels.
        with_velodyne (bool): Check ``velodyne/*.bin`` sizes (mmdet3d's
            converter reads them to count points in boxes).

    Returns:
        dict: ``frames`` (number checked), ``classes`` (Counter of class
        names over all labels), ``unknown_classes`` (Counter of names
        mmdet3d does not know; their boxes become DontCare regions).

    Raises:
        KittiFormatError: Listing every problem found.
    """
    problems, names, frames = [], Counter(), 0
    seen = set()
    for split in splits:
        split_file = osp.join(root, 'ImageSets', f'{split}.txt')
        if not osp.isfile(split_file):
            continue
        sub = 'testing' if split == 'test' else 'training'
        with open(split_file) as f:
            ids = [line.strip() for line in f if line.strip()]
        for idx in ids:
            if (sub, idx) in seen:
                continue
            seen.add((sub, idx))
            frames += 1
            base = osp.join(root, sub)
            img = find_image(osp.join(base, 'image_2'), idx)
            if not img:
                problems.append(f'{base}/image_2/{idx}.png: missing (listed '
                                f'in {split_file})')
            else:
                problems += check_image_file(img)
            calib = osp.join(base, 'calib', idx + '.txt')
            if not osp.isfile(calib):
                problems.append(f'{calib}: missing')
            else:
                problems += check_calib_file(calib)
            if sub == 'training':
                label = osp.join(base, 'label_2', idx + '.txt')
                if not osp.isfile(label):
                    problems.append(f'{label}: missing')
                else:
                    p, n = check_label_file(label)
                    problems += p
                    names += n
            if with_velodyne:
                velo = osp.join(base, 'velodyne', idx + '.bin')
                if not osp.isfile(velo):
                    problems.append(f'{velo}: missing (mmdet3d\'s info '
                                    'converter counts LiDAR points in boxes)')
                elif osp.getsize(velo) % 16:
                    problems.append(
                        f'{velo}: {osp.getsize(velo)} bytes, not a multiple '
                        'of 16 (x, y, z, reflectance as float32)')
    if problems:
        raise KittiFormatError(problems)
    unknown = Counter({k: v for k, v in names.items()
                       if k not in KITTI_CLASSES})
    return dict(frames=frames, classes=names, unknown_classes=unknown)
