# Copyright (c) MonoASD contributors. All rights reserved.
"""Synthetic street scenes in the KITTI 3D object layout.

Every frame is a procedurally built street scene (sky, a band of buildings,
textured asphalt with lane markings and a sidewalk, and 1-8 cuboid objects
of the classes Car, Pedestrian and Cyclist standing on a flat ground plane).
The scene is ray cast per pixel with the camera matrix ``P2`` of the frame,
which gives the RGB image, the camera-z depth map (written as
``depth_dense``) and an object-id buffer from which the truncation and
occlusion fields of the labels are computed. A 64-beam LiDAR is ray cast
against the same scene to write ``velodyne/*.bin``.

Layout written under ``--out`` (exactly the KITTI layout)::

    training/{image_2,calib,label_2,velodyne,depth_dense}/%06d.*
    testing/{image_2,calib,velodyne}/%06d.*
    ImageSets/{train,val,trainval,test}.txt

Conventions:
    * Rectified camera coordinates: x right, y down, z forward. The ground
      plane is ``y = CAMERA_HEIGHT``; label locations are the bottom centres
      of the boxes, so their y is ``CAMERA_HEIGHT``.
    * A pixel with column ``c`` and row ``r`` is sampled by the ray through
      the image point ``(u, v) = (c, r)``; projected points therefore belong
      to the pixel ``(round(u), round(v))``.
    * Depth maps store the rectified camera z of the first hit, in metres
      times ``DEPTH_SCALE``, as uint16 (0 where there is no hit: sky).

Each frame is generated from its own random stream seeded with
``(seed, split, frame id)``, so the output does not depend on the number of
worker processes.

The command line is ``tools/create_synthetic_kitti.py``
(:func:`write_dataset` is what it calls).
"""

import json
import math
import os
import time
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..datasets.kitti_io import (atomic_write_bytes, encode_depth,
                                 format_calib, parse_calib_text)
from ..utils.parallel import imap_frames

# ---------------------------------------------------------------------------
# Camera and calibration (values of the KITTI object benchmark)
# ---------------------------------------------------------------------------
KITTI_WIDTH = 1242
KITTI_HEIGHT = 375
KITTI_FOCAL = 721.5377
KITTI_CV = 172.854
#: Relative per-frame jitter of the focal length.
FOCAL_JITTER = 0.004
#: Range of the principal point offset from the image centre (pixels at
#: full resolution); KITTI's cu = 609.56 is 11.4 px left of 621.
CU_OFFSET_RANGE = (-12.0, 4.0)
#: Per-frame jitter of the principal point row (pixels at full resolution).
CV_JITTER = 2.0
#: Translation column of P2 (pixels, pixels, metres) as in KITTI.
P2_TRANSLATION = (44.857, 0.2163, 0.00274)
#: Translation columns of the other projection matrices (KITTI values).
P0_TRANSLATION = (0.0, 0.0, 0.0)
P1_TRANSLATION = (-386.1448, 0.0, 0.0)
P3_TRANSLATION = (-339.5242, 2.199936, 0.002729905)
#: Largest angle (radians) of the small random rotation in R0_rect.
R0_MAX_ANGLE = 0.004
#: Largest angle (radians) of the small random rotation in Tr_velo_to_cam.
TR_MAX_ANGLE = 0.004
#: Camera height above the ground plane (metres).
CAMERA_HEIGHT = 1.65
#: Height of the LiDAR above the ground plane (metres).
LIDAR_HEIGHT = 1.73
#: LiDAR origin in the (unrectified) camera frame: x, z as in KITTI's
#: Tr_velo_to_cam; y puts the sensor LIDAR_HEIGHT above the ground.
LIDAR_OFFSET_XZ = (-0.004, -0.272)
#: Jitter (metres) of the LiDAR origin.
LIDAR_OFFSET_JITTER = 0.003
#: Axis permutation velodyne (x fwd, y left, z up) -> camera (x right,
#: y down, z fwd).
VELO_TO_CAM_AXES = np.array([[0.0, -1.0, 0.0],
                             [0.0, 0.0, -1.0],
                             [1.0, 0.0, 0.0]])
#: Tr_imu_to_velo (KITTI values, constant).
IMU_TO_VELO = np.array([
    [9.999976e-01, 7.553071e-04, -2.035826e-03, -8.086759e-01],
    [-7.854027e-04, 9.998898e-01, -1.482298e-02, 3.195559e-01],
    [2.024406e-03, 1.482454e-02, 9.998881e-01, -7.997231e-01]])

# ---------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------
CLASS_NAMES = ('Car', 'Pedestrian', 'Cyclist')
CLASS_PROBS = (0.7, 0.15, 0.15)
#: Mean (h, w, l) in metres per class (KITTI statistics).
CLASS_MEAN_DIMS = {'Car': (1.53, 1.63, 3.88),
                   'Pedestrian': (1.76, 0.66, 0.84),
                   'Cyclist': (1.74, 0.60, 1.76)}
#: Standard deviation of (h, w, l) per class.
CLASS_STD_DIMS = {'Car': (0.10, 0.08, 0.30),
                  'Pedestrian': (0.10, 0.07, 0.12),
                  'Cyclist': (0.08, 0.06, 0.15)}
#: Dimension jitter is clipped at this many standard deviations.
DIM_CLIP_SIGMA = 2.5
MIN_OBJECTS = 1
MAX_OBJECTS = 8
OBJECT_Z_RANGE = (5.0, 60.0)
#: Lateral placement: |x| <= this fraction of the frustum half width.
LATERAL_FRACTION = 1.0
#: Yaw distributions (``yaw`` of :func:`write_dataset`): ``'uniform'``
#: draws every ry in [-pi, pi); ``'road'`` puts this fraction of the cars
#: and cyclists along the road (ry = +-pi/2 plus Gaussian noise of
#: ROAD_YAW_STD rad), as most cars on KITTI drive or park, and draws the
#: rest (and every pedestrian) uniformly.
YAW_MODES = ('uniform', 'road')
ROAD_ALIGNED_FRACTION = 0.8
ROAD_YAW_STD = 0.1
ROAD_CLASSES = ('Car', 'Cyclist')
#: Clearance (metres) kept between object footprints in bird's eye view.
BEV_MARGIN = 0.3
MAX_PLACEMENT_TRIES = 100
#: Label values are rounded to this many decimals before rendering so that
#: the written labels describe the rendered scene exactly.
LABEL_DECIMALS = 2
#: Visible-pixel fraction thresholds for the occlusion levels 0, 1, 2 (else
#: 3): hidden fraction < 0.1 -> 0, < 0.4 -> 1, < 0.8 -> 2.
OCCLUSION_THRESHOLDS = (0.1, 0.4, 0.8)
#: Objects with fewer visible pixels than this are written as DontCare.
MIN_LABEL_PIXELS = 10
#: Probability of an extra DontCare region over a distant, unlabeled patch.
DONTCARE_PROB = 0.25

# ---------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------
#: Distance (camera z) of the background building facade.
WALL_Z_RANGE = (66.0, 78.0)
BUILDING_WIDTH_RANGE = (8.0, 26.0)
BUILDING_HEIGHT_RANGE = (6.0, 28.0)
#: Lateral extent (metres) covered by buildings.
BUILDING_EXTENT = 220.0
ROAD_HALF_WIDTH_RANGE = (7.0, 12.0)
ROAD_CENTRE_RANGE = (-2.5, 2.5)
LANE_WIDTH = 3.5
LANE_MARK_WIDTH = 0.15
#: Dashed lane markings: painted for DASH_ON metres every DASH_PERIOD.
DASH_PERIOD = 9.0
DASH_ON = 3.0
WINDOW_PERIOD = (2.6, 3.2)  # (horizontal, vertical) metres
WINDOW_SIZE = (1.3, 1.5)
NOISE_TABLE_SIZE = 64

# ---------------------------------------------------------------------------
# Shading
# ---------------------------------------------------------------------------
#: Direction towards the light in camera coordinates (normalised below).
LIGHT_DIR = np.array([0.35, -1.0, -0.45])
LIGHT_DIR = LIGHT_DIR / np.linalg.norm(LIGHT_DIR)
AMBIENT = 0.4
DIFFUSE = 0.6
#: Contact shadow: strength and fall-off distance (metres) on the ground.
SHADOW_STRENGTH = 0.55
SHADOW_FALLOFF = 0.6
#: Aerial perspective: distance (metres) at which haze reaches 63 %.
HAZE_DISTANCE = 350.0
HAZE_COLOUR = np.array([0.72, 0.76, 0.80])
SKY_HORIZON = np.array([0.78, 0.84, 0.90])
SKY_ZENITH = np.array([0.35, 0.52, 0.80])
#: Ray elevation (tangent) at which the sky reaches the zenith colour.
SKY_GRADIENT_SPAN = 0.35
EXPOSURE_RANGE = (0.85, 1.15)
SENSOR_NOISE_STD = 0.012
BLUR_SIGMA = 0.6

# ---------------------------------------------------------------------------
# LiDAR
# ---------------------------------------------------------------------------
LIDAR_BEAMS = 64
LIDAR_ELEVATION_RANGE = (-24.8, 2.0)  # degrees
LIDAR_AZIMUTH_RES = 0.2  # degrees
LIDAR_HFOV = 120.0  # degrees, centred on the forward axis
LIDAR_MAX_RANGE = 80.0
LIDAR_RANGE_NOISE_STD = 0.01
LIDAR_DROPOUT = 0.02
REFLECTANCE_NOISE_STD = 0.03

# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------
#: KITTI depth-completion crop size relative to the 1242x375 image.
DEPTH_CROP_REF = (1216, 352)
SPLIT_CODES = {'training': 0, 'testing': 1}
TRAIN_DIRS = ('image_2', 'calib', 'label_2', 'velodyne', 'depth_dense')
TEST_DIRS = ('image_2', 'calib', 'velodyne')

# Surface ids in the render buffers.
SKY_ID = -3
WALL_ID = -2
GROUND_ID = -1

SeedLike = Union[int, Sequence[int]]


# ===========================================================================
# Small helpers
# ===========================================================================
def rot_y(angle: float) -> np.ndarray:
    """Rotation about the camera y axis (KITTI ``rotation_y`` convention).

    Args:
        angle: Angle in radians.

    Returns:
        3x3 rotation matrix mapping box-local to camera coordinates.
    """
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def small_rotation(rng: np.random.Generator, max_angle: float) -> np.ndarray:
    """Random rotation with each Euler angle uniform in ``±max_angle``.

    Args:
        rng: Random generator.
        max_angle: Largest angle in radians.

    Returns:
        3x3 rotation matrix.
    """
    ax, ay, az = rng.uniform(-max_angle, max_angle, size=3)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)],
                   [0, math.sin(ax), math.cos(ax)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0],
                   [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ rot_y(ay) @ rx


def wrap_angle(angle: float) -> float:
    """Wrap an angle to ``[-pi, pi]``."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def box_corners(dims: Sequence[float], loc: Sequence[float],
                ry: float) -> np.ndarray:
    """Eight corners of a KITTI box in camera coordinates.

    Args:
        dims: (h, w, l) in metres.
        loc: Bottom centre (x, y, z) in camera coordinates.
        ry: Rotation around the y axis.

    Returns:
        (8, 3) array of corners.
    """
    h, w, length = dims
    xs = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * (length / 2.0)
    ys = np.array([0, 0, 0, 0, -1, -1, -1, -1]) * h
    zs = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * (w / 2.0)
    corners = rot_y(ry) @ np.stack([xs, ys, zs])
    return corners.T + np.asarray(loc, dtype=np.float64)


def project(points: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """Project rectified camera points with a full 3x4 matrix.

    Args:
        points: (N, 3) points.
        p2: 3x4 projection matrix.

    Returns:
        (N, 2) image coordinates.
    """
    hom = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    uvw = hom @ p2.T
    return uvw[:, :2] / uvw[:, 2:3]


def bev_rectangles_overlap(a: Dict[str, Any], b: Dict[str, Any],
                           margin: float) -> bool:
    """Separating-axis test of two objects' footprints in bird's eye view.

    Args:
        a: Object dict with ``dims`` (h, w, l), ``loc`` and ``ry``.
        b: Second object dict.
        margin: Extra clearance added to each half extent (metres).

    Returns:
        True when the (enlarged) footprints intersect.
    """
    def rect(obj):
        _, w, length = obj['dims']
        c, s = math.cos(obj['ry']), math.sin(obj['ry'])
        # Local x (length) and z (width) axes in the camera x-z plane.
        axes = np.array([[c, -s], [s, c]])
        half = np.array([length / 2.0 + margin, w / 2.0 + margin])
        centre = np.array([obj['loc'][0], obj['loc'][2]])
        return centre, axes, half

    ca, axes_a, half_a = rect(a)
    cb, axes_b, half_b = rect(b)
    delta = cb - ca
    for axis in np.concatenate([axes_a, axes_b]):
        ra = np.sum(half_a * np.abs(axes_a @ axis))
        rb = np.sum(half_b * np.abs(axes_b @ axis))
        if abs(delta @ axis) > ra + rb:
            return False
    return True


def _value_noise(table: np.ndarray, a: np.ndarray,
                 b: np.ndarray) -> np.ndarray:
    """Smooth periodic value noise sampled at continuous lattice coords.

    Args:
        table: (n, n) random lattice values in [0, 1].
        a: First coordinate (lattice units), any shape.
        b: Second coordinate, same shape as ``a``.

    Returns:
        Noise values in [0, 1] with the shape of ``a``.
    """
    n = table.shape[0]
    a0 = np.floor(a)
    b0 = np.floor(b)
    fa = a - a0
    fb = b - b0
    fa = fa * fa * (3.0 - 2.0 * fa)
    fb = fb * fb * (3.0 - 2.0 * fb)
    ia = a0.astype(np.int64) % n
    ib = b0.astype(np.int64) % n
    ia1 = (ia + 1) % n
    ib1 = (ib + 1) % n
    top = table[ia, ib] * (1 - fb) + table[ia, ib1] * fb
    bot = table[ia1, ib] * (1 - fb) + table[ia1, ib1] * fb
    return top * (1 - fa) + bot * fa


def fbm(table: np.ndarray, a: np.ndarray, b: np.ndarray,
        octaves: int = 3) -> np.ndarray:
    """Fractal sum of value noise, normalised to roughly [0, 1]."""
    total = np.zeros(np.shape(a))
    amp, freq, norm = 1.0, 1.0, 0.0
    for octave in range(octaves):
        # Offset each octave so that the lattices do not line up.
        total += amp * _value_noise(table, a * freq + 17.0 * octave,
                                    b * freq + 31.0 * octave)
        norm += amp
        amp *= 0.5
        freq *= 2.0
    return total / norm


# ===========================================================================
# Calibration
# ===========================================================================
def make_calib(rng: np.random.Generator, width: int,
               height: int) -> Dict[str, np.ndarray]:
    """Sample KITTI-like calibration matrices for one frame.

    Intrinsics are KITTI's, scaled with the image size relative to 1242x375
    and jittered slightly.

    Args:
        rng: Random generator.
        width: Image width in pixels.
        height: Image height in pixels.

    Returns:
        Dict with the 7 KITTI calibration matrices (float64).
    """
    sx = width / KITTI_WIDTH
    sy = height / KITTI_HEIGHT
    focal = KITTI_FOCAL * (1.0 + rng.uniform(-FOCAL_JITTER, FOCAL_JITTER))
    cu = width / 2.0 + rng.uniform(*CU_OFFSET_RANGE) * sx
    cv = KITTI_CV * sy + rng.uniform(-CV_JITTER, CV_JITTER) * sy
    k = np.array([[focal * sx, 0.0, cu], [0.0, focal * sy, cv],
                  [0.0, 0.0, 1.0]])
    scale = np.array([sx, sy, 1.0])

    def proj(translation):
        return np.concatenate(
            [k, (np.asarray(translation) * scale)[:, None]], axis=1)

    r0 = small_rotation(rng, R0_MAX_ANGLE)
    # The LiDAR origin, expressed in rectified coordinates, must sit
    # LIDAR_HEIGHT above the ground: solve for the unrectified offset.
    jitter = rng.uniform(-LIDAR_OFFSET_JITTER, LIDAR_OFFSET_JITTER, 2)
    off_rect = np.array([LIDAR_OFFSET_XZ[0] + jitter[0],
                         CAMERA_HEIGHT - LIDAR_HEIGHT,
                         LIDAR_OFFSET_XZ[1] + jitter[1]])
    off_cam = r0.T @ off_rect
    rot = small_rotation(rng, TR_MAX_ANGLE) @ VELO_TO_CAM_AXES
    tr = np.concatenate([rot, off_cam[:, None]], axis=1)
    return {
        'P0': proj(P0_TRANSLATION),
        'P1': proj(P1_TRANSLATION),
        'P2': proj(P2_TRANSLATION),
        'P3': proj(P3_TRANSLATION),
        'R0_rect': r0,
        'Tr_velo_to_cam': tr,
        'Tr_imu_to_velo': IMU_TO_VELO.copy(),
    }


def camera_centre(p2: np.ndarray) -> np.ndarray:
    """Optical centre of a 3x4 projection matrix (rectified coordinates)."""
    return -np.linalg.solve(p2[:, :3], p2[:, 3])


# ===========================================================================
# Scene sampling
# ===========================================================================
def _random_colour(rng: np.random.Generator, palette: Sequence[Sequence[
        float]], jitter: float) -> np.ndarray:
    base = np.asarray(palette[rng.integers(len(palette))], dtype=np.float64)
    return np.clip(base + rng.uniform(-jitter, jitter, 3), 0.0, 1.0)


CAR_PALETTE = ((0.85, 0.85, 0.86), (0.62, 0.63, 0.66), (0.12, 0.12, 0.13),
               (0.62, 0.08, 0.07), (0.10, 0.20, 0.52), (0.30, 0.31, 0.33),
               (0.16, 0.32, 0.20), (0.75, 0.62, 0.30))
CLOTHES_PALETTE = ((0.70, 0.15, 0.12), (0.15, 0.30, 0.60), (0.85, 0.80, 0.20),
                   (0.20, 0.55, 0.25), (0.90, 0.90, 0.88), (0.35, 0.20, 0.45),
                   (0.95, 0.50, 0.10))
TROUSERS_PALETTE = ((0.10, 0.12, 0.25), (0.08, 0.08, 0.08), (0.35, 0.35, 0.35),
                    (0.40, 0.32, 0.22))
SKIN_PALETTE = ((0.87, 0.70, 0.58), (0.65, 0.45, 0.33), (0.40, 0.27, 0.19))
BUILDING_PALETTE = ((0.70, 0.62, 0.52), (0.55, 0.50, 0.47), (0.78, 0.76, 0.70),
                    (0.55, 0.35, 0.28), (0.45, 0.48, 0.52))
#: Base LiDAR reflectance per surface kind.
REFLECTANCE = {'road': 0.18, 'marking': 0.75, 'sidewalk': 0.32,
               'wall': 0.28, 'Car': 0.45, 'glass': 0.06,
               'Pedestrian': 0.30, 'Cyclist': 0.35}


def sample_object(rng: np.random.Generator, cls: str,
                  calib: Dict[str, np.ndarray],
                  width: int, yaw: str = 'uniform') -> Dict[str, Any]:
    """Sample one object of a class, with geometry and appearance.

    Args:
        rng: Random generator.
        cls: Class name.
        calib: Calibration dict (for the lateral placement range).
        width: Image width.
        yaw: ``'uniform'`` or ``'road'`` (see :data:`YAW_MODES`);
            ``'uniform'`` draws exactly what it drew before the option.

    Returns:
        Object dict with ``cls``, ``dims`` (h, w, l), ``loc`` (bottom
        centre), ``ry`` and appearance parameters.
    """
    mean = np.asarray(CLASS_MEAN_DIMS[cls])
    std = np.asarray(CLASS_STD_DIMS[cls])
    noise = np.clip(rng.normal(size=3), -DIM_CLIP_SIGMA, DIM_CLIP_SIGMA)
    dims = np.round(mean + std * noise, LABEL_DECIMALS)
    z = round(rng.uniform(*OBJECT_Z_RANGE), LABEL_DECIMALS)
    p2 = calib['P2']
    # Frustum half-width at depth z, measured from the principal ray.
    half_width = max(p2[0, 2], width - p2[0, 2]) / p2[0, 0] * z
    x = round(rng.uniform(-1.0, 1.0) * half_width * LATERAL_FRACTION,
              LABEL_DECIMALS)
    if (yaw == 'road' and cls in ROAD_CLASSES
            and rng.random() < ROAD_ALIGNED_FRACTION):
        sign = 1.0 if rng.random() < 0.5 else -1.0
        ry = round(wrap_angle(sign * math.pi / 2 +
                              rng.normal(0.0, ROAD_YAW_STD)), LABEL_DECIMALS)
    else:
        ry = round(rng.uniform(-math.pi, math.pi), LABEL_DECIMALS)
    obj = {'cls': cls, 'dims': tuple(float(d) for d in dims),
           'loc': (float(x), CAMERA_HEIGHT, float(z)), 'ry': float(ry)}
    obj.update(sample_appearance(rng, cls))
    return obj


def sample_appearance(rng: np.random.Generator, cls: str) -> Dict[str, Any]:
    """Sample the colours and texture parameters of an object.

    Args:
        rng: Random generator.
        cls: Class name.

    Returns:
        Dict with ``colour``, ``colour2``, ``colour3`` (RGB in [0, 1]),
        ``noise_scale`` and ``noise_amp``.
    """
    if cls == 'Car':
        colour = _random_colour(rng, CAR_PALETTE, 0.06)
        colour2 = np.array([0.08, 0.10, 0.13]) + rng.uniform(0, 0.06, 3)
        colour3 = np.array([0.05, 0.05, 0.05])
    else:
        colour = _random_colour(rng, CLOTHES_PALETTE, 0.08)
        colour2 = _random_colour(rng, TROUSERS_PALETTE, 0.04)
        colour3 = _random_colour(rng, SKIN_PALETTE, 0.03)
    return {'colour': colour, 'colour2': colour2, 'colour3': colour3,
            'noise_scale': float(rng.uniform(3.0, 8.0)),
            'noise_amp': float(rng.uniform(0.08, 0.2)),
            'noise_table': rng.random((NOISE_TABLE_SIZE, NOISE_TABLE_SIZE))}


def sample_objects(rng: np.random.Generator, calib: Dict[str, np.ndarray],
                   width: int, yaw: str = 'uniform') -> List[Dict[str, Any]]:
    """Sample 1-8 non-overlapping objects standing on the ground.

    Args:
        rng: Random generator.
        calib: Calibration dict.
        width: Image width.
        yaw: Yaw distribution (:data:`YAW_MODES`).

    Returns:
        List of object dicts (see :func:`sample_object`).
    """
    count = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
    objects: List[Dict[str, Any]] = []
    for _ in range(count):
        cls = CLASS_NAMES[rng.choice(len(CLASS_NAMES), p=CLASS_PROBS)]
        for _ in range(MAX_PLACEMENT_TRIES):
            obj = sample_object(rng, cls, calib, width, yaw)
            if not any(bev_rectangles_overlap(obj, other, BEV_MARGIN)
                       for other in objects):
                objects.append(obj)
                break
    return objects


def sample_environment(rng: np.random.Generator) -> Dict[str, Any]:
    """Sample the static background: buildings, road and textures.

    Args:
        rng: Random generator.

    Returns:
        Environment dict.
    """
    edges = [-BUILDING_EXTENT / 2.0]
    while edges[-1] < BUILDING_EXTENT / 2.0:
        edges.append(edges[-1] + rng.uniform(*BUILDING_WIDTH_RANGE))
    edges = np.asarray(edges)
    count = len(edges) - 1
    colours = np.stack([_random_colour(rng, BUILDING_PALETTE, 0.08)
                        for _ in range(count)])
    return {
        'wall_z': float(rng.uniform(*WALL_Z_RANGE)),
        'building_edges': edges,
        'building_heights': rng.uniform(*BUILDING_HEIGHT_RANGE, size=count),
        'building_colours': colours,
        'road_centre': float(rng.uniform(*ROAD_CENTRE_RANGE)),
        'road_half_width': float(rng.uniform(*ROAD_HALF_WIDTH_RANGE)),
        'asphalt': np.array([0.36, 0.36, 0.37]) * rng.uniform(0.8, 1.15),
        'sidewalk': np.array([0.62, 0.60, 0.56]) * rng.uniform(0.85, 1.1),
        'exposure': float(rng.uniform(*EXPOSURE_RANGE)),
        'tint': 1.0 + rng.uniform(-0.04, 0.04, 3),
        'noise_table': rng.random((NOISE_TABLE_SIZE, NOISE_TABLE_SIZE)),
    }


# ===========================================================================
# Ray casting
# ===========================================================================
def intersect_box(origin: np.ndarray, dirs: np.ndarray,
                  obj: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """Intersect rays with an oriented box (slab method in the box frame).

    Args:
        origin: (3,) common ray origin (rectified camera coordinates).
        dirs: (N, 3) ray directions (need not be normalised).
        obj: Object dict.

    Returns:
        Dict with ``hit`` (N,) bool, ``t`` (N,) ray parameter of the entry
        point, ``axis`` (N,) local axis of the entry face (0: length, 1:
        height, 2: width), ``sign`` (N,) side of that face and ``p`` (N, 3)
        entry point in box-local coordinates (centred on the box).
    """
    h, w, length = obj['dims']
    rot = rot_y(obj['ry'])
    centre = np.asarray(obj['loc']) + np.array([0.0, -h / 2.0, 0.0])
    half = np.array([length / 2.0, h / 2.0, w / 2.0])
    o = rot.T @ (origin - centre)
    d = dirs @ rot
    d = np.where(d == 0.0, 1e-12, d)
    inv = 1.0 / d
    t1 = (-half - o) * inv
    t2 = (half - o) * inv
    t_near = np.minimum(t1, t2)
    t_far = np.maximum(t1, t2)
    axis = np.argmax(t_near, axis=1)
    t_in = np.take_along_axis(t_near, axis[:, None], axis=1)[:, 0]
    t_out = t_far.min(axis=1)
    hit = (t_out >= t_in) & (t_in > 0.0)
    p = o + t_in[:, None] * d
    sign = np.sign(np.take_along_axis(p, axis[:, None], axis=1)[:, 0])
    return {'hit': hit, 't': t_in, 'axis': axis, 'sign': sign, 'p': p}


def intersect_background(origin: np.ndarray, dirs: np.ndarray,
                         env: Dict[str, Any]) -> Tuple[np.ndarray,
                                                       np.ndarray]:
    """Intersect rays with the ground plane and the building facade.

    Args:
        origin: (3,) ray origin.
        dirs: (N, 3) directions.
        env: Environment dict.

    Returns:
        ``(t, surface)``: ray parameter (inf for sky) and surface id
        (GROUND_ID, WALL_ID or SKY_ID) per ray.
    """
    n = len(dirs)
    t = np.full(n, np.inf)
    surface = np.full(n, SKY_ID, dtype=np.int64)
    with np.errstate(divide='ignore', invalid='ignore'):
        t_wall = (env['wall_z'] - origin[2]) / dirs[:, 2]
        y_wall = origin[1] + t_wall * dirs[:, 1]
        x_wall = origin[0] + t_wall * dirs[:, 0]
        t_ground = (CAMERA_HEIGHT - origin[1]) / dirs[:, 1]
    building = np.clip(np.searchsorted(env['building_edges'], x_wall) - 1,
                       0, len(env['building_heights']) - 1)
    top = env['building_heights'][building]
    wall_ok = ((dirs[:, 2] > 0) & (t_wall > 0)
               & (CAMERA_HEIGHT - y_wall <= top))
    ground_ok = (dirs[:, 1] > 0) & (t_ground > 0)
    t[wall_ok] = t_wall[wall_ok]
    surface[wall_ok] = WALL_ID
    closer = ground_ok & (t_ground < t)
    t[closer] = t_ground[closer]
    surface[closer] = GROUND_ID
    return t, surface


def ground_kind(x: np.ndarray, z: np.ndarray,
                env: Dict[str, Any]) -> np.ndarray:
    """Classify ground points as road (0), lane marking (1), sidewalk (2).

    Args:
        x: Lateral coordinates (metres).
        z: Forward coordinates (metres).
        env: Environment dict.

    Returns:
        Integer kind per point.
    """
    rel = x - env['road_centre']
    half = env['road_half_width']
    kind = np.where(np.abs(rel) > half, 2, 0)
    # Solid edge lines just inside the road boundary.
    edge = np.abs(np.abs(rel) - (half - 0.3)) < LANE_MARK_WIDTH / 2.0
    # Dashed lines at multiples of the lane width from the centre line.
    lane_pos = rel / LANE_WIDTH
    near_line = (np.abs(lane_pos - np.round(lane_pos)) * LANE_WIDTH
                 < LANE_MARK_WIDTH / 2.0)
    dashed = near_line & (np.mod(z, DASH_PERIOD) < DASH_ON)
    inner = np.abs(rel) < half - 1.0
    kind = np.where((edge | (dashed & inner)) & (kind == 0), 1, kind)
    return kind


def _lambert(normal: np.ndarray) -> np.ndarray:
    """Ambient plus diffuse shading factor for (N, 3) unit normals."""
    return AMBIENT + DIFFUSE * np.clip(normal @ LIGHT_DIR, 0.0, None)


def shade_ground(points: np.ndarray, env: Dict[str, Any],
                 objects: Sequence[Dict[str, Any]]) -> np.ndarray:
    """Colour of ground hit points (asphalt, markings, sidewalk, shadows).

    Args:
        points: (N, 3) hit points on the ground plane.
        env: Environment dict.
        objects: Scene objects (for contact shadows).

    Returns:
        (N, 3) RGB in [0, 1].
    """
    x, z = points[:, 0], points[:, 2]
    kind = ground_kind(x, z, env)
    table = env['noise_table']
    grain = fbm(table, x * 4.0, z * 4.0, octaves=2)
    patches = _value_noise(table, x * 0.3 + 5.0, z * 0.3 + 9.0)
    colour = np.empty((len(points), 3))
    road = env['asphalt'][None] * (0.8 + 0.25 * grain[:, None]
                                   + 0.15 * patches[:, None])
    # Sidewalk slabs: darker seams every metre.
    seam = ((np.mod(x, 1.0) < 0.04) | (np.mod(z, 1.0) < 0.04))
    side = env['sidewalk'][None] * (0.85 + 0.2 * grain[:, None])
    side[seam] *= 0.7
    mark = np.array([0.92, 0.92, 0.88])[None] * (0.85 + 0.15 * grain[:, None])
    colour[:] = road
    colour[kind == 1] = mark[kind == 1]
    colour[kind == 2] = side[kind == 2]
    shade = np.full(len(points), _lambert(np.array([[0.0, -1.0, 0.0]]))[0])
    # Soft contact shadows displaced away from the light.
    shift = -LIGHT_DIR[[0, 2]] / -LIGHT_DIR[1]
    for obj in objects:
        h, w, length = obj['dims']
        cx = obj['loc'][0] + shift[0] * h / 2.0
        cz = obj['loc'][2] + shift[1] * h / 2.0
        c, s = math.cos(obj['ry']), math.sin(obj['ry'])
        dx, dz = x - cx, z - cz
        lx = c * dx - s * dz
        lz = s * dx + c * dz
        qx = np.maximum(np.abs(lx) - length / 2.0, 0.0)
        qz = np.maximum(np.abs(lz) - w / 2.0, 0.0)
        dist = np.hypot(qx, qz)
        shade *= 1.0 - SHADOW_STRENGTH * np.exp(-dist / SHADOW_FALLOFF)
    return colour * shade[:, None]


def shade_wall(points: np.ndarray, env: Dict[str, Any]) -> np.ndarray:
    """Colour of building facade hit points (colour per building, windows).

    Args:
        points: (N, 3) hit points on the facade plane.
        env: Environment dict.

    Returns:
        (N, 3) RGB in [0, 1].
    """
    x = points[:, 0]
    height = CAMERA_HEIGHT - points[:, 1]
    building = np.clip(np.searchsorted(env['building_edges'], x) - 1, 0,
                       len(env['building_heights']) - 1)
    colour = env['building_colours'][building].copy()
    grain = fbm(env['noise_table'], x * 2.0 + 40.0, height * 2.0, octaves=2)
    colour *= (0.85 + 0.25 * grain)[:, None]
    px, py = WINDOW_PERIOD
    wx, wy = WINDOW_SIZE
    window = ((np.mod(x, px) < wx) & (np.mod(height, py) > py - wy)
              & (height > py) & (height < env['building_heights'][building]
                                 - 1.0))
    glass = np.array([0.18, 0.22, 0.28]) * (0.8 + 0.5 * grain[:, None])
    colour[window] = glass[window]
    shade = _lambert(np.array([[0.0, 0.0, -1.0]]))[0]
    return colour * shade


def shade_sky(dirs: np.ndarray, env: Dict[str, Any]) -> np.ndarray:
    """Vertical sky gradient with faint clouds.

    Args:
        dirs: (N, 3) ray directions.
        env: Environment dict.

    Returns:
        (N, 3) RGB in [0, 1].
    """
    forward = np.maximum(np.hypot(dirs[:, 0], dirs[:, 2]), 1e-6)
    elevation = np.clip(-dirs[:, 1] / forward / SKY_GRADIENT_SPAN, 0.0, 1.0)
    colour = (SKY_HORIZON[None] * (1 - elevation[:, None])
              + SKY_ZENITH[None] * elevation[:, None])
    clouds = fbm(env['noise_table'], dirs[:, 0] / forward * 6.0 + 80.0,
                 -dirs[:, 1] / forward * 14.0, octaves=3)
    cover = np.clip((clouds - 0.55) * 3.0, 0.0, 1.0)[:, None]
    return colour * (1 - cover) + np.array([0.93, 0.94, 0.95]) * cover


def _face_coords(hit: Dict[str, np.ndarray],
                 dims: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """Face-local coordinates: horizontal ``s`` and height above bottom."""
    h = dims[0]
    p = hit['p']
    height = h / 2.0 - p[:, 1]
    # Side faces (axis 2) run along the length (x), front/back (axis 0)
    # along the width (z); for the top face use x.
    s = np.where(hit['axis'] == 0, p[:, 2], p[:, 0])
    return s, height


def shade_object(obj: Dict[str, Any],
                 hit: Dict[str, np.ndarray]) -> np.ndarray:
    """Textured, Lambert-shaded colour of an object's hit points.

    Args:
        obj: Object dict (with appearance parameters).
        hit: Output of :func:`intersect_box` restricted to hit rays.

    Returns:
        (N, 3) RGB in [0, 1].
    """
    h, w, length = obj['dims']
    s, height = _face_coords(hit, obj['dims'])
    axis = hit['axis']
    side = axis == 2
    ends = axis == 0
    top = axis == 1
    n = len(s)
    colour = np.repeat(obj['colour'][None], n, axis=0)
    c2, c3 = obj['colour2'], obj['colour3']
    if obj['cls'] == 'Car':
        glass_band = (height > 0.58 * h) & (height < 0.92 * h)
        windows = (side & glass_band & (s > -0.32 * length)
                   & (s < 0.30 * length))
        shield = ends & glass_band & (np.abs(s) < 0.42 * w)
        colour[windows | shield] = c2
        # Door seams and a dark bumper strip.
        seam = side & (height < 0.58 * h) & (
            (np.abs(s - 0.05 * length) < 0.015)
            | (np.abs(s + 0.22 * length) < 0.015))
        colour[seam] *= 0.5
        bumper = ends & (height < 0.22 * h)
        colour[bumper] = c3 + 0.1
        # Wheels on the sides and lights on the ends.
        for ws in (-0.32 * length, 0.32 * length):
            wheel = side & (np.hypot(s - ws, height - 0.33) < 0.32)
            colour[wheel] = c3
            hub = side & (np.hypot(s - ws, height - 0.33) < 0.12)
            colour[hub] = 0.55
        lights = ends & (height > 0.38 * h) & (height < 0.5 * h) & (
            np.abs(s) > 0.28 * w) & (np.abs(s) < 0.46 * w)
        front = hit['sign'] > 0
        colour[lights & front] = (0.95, 0.93, 0.80)
        colour[lights & ~front] = (0.75, 0.08, 0.06)
        colour[top] *= 0.9
    else:
        legs = height < 0.48 * h
        head = height > 0.86 * h
        colour[legs] = c2
        colour[head] = c3
        colour[head & (height > 0.95 * h)] = (0.12, 0.09, 0.07)
        if obj['cls'] == 'Pedestrian':
            gap = ends & legs & (np.abs(s) < 0.06 * w)
            colour[gap] *= 0.4
            arms = side & ~legs & ~head & (np.abs(s) < 0.08 * length)
            colour[arms] *= 0.8
        else:
            # A bicycle: dark frame band and two wheel rings on the sides.
            colour[legs & ends] = (0.08, 0.08, 0.09)
            for ws in (-0.3 * length, 0.3 * length):
                r = np.hypot(s - ws, height - 0.34)
                colour[side & (np.abs(r - 0.3) < 0.04)] = (0.05, 0.05, 0.05)
            frame = side & (np.abs(height - 0.5) < 0.03) & (
                np.abs(s) < 0.3 * length)
            colour[frame] = obj['colour'] * 0.6
            helmet = head & (height > 0.93 * h)
            colour[helmet] = (0.9, 0.9, 0.9)
    noise = fbm(obj['noise_table'], s * obj['noise_scale'],
                height * obj['noise_scale'], octaves=2)
    colour = colour * (1.0 - obj['noise_amp'] + 2 * obj['noise_amp']
                       * noise[:, None])
    normal_local = np.zeros((n, 3))
    normal_local[np.arange(n), axis] = hit['sign']
    normal = normal_local @ rot_y(obj['ry']).T
    return colour * _lambert(normal)[:, None]


def object_reflectance(obj: Dict[str, Any],
                       hit: Dict[str, np.ndarray]) -> np.ndarray:
    """LiDAR reflectance of object hit points (glass is darker)."""
    base = np.full(len(hit['t']), REFLECTANCE[obj['cls']])
    if obj['cls'] == 'Car':
        s, height = _face_coords(hit, obj['dims'])
        glass = (height > 0.58 * obj['dims'][0]) & (hit['axis'] != 1)
        base[glass] = REFLECTANCE['glass']
    return base


def projected_bbox(obj: Dict[str, Any],
                   p2: np.ndarray) -> Tuple[float, float, float, float]:
    """Unclipped 2D box (x1, y1, x2, y2) of an object's projected corners."""
    uv = project(box_corners(obj['dims'], obj['loc'], obj['ry']), p2)
    return (float(uv[:, 0].min()), float(uv[:, 1].min()),
            float(uv[:, 0].max()), float(uv[:, 1].max()))


def render_camera(env: Dict[str, Any], objects: Sequence[Dict[str, Any]],
                  calib: Dict[str, np.ndarray], width: int,
                  height: int, rng: np.random.Generator) -> Dict[str, Any]:
    """Ray cast the scene through every pixel of image_2.

    Args:
        env: Environment dict.
        objects: Scene objects.
        calib: Calibration dict (P2 is used).
        width: Image width.
        height: Image height.
        rng: Random generator (sensor noise).

    Returns:
        Dict with ``image`` (H, W, 3) uint8 RGB, ``depth`` (H, W) float32
        camera z in metres (0 = sky), ``ids`` (H, W) int16 index of the
        visible object (or a negative surface id) and ``unoccluded``
        (number of pixels each object would cover on its own).
    """
    p2 = calib['P2']
    origin = camera_centre(p2)
    kinv = np.linalg.inv(p2[:, :3])
    us, vs = np.meshgrid(np.arange(width, dtype=np.float64),
                         np.arange(height, dtype=np.float64))
    pix = np.stack([us, vs, np.ones_like(us)], axis=-1)
    dirs = pix @ kinv.T  # (H, W, 3), dirs[..., 2] == 1
    flat = dirs.reshape(-1, 3)
    t_bg, surface = intersect_background(origin, flat, env)
    t_buf = t_bg.reshape(height, width).copy()
    ids = surface.reshape(height, width).astype(np.int16)
    colour = np.zeros((height * width, 3))
    finite = np.where(np.isfinite(t_bg), t_bg, 0.0)
    points = origin + finite[:, None] * flat
    for sid, shader in ((GROUND_ID, lambda m: shade_ground(points[m], env,
                                                           objects)),
                        (WALL_ID, lambda m: shade_wall(points[m], env)),
                        (SKY_ID, lambda m: shade_sky(flat[m], env))):
        mask = surface == sid
        if mask.any():
            colour[mask] = shader(mask)
    colour = colour.reshape(height, width, 3)
    unoccluded = np.zeros(len(objects), dtype=np.int64)
    for k, obj in enumerate(objects):
        x1, y1, x2, y2 = projected_bbox(obj, p2)
        c0, c1 = max(math.ceil(x1), 0), min(math.floor(x2), width - 1)
        r0, r1 = max(math.ceil(y1), 0), min(math.floor(y2), height - 1)
        if c0 > c1 or r0 > r1:
            continue
        region = (slice(r0, r1 + 1), slice(c0, c1 + 1))
        sub = dirs[region].reshape(-1, 3)
        hit = intersect_box(origin, sub, obj)
        unoccluded[k] = int(hit['hit'].sum())
        win = hit['hit'] & (hit['t'] < t_buf[region].ravel())
        if not win.any():
            continue
        sel = {key: val[win] for key, val in hit.items()}
        t_reg = t_buf[region].reshape(-1)
        t_reg[win] = sel['t']
        t_buf[region] = t_reg.reshape(t_buf[region].shape)
        id_reg = ids[region].reshape(-1)
        id_reg[win] = k
        ids[region] = id_reg.reshape(ids[region].shape)
        col_reg = colour[region].reshape(-1, 3)
        col_reg[win] = shade_object(obj, sel)
        colour[region] = col_reg.reshape(colour[region].shape)
    depth = origin[2] + t_buf * dirs[..., 2]
    sky = ids == SKY_ID
    depth[sky] = 0.0
    haze = 1.0 - np.exp(-np.where(sky, 0.0, depth) / HAZE_DISTANCE)
    colour = colour * (1 - haze[..., None]) + HAZE_COLOUR * haze[..., None]
    colour = colour * env['exposure'] * env['tint']
    colour = cv2.GaussianBlur(colour.astype(np.float32), (0, 0), BLUR_SIGMA)
    colour = colour + rng.normal(0.0, SENSOR_NOISE_STD, colour.shape)
    image = np.clip(colour * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return {'image': image, 'depth': depth.astype(np.float32), 'ids': ids,
            'unoccluded': unoccluded}


def scan_lidar(env: Dict[str, Any], objects: Sequence[Dict[str, Any]],
               calib: Dict[str, np.ndarray],
               rng: np.random.Generator) -> np.ndarray:
    """Ray cast a 64-beam LiDAR over the front field of view.

    Args:
        env: Environment dict.
        objects: Scene objects.
        calib: Calibration dict (R0_rect and Tr_velo_to_cam are used).
        rng: Random generator (range noise, dropout, reflectance noise).

    Returns:
        (N, 4) float32 points (x, y, z, reflectance) in the LiDAR frame.
    """
    elev = np.deg2rad(np.linspace(*LIDAR_ELEVATION_RANGE, LIDAR_BEAMS))
    half = LIDAR_HFOV / 2.0
    count = int(round(LIDAR_HFOV / LIDAR_AZIMUTH_RES)) + 1
    azim = np.deg2rad(np.linspace(-half, half, count))
    el, az = np.meshgrid(elev, azim, indexing='ij')
    dirs_velo = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az),
                          np.sin(el)], axis=-1).reshape(-1, 3)
    r0 = calib['R0_rect']
    tr = calib['Tr_velo_to_cam']
    rot = r0 @ tr[:, :3]
    origin = r0 @ tr[:, 3]
    dirs = dirs_velo @ rot.T
    t, surface = intersect_background(origin, dirs, env)
    refl = np.zeros(len(dirs))
    for k, obj in enumerate(objects):
        hit = intersect_box(origin, dirs, obj)
        win = hit['hit'] & (hit['t'] < t)
        t[win] = hit['t'][win]
        surface[win] = k
        refl[win] = object_reflectance(
            obj, {key: val[win] for key, val in hit.items()})
    points = origin + np.where(np.isfinite(t), t, 0.0)[:, None] * dirs
    ground = surface == GROUND_ID
    kinds = ground_kind(points[ground, 0], points[ground, 2], env)
    refl[ground] = np.choose(kinds, [REFLECTANCE['road'],
                                     REFLECTANCE['marking'],
                                     REFLECTANCE['sidewalk']])
    refl[surface == WALL_ID] = REFLECTANCE['wall']
    keep = (surface != SKY_ID) & (t <= LIDAR_MAX_RANGE)
    keep &= rng.random(len(t)) >= LIDAR_DROPOUT
    rng_noise = rng.normal(0.0, LIDAR_RANGE_NOISE_STD, len(t))
    refl = np.clip(refl + rng.normal(0.0, REFLECTANCE_NOISE_STD, len(t)),
                   0.0, 1.0)
    ranges = (t + rng_noise)[keep]
    pts_rect = origin + ranges[:, None] * dirs[keep]
    pts_cam = pts_rect @ r0  # r0.T @ p for row vectors
    pts_velo = (pts_cam - tr[:, 3]) @ tr[:, :3]  # inverse rigid transform
    out = np.concatenate([pts_velo, refl[keep, None]], axis=1)
    return out.astype(np.float32)


# ===========================================================================
# Labels
# ===========================================================================
def occlusion_level(hidden_fraction: float) -> int:
    """Map a hidden-pixel fraction to KITTI's occlusion level 0-3."""
    for level, threshold in enumerate(OCCLUSION_THRESHOLDS):
        if hidden_fraction < threshold:
            return level
    return len(OCCLUSION_THRESHOLDS)


def make_labels(objects: Sequence[Dict[str, Any]],
                render: Dict[str, Any], calib: Dict[str, np.ndarray],
                width: int, height: int,
                rng: np.random.Generator) -> List[Dict[str, Any]]:
    """Build KITTI label records for the visible objects.

    Args:
        objects: Scene objects (render order).
        render: Output of :func:`render_camera`.
        calib: Calibration dict.
        width: Image width.
        height: Image height.
        rng: Random generator (optional DontCare region).

    Returns:
        List of label dicts with the 15 KITTI fields (``type``,
        ``truncated``, ``occluded``, ``alpha``, ``bbox``, ``dims``, ``loc``,
        ``ry``) plus ``index`` (object index, -1 for DontCare) and
        ``visible`` (pixel count).
    """
    ids = render['ids']
    visible = np.bincount(ids[ids >= 0].ravel().astype(np.int64),
                          minlength=len(objects))
    labels = []
    for k, obj in enumerate(objects):
        full = render['unoccluded'][k]
        if full == 0 or visible[k] == 0:
            continue
        x1, y1, x2, y2 = projected_bbox(obj, calib['P2'])
        cx1, cx2 = np.clip([x1, x2], 0, width - 1)
        cy1, cy2 = np.clip([y1, y2], 0, height - 1)
        area = (x2 - x1) * (y2 - y1)
        clipped = (cx2 - cx1) * (cy2 - cy1)
        truncated = float(np.clip(1.0 - clipped / area, 0.0, 1.0))
        hidden = 1.0 - visible[k] / full
        x, _, z = obj['loc']
        record = {
            'type': obj['cls'], 'truncated': truncated,
            'occluded': occlusion_level(hidden),
            'alpha': wrap_angle(obj['ry'] - math.atan2(x, z)),
            'bbox': (float(cx1), float(cy1), float(cx2), float(cy2)),
            'dims': obj['dims'], 'loc': obj['loc'], 'ry': obj['ry'],
            'index': k, 'visible': int(visible[k])}
        if visible[k] < MIN_LABEL_PIXELS:
            record.update(type='DontCare', index=-1)
        labels.append(record)
    if rng.random() < DONTCARE_PROB:
        # A distant patch just below the skyline, e.g. far parked cars.
        horizon = calib['P2'][1, 2]
        bw = rng.uniform(0.02, 0.06) * width
        bh = rng.uniform(0.02, 0.04) * height
        bx = rng.uniform(0, width - bw)
        labels.append({'type': 'DontCare', 'truncated': -1.0,
                       'occluded': -1, 'alpha': -10.0,
                       'bbox': (bx, horizon - bh, bx + bw, horizon),
                       'index': -1, 'visible': 0})
    return labels


def format_label(record: Dict[str, Any]) -> str:
    """Format one label record as a 15-field KITTI line."""
    if record['type'] == 'DontCare':
        x1, y1, x2, y2 = record['bbox']
        return ('DontCare -1 -1 -10 %.2f %.2f %.2f %.2f -1 -1 -1 -1000 '
                '-1000 -1000 -10' % (x1, y1, x2, y2))
    h, w, length = record['dims']
    x, y, z = record['loc']
    return ('%s %.2f %d %.2f %.2f %.2f %.2f %.2f %.2f %.2f %.2f %.2f %.2f '
            '%.2f %.2f' % ((record['type'], record['truncated'],
                            record['occluded'], record['alpha'])
                           + tuple(record['bbox']) + (h, w, length, x, y, z,
                                                      record['ry'])))


# ===========================================================================
# Frames
# ===========================================================================
def frame_rng(rng_seed: SeedLike, split: str,
              idx: int) -> np.random.Generator:
    """Random generator of one frame, seeded from (seed, split, frame id)."""
    seed = list(np.atleast_1d(rng_seed).astype(np.int64))
    return np.random.default_rng(seed + [SPLIT_CODES[split], int(idx)])


def generate_frame(idx: int, rng_seed: SeedLike,
                   width: int = KITTI_WIDTH, height: int = KITTI_HEIGHT,
                   split: str = 'training',
                   objects: Optional[List[Dict[str, Any]]] = None,
                   yaw: str = 'uniform') -> Dict[str, Any]:
    """Generate one frame: image, depth, calibration, labels and LiDAR.

    Args:
        idx: Frame id (part of the seed).
        rng_seed: Dataset seed.
        width: Image width.
        height: Image height.
        split: ``'training'`` or ``'testing'`` (part of the seed).
        objects: Optional explicit objects (dicts with ``cls``, ``dims``,
            ``loc``, ``ry``); appearance is sampled when missing. When None
            the objects are sampled.
        yaw: Yaw distribution of sampled objects (:data:`YAW_MODES`).

    Returns:
        Dict with ``image`` (H, W, 3 uint8 RGB), ``depth`` (H, W float32,
        metres, 0 = sky), ``ids`` (object-id buffer), ``calib`` (matrices),
        ``calib_text``, ``objects``, ``labels`` (records), ``label_text``
        and ``velodyne`` ((N, 4) float32).
    """
    rng = frame_rng(rng_seed, split, idx)
    env = sample_environment(rng)
    # Round-trip through the text format so that the written calibration is
    # exactly what the renderer used.
    calib_text = format_calib(make_calib(rng, width, height))
    calib = parse_calib_text(calib_text)
    if objects is None:
        objects = sample_objects(rng, calib, width, yaw)
    else:
        objects = [dict(sample_appearance(rng, o['cls']), **o)
                   for o in objects]
    render = render_camera(env, objects, calib, width, height, rng)
    labels = make_labels(objects, render, calib, width, height, rng)
    label_text = ''.join(format_label(r) + '\n' for r in labels)
    velodyne = scan_lidar(env, objects, calib, rng)
    return {'image': render['image'], 'depth': render['depth'],
            'ids': render['ids'], 'calib': calib, 'calib_text': calib_text,
            'objects': objects, 'labels': labels, 'label_text': label_text,
            'velodyne': velodyne}


def depth_crop_size(width: int, height: int) -> Tuple[int, int]:
    """Default crop (w, h): KITTI's 1216x352 scaled to the image size."""
    return (int(round(width * DEPTH_CROP_REF[0] / KITTI_WIDTH)),
            int(round(height * DEPTH_CROP_REF[1] / KITTI_HEIGHT)))


def crop_depth(depth: np.ndarray, crop: Tuple[int, int]) -> np.ndarray:
    """Bottom-anchored, horizontally centred crop of a depth map.

    Args:
        depth: (H, W) map.
        crop: (w, h) crop size; clamped to the map size.

    Returns:
        Cropped map.
    """
    h_img, w_img = depth.shape
    cw, ch = min(crop[0], w_img), min(crop[1], h_img)
    left = (w_img - cw) // 2
    return depth[h_img - ch:, left:left + cw]


def _png_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode('.png', image)
    if not ok:
        raise RuntimeError('PNG encoding failed')
    return buf.tobytes()


def write_frame(frame: Dict[str, Any], out: str, split: str, idx: int,
                dense_depth: bool = True,
                depth_crop: Optional[Tuple[int, int]] = None) -> None:
    """Write a generated frame in the KITTI layout.

    Args:
        frame: Output of :func:`generate_frame`.
        out: Dataset root.
        split: ``'training'`` (labels and depth written) or ``'testing'``.
        idx: Frame id.
        dense_depth: Write ``depth_dense`` (training only).
        depth_crop: Optional (w, h) crop of the depth map.
    """
    name = '%06d' % idx
    base = os.path.join(out, split)
    atomic_write_bytes(os.path.join(base, 'image_2', name + '.png'),
                       _png_bytes(cv2.cvtColor(frame['image'],
                                               cv2.COLOR_RGB2BGR)))
    atomic_write_bytes(os.path.join(base, 'calib', name + '.txt'),
                       frame['calib_text'].encode())
    atomic_write_bytes(os.path.join(base, 'velodyne', name + '.bin'),
                       frame['velodyne'].astype('<f4').tobytes())
    if split != 'training':
        return
    atomic_write_bytes(os.path.join(base, 'label_2', name + '.txt'),
                       frame['label_text'].encode())
    if dense_depth:
        depth = frame['depth']
        if depth_crop is not None:
            depth = crop_depth(depth, depth_crop)
        atomic_write_bytes(os.path.join(base, 'depth_dense', name + '.png'),
                           _png_bytes(encode_depth(depth)))


def _worker(task: Tuple[str, int, Dict[str, Any]]
            ) -> Tuple[str, int, Counter]:
    """Generate and write one frame; returns its labelled-class counts."""
    split, idx, opts = task
    frame = generate_frame(idx, opts['seed'], opts['width'],
                           opts['height'], split, yaw=opts['yaw'])
    write_frame(frame, opts['out'], split, idx, opts['dense_depth'],
                opts['depth_crop'])
    counts: Counter = Counter()
    if split == 'training':
        counts.update(r['type'] for r in frame['labels'])
    return split, idx, counts


# ===========================================================================
# Dataset
# ===========================================================================
def make_splits(num_train: int, num_val: int,
                seed: int) -> Tuple[List[int], List[int]]:
    """Disjoint, seeded train/val split of the training ids.

    Args:
        num_train: Number of train frames.
        num_val: Number of val frames.
        seed: Dataset seed.

    Returns:
        Sorted train ids and sorted val ids (together 0..N-1).
    """
    perm = np.random.default_rng([int(seed), len(SPLIT_CODES)]).permutation(
        num_train + num_val)
    return (sorted(int(i) for i in perm[:num_train]),
            sorted(int(i) for i in perm[num_train:]))


#: File at the root of a generated dataset with :func:`write_dataset`'s
#: arguments (read back by :func:`read_synthetic_meta`).
SYNTHETIC_META = 'synthetic.json'


def read_synthetic_meta(root: str) -> Optional[Dict[str, Any]]:
    """The generation arguments of a dataset written by
    :func:`write_dataset`, or None for any other KITTI-format copy (or one
    generated before the file existed)."""
    path = os.path.join(root, SYNTHETIC_META)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_dataset(out: str,
                  num_train: int = 40,
                  num_val: int = 20,
                  num_test: int = 8,
                  seed: int = 0,
                  width: int = KITTI_WIDTH,
                  height: int = KITTI_HEIGHT,
                  workers: int = 1,
                  dense_depth: bool = True,
                  depth_crop: Optional[Tuple[int, int]] = None,
                  overwrite: bool = False,
                  progress: bool = True,
                  yaw: str = 'uniform') -> Dict[str, Any]:
    """Generate and write a synthetic KITTI dataset under ``out``.

    Args:
        out (str): Dataset root.
        num_train, num_val, num_test (int): Frames per split (train and val
            share ``training/``).
        seed (int): Dataset seed (frames do not depend on ``workers``).
        width, height (int): Image size.
        workers (int): Processes.
        dense_depth (bool): Write ``training/depth_dense``.
        depth_crop (tuple, optional): (w, h) of crop-sized depth maps.
        overwrite (bool): Overwrite the frames of an existing dataset.
        progress (bool): Show a tqdm bar when tqdm is installed.
        yaw (str): Yaw distribution, ``'uniform'`` (default) or ``'road'``
            (:data:`YAW_MODES`).

    Returns:
        dict: ``train_ids``, ``val_ids``, ``test_ids``, ``seconds`` and
        ``counts`` (labelled objects per class in ``training/``).

    Raises:
        ValueError: Negative counts, non-positive size/workers or a
            negative seed.
        FileExistsError: ``out`` already holds frames and not
            ``overwrite``.
    """
    for name, value in (('num_train', num_train), ('num_val', num_val),
                        ('num_test', num_test)):
        if value < 0:
            raise ValueError(f'{name} must be >= 0, got {value}')
    if min(width, height, workers) <= 0 or seed < 0:
        raise ValueError('width, height and workers must be positive and '
                         f'seed non-negative, got {width}, {height}, '
                         f'{workers}, {seed}')
    if yaw not in YAW_MODES:
        raise ValueError(f'yaw must be one of {YAW_MODES}, got {yaw!r}')
    train_ids, val_ids = make_splits(num_train, num_val, seed)
    test_ids = list(range(num_test))
    tasks = [('training', i) for i in range(len(train_ids) + len(val_ids))]
    tasks += [('testing', i) for i in test_ids]
    existing = [
        os.path.join(out, split, 'image_2', '%06d.png' % i)
        for split, i in tasks
        if os.path.exists(os.path.join(out, split, 'image_2',
                                       '%06d.png' % i))]
    if existing and not overwrite:
        raise FileExistsError(f'{out} already holds frames (e.g. '
                              f'{existing[0]}); pass overwrite=True '
                              '(--overwrite)')
    dirs = [('training', d) for d in TRAIN_DIRS
            if d != 'depth_dense' or dense_depth]
    dirs += [('testing', d) for d in TEST_DIRS]
    for split, sub in dirs:
        os.makedirs(os.path.join(out, split, sub), exist_ok=True)
    os.makedirs(os.path.join(out, 'ImageSets'), exist_ok=True)
    opts = {'seed': seed, 'width': width, 'height': height, 'out': out,
            'dense_depth': dense_depth, 'depth_crop': depth_crop, 'yaw': yaw}
    jobs = [(split, i, opts) for split, i in tasks]
    start = time.time()
    totals: Counter = Counter()
    for _, _, counts in imap_frames(_worker, jobs, workers, 'frames',
                                    progress):
        totals.update(counts)
    sets = {'train': train_ids, 'val': val_ids,
            'trainval': sorted(train_ids + val_ids), 'test': test_ids}
    for name, ids in sets.items():
        atomic_write_bytes(os.path.join(out, 'ImageSets', name + '.txt'),
                           ''.join('%06d\n' % i for i in ids).encode())
    meta = dict(num_train=num_train, num_val=num_val, num_test=num_test,
                seed=seed, width=width, height=height, yaw=yaw,
                dense_depth=dense_depth,
                depth_crop=list(depth_crop) if depth_crop else None)
    atomic_write_bytes(os.path.join(out, SYNTHETIC_META),
                       json.dumps(meta, indent=1).encode())
    return dict(train_ids=train_ids, val_ids=val_ids, test_ids=test_ids,
                seconds=time.time() - start, counts=totals)
