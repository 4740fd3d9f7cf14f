# Copyright (c) MonoASD contributors. All rights reserved.
"""Reading and writing KITTI files: calibration text and depth PNGs.

One place for what the dataset transforms, the dense-depth tool, the demo
and the synthetic generator all read or write:

- ``calib/%06d.txt``: lines ``KEY: v1 v2 ...`` (P0-P3 3x4, R0_rect 3x3,
  Tr_velo_to_cam and Tr_imu_to_velo 3x4; a few KITTI-derived copies name
  R0_rect ``R_rect``/``R0`` and Tr_velo_to_cam ``Tr_velo_cam``);
- depth maps: single-channel uint16 PNGs holding metres x 256 (0 = no
  depth), the KITTI depth benchmark's convention.
"""
import os
from typing import Dict, Sequence

import cv2
import numpy as np

CALIB_SHAPES = {'P0': (3, 4), 'P1': (3, 4), 'P2': (3, 4), 'P3': (3, 4),
                'R0_rect': (3, 3), 'Tr_velo_to_cam': (3, 4),
                'Tr_imu_to_velo': (3, 4)}
#: Key order of the KITTI files (and of :func:`format_calib`).
CALIB_KEYS = tuple(CALIB_SHAPES)
#: Other names for the same matrices found in KITTI-derived copies.
CALIB_ALIASES = {'R_rect': 'R0_rect', 'R0': 'R0_rect',
                 'Tr_velo_cam': 'Tr_velo_to_cam'}
#: What projecting LiDAR points into image 2 needs.
PROJECTION_KEYS = ('P2', 'R0_rect', 'Tr_velo_to_cam')
#: Stored depth value per metre.
DEPTH_SCALE = 256.0
UINT16_MAX = 65535


def parse_calib_text(text: str,
                     path: str = '<text>') -> Dict[str, np.ndarray]:
    """Matrices of a KITTI calibration text (aliases mapped, others kept
    out).

    Args:
        text (str): Content of a ``calib/*.txt`` file.
        path (str): Named in errors.

    Returns:
        dict[str, np.ndarray]: float64 matrices of the keys present.

    Raises:
        ValueError: A known key with the wrong number of values or a value
            that is not a number; the message names the file and key.
    """
    calib = {}
    for line in text.splitlines():
        if ':' not in line:
            continue
        key, values = line.split(':', 1)
        key = CALIB_ALIASES.get(key.strip(), key.strip())
        if key not in CALIB_SHAPES:
            continue
        shape = CALIB_SHAPES[key]
        try:
            arr = np.array([float(v) for v in values.split()])
        except ValueError:
            raise ValueError(f'{path}: malformed {key} line (values that '
                             'are not numbers)') from None
        if arr.size != shape[0] * shape[1]:
            raise ValueError(f'{path}: malformed {key} line ({key} needs '
                             f'{shape[0] * shape[1]} numbers, got '
                             f'{arr.size})')
        calib[key] = arr.reshape(shape)
    return calib


def read_calib(path: str,
               required: Sequence[str] = PROJECTION_KEYS
               ) -> Dict[str, np.ndarray]:
    """Read a KITTI calibration file and check the matrices it must have.

    Args:
        path (str): ``calib/%06d.txt``.
        required (Sequence[str]): Keys that must be present and finite.
            Defaults to :data:`PROJECTION_KEYS`.

    Returns:
        dict[str, np.ndarray]: Every known matrix of the file (float64).

    Raises:
        ValueError: Unreadable file, malformed line, a missing required key
            or a non-finite value; the message names the file.
    """
    try:
        with open(path, 'r') as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f'{path}: cannot read calibration ({err})') from None
    calib = parse_calib_text(text, path)
    missing = [k for k in required if k not in calib]
    if missing:
        names = ', '.join(f'"{k}:"' for k in missing)
        raise ValueError(f'{path} has no {names} line'
                         f'{"s" if len(missing) > 1 else ""}')
    bad = [k for k in required if not np.isfinite(calib[k]).all()]
    if bad:
        raise ValueError(f'{path}: non-finite values in {", ".join(bad)}')
    return calib


def format_calib(calib: Dict[str, np.ndarray],
                 keys: Sequence[str] = CALIB_KEYS) -> str:
    """KITTI calibration text of ``calib`` (``keys`` in order)."""
    lines = []
    for key in keys:
        values = ' '.join('%.12e' % v for v in calib[key].ravel())
        lines.append(f'{key}: {values}')
    return '\n'.join(lines) + '\n\n'


def encode_depth(depth: np.ndarray,
                 depth_scale: float = DEPTH_SCALE) -> np.ndarray:
    """Metres -> uint16 (metres x ``depth_scale``, 0 = no depth)."""
    scaled = np.round(np.asarray(depth, dtype=np.float64) * depth_scale)
    return np.clip(scaled, 0, UINT16_MAX).astype(np.uint16)


def read_depth_png(path: str,
                   depth_scale: float = DEPTH_SCALE) -> np.ndarray:
    """Read a uint16 depth PNG as float32 metres (0 = no depth).

    Raises:
        FileNotFoundError: No such file.
        IOError: Not a readable image.
        ValueError: Not single-channel uint16; the message names the file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Dense depth map {path} is missing')
    raw = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise IOError(f'Dense depth map {path} is not a readable PNG.')
    if raw.ndim != 2 or raw.dtype != np.uint16:
        raise ValueError(
            f'Dense depth map {path} must be a single-channel uint16 PNG, '
            f'got dtype {raw.dtype} and shape {raw.shape}.')
    return raw.astype(np.float32) / depth_scale


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it
    into place (a killed writer never leaves a truncated file)."""
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f'.{name}.tmp{os.getpid()}')
    try:
        with open(tmp, 'wb') as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_png(path: str, image: np.ndarray) -> None:
    """Encode ``image`` (uint8 or uint16) as PNG and write it atomically."""
    ok, buf = cv2.imencode('.png', image)
    if not ok:
        raise ValueError(f'{path}: PNG encoding failed')
    atomic_write_bytes(path, buf.tobytes())
