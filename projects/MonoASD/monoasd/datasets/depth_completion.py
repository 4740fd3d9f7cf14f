# Copyright (c) MonoASD contributors. All rights reserved.
"""Dense depth maps for KITTI frames from their LiDAR scans.

For every frame of a KITTI split directory (``image_2``, ``calib``,
``velodyne``) the LiDAR points are projected into ``image_2`` with
``P2 @ R0_rect @ Tr_velo_to_cam`` (nearest point wins per pixel) and the
sparse map is completed with a classical morphological method in the style
of IP-Basic (Ku et al., 2018): depth is inverted so that near points win
dilations, holes are closed and filled with growing kernels, the top of
each column is extended upwards, and the result is smoothed with a median
and a bilateral filter before it is inverted back. The maps are written as
uint16 PNGs holding metres x 256 (0 = no depth), with the size of the
frame's image.

The command line is ``tools/dense_depth.py`` (it calls
:func:`complete_split`).
"""

import os
import struct
import time
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from ..utils.parallel import imap_frames
from .kitti_io import encode_depth, read_calib, write_png

DEFAULT_MAX_DEPTH = 80.0
#: Fewest LiDAR pixels in an image worth completing (a 64-beam KITTI scan
#: gives about 20k; a few hundred cannot describe the scene).
DEFAULT_MIN_POINTS = 1000
#: Points closer than this camera z (metres) are dropped.
MIN_POINT_DEPTH = 0.1
#: Values below this (metres, or inverted units) count as empty.
EMPTY_EPS = 0.1
#: Inverted depth = max_depth + INVERT_MARGIN - depth, so that points at
#: max_depth stay distinguishable from empty pixels.
INVERT_MARGIN = 1.0
#: Bytes per LiDAR point (4 float32: x, y, z, reflectance).
POINT_BYTES = 16
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'

# Completion kernels and filter sizes.
DIAMOND_KERNEL = np.array([[0, 0, 1, 0, 0],
                           [0, 1, 1, 1, 0],
                           [1, 1, 1, 1, 1],
                           [0, 1, 1, 1, 0],
                           [0, 0, 1, 0, 0]], dtype=np.uint8)
CLOSE_KERNEL_SIZE = 5
SMALL_FILL_KERNEL_SIZE = 7
LARGE_FILL_KERNEL_SIZE = 31
#: Iterations of the large fill before the remaining holes are left empty.
LARGE_FILL_ITERATIONS = 10
MEDIAN_KERNEL_SIZE = 5
BILATERAL_DIAMETER = 5
BILATERAL_SIGMA_COLOUR = 1.5
BILATERAL_SIGMA_SPACE = 2.0


def read_velodyne(path: str) -> np.ndarray:
    """Read a KITTI ``velodyne/*.bin`` scan.

    Args:
        path: Path of the binary file (little-endian float32 x, y, z, r).

    Returns:
        (N, 4) float32 points.

    Raises:
        ValueError: When the file is missing, empty or its size is not a
            multiple of 16 bytes; the message names the file.
    """
    try:
        size = os.path.getsize(path)
        if size % POINT_BYTES != 0:
            raise ValueError('%s: size %d bytes is not a multiple of %d '
                             '(truncated or corrupt point cloud)'
                             % (path, size, POINT_BYTES))
        if size == 0:
            raise ValueError('%s: empty point cloud' % path)
        data = np.fromfile(path, dtype='<f4')
    except OSError as err:
        raise ValueError('%s: cannot read point cloud (%s)' % (path, err))
    return data.reshape(-1, 4)


def image_size(path: str) -> Tuple[int, int]:
    """Height and width of an image, from the PNG header when possible.

    Args:
        path: Image path.

    Returns:
        (height, width).

    Raises:
        ValueError: When the image cannot be read.
    """
    try:
        with open(path, 'rb') as handle:
            head = handle.read(24)
    except OSError as err:
        raise ValueError('%s: cannot read image (%s)' % (path, err))
    if head[:8] == PNG_SIGNATURE and head[12:16] == b'IHDR':
        width, height = struct.unpack('>II', head[16:24])
        return int(height), int(width)
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError('%s: cannot decode image' % path)
    return image.shape[0], image.shape[1]


def project_velodyne(points: np.ndarray, calib: Dict[str, np.ndarray],
                     img_hw: Tuple[int, int]) -> np.ndarray:
    """Project LiDAR points into a sparse camera-z depth map.

    Points are mapped to rectified camera coordinates with
    ``R0_rect @ Tr_velo_to_cam`` and projected with the full 3x4 ``P2``.
    A point lands in pixel ``(round(v), round(u))``; points with camera z
    below MIN_POINT_DEPTH or outside the image are dropped, and the nearest
    point wins where several land in the same pixel.

    Args:
        points: (N, >=3) points in the LiDAR frame.
        calib: Dict with ``P2``, ``R0_rect`` and ``Tr_velo_to_cam``.
        img_hw: (height, width) of the image.

    Returns:
        (H, W) float32 depth in metres, 0 where no point projects.
    """
    height, width = img_hw
    depth = np.zeros((height, width), dtype=np.float32)
    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    tr = calib['Tr_velo_to_cam']
    rect = (xyz @ tr[:, :3].T + tr[:, 3]) @ calib['R0_rect'].T
    rect = rect[rect[:, 2] > MIN_POINT_DEPTH]
    if len(rect) == 0:
        return depth
    p2 = calib['P2']
    uvw = rect @ p2[:, :3].T + p2[:, 3]
    cols = np.floor(uvw[:, 0] / uvw[:, 2] + 0.5)
    rows = np.floor(uvw[:, 1] / uvw[:, 2] + 0.5)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    if not inside.any():
        return depth
    z = rect[inside, 2]
    lin = rows[inside].astype(np.int64) * width + cols[inside].astype(
        np.int64)
    order = np.argsort(z, kind='stable')
    lin, z = lin[order], z[order]
    # np.unique returns the first (i.e. nearest) occurrence of each pixel.
    pixels, first = np.unique(lin, return_index=True)
    depth.reshape(-1)[pixels] = z[first]
    return depth


def _fill_empty(inv: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Fill empty pixels with the dilation of their neighbourhood."""
    empty = inv < EMPTY_EPS
    dilated = cv2.dilate(inv, kernel)
    inv[empty] = dilated[empty]
    return inv


def _extend_columns_up(inv: np.ndarray) -> np.ndarray:
    """Copy each column's top-most valid value into the rows above it."""
    valid = inv > EMPTY_EPS
    has = valid.any(axis=0)
    top = np.argmax(valid, axis=0)
    cols = np.arange(inv.shape[1])
    top_values = inv[top, cols]
    above = (np.arange(inv.shape[0])[:, None] < top[None, :]) & has[None, :]
    return np.where(above, top_values[None, :], inv)


def complete_depth(sparse: np.ndarray,
                   max_depth: float = DEFAULT_MAX_DEPTH,
                   extend_up: bool = True,
                   keep_measured: bool = True) -> np.ndarray:
    """Complete a sparse depth map with morphological operations.

    Steps (on inverted depth so that the nearest point wins dilations):
    diamond dilation, closing of small holes, small and large fills of the
    remaining empty pixels, optional extension of each column's top value
    upwards (the LiDAR does not see above its top beam), a median filter
    and a bilateral filter, then inversion back to metres.

    Args:
        sparse: (H, W) depth in metres, 0 where empty.
        max_depth: Depths are clipped to this value (metres).
        extend_up: Fill the rows above each column's top-most value.
        keep_measured: Write the measured depths back into their pixels
            after smoothing.

    Returns:
        (H, W) float32 dense depth in metres (0 only where nothing could
        be filled, e.g. an input without points).
    """
    sparse = np.asarray(sparse, dtype=np.float32)
    measured = sparse > EMPTY_EPS
    depth = np.minimum(sparse, max_depth)
    offset = np.float32(max_depth + INVERT_MARGIN)
    inv = np.where(measured, offset - depth, 0.0).astype(np.float32)
    square = lambda size: np.ones((size, size), dtype=np.uint8)  # noqa: E731
    inv = cv2.dilate(inv, DIAMOND_KERNEL)
    inv = cv2.morphologyEx(inv, cv2.MORPH_CLOSE, square(CLOSE_KERNEL_SIZE))
    inv = _fill_empty(inv, square(SMALL_FILL_KERNEL_SIZE))
    if extend_up:
        inv = _extend_columns_up(inv)
    large = square(LARGE_FILL_KERNEL_SIZE)
    for _ in range(LARGE_FILL_ITERATIONS):
        if not (inv < EMPTY_EPS).any():
            break
        inv = _fill_empty(inv, large)
    valid = inv > EMPTY_EPS
    blurred = cv2.medianBlur(inv, MEDIAN_KERNEL_SIZE)
    inv[valid] = blurred[valid]
    blurred = cv2.bilateralFilter(inv, BILATERAL_DIAMETER,
                                  BILATERAL_SIGMA_COLOUR,
                                  BILATERAL_SIGMA_SPACE)
    inv[valid] = blurred[valid]
    # Filtering can pull values at the edge of the filled region towards 0.
    valid &= inv > EMPTY_EPS
    dense = np.where(valid, offset - inv, 0.0).astype(np.float32)
    dense = np.clip(dense, 0.0, max_depth)
    if keep_measured:
        dense[measured] = depth[measured]
    return dense


def process_frame(root: str, out_dir: str, frame_id: str,
                  max_depth: float = DEFAULT_MAX_DEPTH,
                  overwrite: bool = False,
                  min_points: int = DEFAULT_MIN_POINTS
                  ) -> Tuple[str, str, str]:
    """Build and write the dense depth map of one frame.

    Args:
        root: Split directory holding image_2, calib and velodyne.
        out_dir: Output directory.
        frame_id: Frame name without extension, e.g. ``'000123'``.
        max_depth: Depth clip (metres).
        overwrite: Rewrite an existing output.
        min_points: Fewest LiDAR pixels in the image worth completing; a
            sparser frame gets no map (status ``'sparse'``).

    Returns:
        ``(frame_id, status, message)`` with status ``'written'``,
        ``'skipped'``, ``'sparse'`` or ``'failed'`` (message says why).
    """
    out_path = os.path.join(out_dir, frame_id + '.png')
    if os.path.exists(out_path) and not overwrite:
        return frame_id, 'skipped', ''
    try:
        img_hw = image_size(os.path.join(root, 'image_2', frame_id + '.png'))
        calib = read_calib(os.path.join(root, 'calib', frame_id + '.txt'))
        points = read_velodyne(os.path.join(root, 'velodyne',
                                            frame_id + '.bin'))
        sparse = project_velodyne(points, calib, img_hw)
        n_valid = int((sparse > 0).sum())
        if n_valid < min_points:
            return frame_id, 'sparse', (
                f'{frame_id}: only {n_valid} LiDAR points project into the '
                f'image (fewer than {min_points}); no depth map written, '
                'it would be meaningless')
        dense = complete_depth(sparse, max_depth)
        write_png(out_path, encode_depth(dense))
    except (ValueError, OSError, cv2.error) as err:
        return frame_id, 'failed', str(err)
    return frame_id, 'written', ''


def _process_task(task: Tuple[str, str, str, float, bool, int]
                  ) -> Tuple[str, str, str]:
    return process_frame(*task)


def list_frames(root: str) -> List[str]:
    """Frame ids (file stems) of ``root/image_2/*.png``, sorted."""
    image_dir = os.path.join(root, 'image_2')
    return sorted(os.path.splitext(name)[0] for name in os.listdir(image_dir)
                  if name.endswith('.png') and not name.startswith('.'))


def complete_split(root: str,
                   out_dir: Optional[str] = None,
                   workers: int = 1,
                   overwrite: bool = False,
                   max_depth: float = DEFAULT_MAX_DEPTH,
                   min_points: int = DEFAULT_MIN_POINTS,
                   progress: bool = True) -> Dict:
    """Write the dense depth map of every frame of a KITTI split directory.

    Args:
        root (str): Split directory with ``image_2``, ``calib``,
            ``velodyne``.
        out_dir (str, optional): Output directory. Defaults to
            ``root/depth_dense``.
        workers (int): Processes.
        overwrite (bool): Rewrite existing maps.
        max_depth (float): Depth clip (metres).
        min_points (int): See :func:`process_frame`.
        progress (bool): Show a tqdm bar when tqdm is installed.

    Returns:
        dict: ``out_dir``, ``counts`` (written/skipped/sparse/failed),
        ``failures`` (messages naming the frame), ``no_image`` (scans
        without an image) and ``seconds``.

    Raises:
        ValueError: Non-positive ``workers``/``max_depth`` or no
            ``root/image_2``.
    """
    if workers <= 0 or max_depth <= 0:
        raise ValueError('workers and max_depth must be positive, got '
                         f'{workers} and {max_depth}')
    if not os.path.isdir(os.path.join(root, 'image_2')):
        raise ValueError(f'{root} has no image_2 directory')
    out_dir = out_dir or os.path.join(root, 'depth_dense')
    os.makedirs(out_dir, exist_ok=True)
    frames = list_frames(root)
    velo_dir = os.path.join(root, 'velodyne')
    no_image = sorted(
        set(os.path.splitext(n)[0] for n in os.listdir(velo_dir)
            if n.endswith('.bin')) - set(frames)) if os.path.isdir(
                velo_dir) else []
    tasks = [(root, out_dir, fid, max_depth, overwrite, min_points)
             for fid in frames]
    start = time.time()
    counts = {'written': 0, 'skipped': 0, 'sparse': 0, 'failed': 0}
    failures = []
    for _, status, message in imap_frames(_process_task, tasks, workers,
                                          'depth', progress):
        counts[status] += 1
        if status in ('failed', 'sparse'):
            failures.append(message)
    return dict(out_dir=out_dir, counts=counts, failures=sorted(failures),
                no_image=no_image, seconds=time.time() - start)
