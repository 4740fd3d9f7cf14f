"""Tests of the MonoASD data transforms and data preprocessor (design D1)."""
import copy
import math
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmdet3d.registry import DATASETS, MODELS, TRANSFORMS
from mmdet3d.structures import CameraInstance3DBoxes, Det3DDataSample
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData

import monoasd  # noqa: F401  (registers the plugin)
from conftest import read_labels
from monoasd.datasets.kitti_io import encode_depth, read_calib
from monoasd.datasets.transforms import (KittiObjectFilter, LoadDenseDepth,
                                         MonoAffineAug, MonoColorJitter,
                                         PackMonoDepthInputs, flip_camera,
                                         kitti_level, pad_depth_to_image,
                                         project)
from monoasd.models.data_preprocessors import MonoDepthDataPreprocessor
from monoasd.models.utils import stack_depth_maps

CONFIG = osp.join(osp.dirname(__file__), '..', 'configs', 'monoasd',
                  'did-m3d_dla34_tiny_mini-kitti-car_teacher.py')

#: Image size of the hand-made samples (half KITTI) and a P2 for it.
W, H = 621, 188
P2 = np.array([[359.65, 0.0, 306.88, 22.4285],
               [0.0, 360.61, 87.08, 0.1084],
               [0.0, 0.0, 1.0, 0.00274]])
OUT = (320, 96)
#: ImageNet mean/std (x 255) as in the configs.
MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])
#: CenterNet PCA lighting constants (design D1.3 step 4).
EIG_VAL = np.array([0.2141788, 0.01817699, 0.00341571])
EIG_VEC = np.array([[-0.58752847, -0.69563484, 0.41340352],
                    [-0.5832747, 0.00994535, -0.81221408],
                    [-0.56089297, 0.71832671, 0.41158938]])


@pytest.fixture(autouse=True, scope='module')
def mmdet3d_scope():
    """Build from mmdet3d's registries whatever scope other tests left."""
    with DefaultScope.overwrite_default_scope('mmdet3d'):
        yield


# ---------------------------------------------------------------------------
# Helpers (independent of the code under test)
# ---------------------------------------------------------------------------
def proj(points, p):
    """Project (N, 3) points with a 3x4 matrix."""
    uvw = np.concatenate([points, np.ones((len(points), 1))], 1) @ p.T
    return uvw[:, :2] / uvw[:, 2:3]


def apply_trans(trans, uv):
    """Map (N, 2) pixels with a 2x3 or 3x3 affine matrix."""
    trans = np.asarray(trans, dtype=np.float64)
    return uv @ trans[:2, :2].T + trans[:2, 2]


def wrap(angle):
    """Wrap to [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def draws(seed, img_w, img_h, flip_prob=0.5, crop_prob=0.5):
    """The spec's random draws (B1.3 steps 1-2) for a global-RNG seed."""
    rs = np.random.RandomState(seed)
    flip = rs.random_sample() < flip_prob
    centre = np.array([img_w / 2.0, img_h / 2.0])
    crop_w = float(img_w)
    if rs.random_sample() < crop_prob:
        scale = np.clip(1 + 0.4 * rs.randn(), 0.6, 1.4)
        shift_x = np.clip(0.1 * rs.randn(), -0.2, 0.2)
        shift_y = np.clip(0.1 * rs.randn(), -0.2, 0.2)
        centre = centre + [img_w * shift_x, img_h * shift_y]
        crop_w = img_w * scale
    return flip, centre, crop_w


def expected_trans(centre, crop_w, out=OUT):
    """Spec B1.3 step 3: similarity, s = out_w / crop_w, centre -> middle."""
    s = out[0] / crop_w
    return np.array([[s, 0.0, out[0] / 2.0 - s * centre[0]],
                     [0.0, s, out[1] / 2.0 - s * centre[1]]])


def find_seed(flip, crop):
    """First seed whose default-probability draws flip/crop as asked."""
    for seed in range(1000):
        got_flip, _, crop_w = draws(seed, W, H)
        if got_flip == flip and (crop_w != W) == crop:
            return seed
    raise AssertionError('no seed found')


def blob(u0, v0, sigma=3.0, shape=(H, W)):
    """Gaussian blob centred at pixel coordinates (u0, v0)."""
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    return np.exp(-((cols - u0)**2 + (rows - v0)**2) / (2 * sigma**2))


def centroid(arr):
    """Intensity-weighted (u, v) centroid of a non-negative map."""
    arr = np.asarray(arr, dtype=np.float64)
    rows, cols = np.mgrid[:arr.shape[0], :arr.shape[1]]
    return np.array([(cols * arr).sum(), (rows * arr).sum()]) / arr.sum()


def make_boxes():
    """Camera boxes (bottom centre, (l, h, w), ry) in front of P2."""
    return np.array([[-4.0, 1.65, 12.0, 3.9, 1.5, 1.6, 0.3],
                     [2.5, 1.65, 20.0, 4.2, 1.6, 1.7, -2.9],
                     [0.3, 1.60, 35.0, 0.8, 1.8, 0.6, 3.1],
                     [6.0, 1.70, 9.0, 3.5, 1.4, 1.6, -1.2]])


def make_results(with_blob=True):
    """A hand-made sample as it leaves LoadAnnotations3D + LoadDenseDepth."""
    boxes = make_boxes()
    img = np.zeros((H, W, 3), dtype=np.uint8)
    depth = np.zeros((H, W), dtype=np.float32)
    if with_blob:
        b = blob(320.3, 94.4)
        img[..., 1] = np.round(250 * b).astype(np.uint8)
        depth[:] = 40.0 * b
    centres = boxes[:, :3] - [0, 1, 0] * boxes[:, 4:5] / 2
    uv = proj(centres, P2)
    bboxes = np.stack([uv[:, 0] - 20, uv[:, 1] - 10, uv[:, 0] + 25,
                       uv[:, 1] + 12], 1).astype(np.float32)
    cam = np.eye(4)
    cam[:3] = P2
    return dict(
        img=img,
        depth_map=depth,
        img_shape=(H, W),
        ori_shape=(H, W),
        cam2img=cam.tolist(),
        gt_bboxes=bboxes,
        gt_bboxes_labels=np.zeros(len(boxes), dtype=np.int64),
        gt_bboxes_3d=CameraInstance3DBoxes(boxes.astype(np.float32)),
        gt_labels_3d=np.zeros(len(boxes), dtype=np.int64),
        centers_2d=uv.astype(np.float32),
        depths=boxes[:, 2].astype(np.float32))


def spec_level(row):
    """Spec B1.2 KITTI level: 0/1/2, or -1 for UnKnown."""
    height = row['bbox'][3] - row['bbox'][1] + 1
    for lvl, (min_h, max_t, max_o) in enumerate(
            ((40, 0.15, 0), (25, 0.3, 1), (25, 0.5, 2))):
        if height >= min_h and row['truncated'] <= max_t and \
                row['occluded'] <= max_o:
            return lvl
    return -1


def frame_id(img_path):
    """KITTI frame id of an image path (mmengine's ``sample_idx`` is the
    dataset index, not the frame id)."""
    return int(osp.splitext(osp.basename(img_path))[0])


def expected_cars(root, sample_idx, filter_levels=True):
    """Label rows of the Cars that the spec's filters keep."""
    rows = read_labels(osp.join(root, 'training', 'label_2',
                                '%06d.txt' % sample_idx))
    return [r for r in rows if r['type'] == 'Car' and r['loc'][2] >= 2.0
            and (spec_level(r) >= 0 or not filter_levels)]


# ---------------------------------------------------------------------------
# LoadDenseDepth
# ---------------------------------------------------------------------------
def _depth_results(tmp_path, name='000007'):
    img_path = tmp_path / 'training' / 'image_2' / (name + '.png')
    depth_path = tmp_path / 'training' / 'depth_dense' / (name + '.png')
    depth_path.parent.mkdir(parents=True, exist_ok=True)
    return dict(img_path=str(img_path), img_shape=(7, 10)), depth_path


def test_load_dense_depth_path_and_scale(tmp_path):
    results, depth_path = _depth_results(tmp_path)
    raw = np.arange(70, dtype=np.uint16).reshape(7, 10) * 300
    assert cv2.imwrite(str(depth_path), raw)
    load = TRANSFORMS.build(dict(type='LoadDenseDepth'))
    assert load.depth_path(results['img_path']) == str(depth_path)
    out = load(results)
    assert out['depth_path'] == str(depth_path)
    assert out['depth_map'].dtype == np.float32
    np.testing.assert_array_equal(out['depth_map'], raw / 256.0)
    # The image path may also come from images['CAM2'] (mmdet3d v2 infos).
    res2 = dict(images=dict(CAM2=dict(img_path=results['img_path'])),
                img_shape=(7, 10))
    np.testing.assert_array_equal(load(res2)['depth_map'], raw / 256.0)
    # Other folder names and scales.
    other = LoadDenseDepth(depth_dir='dd', img_dir='image_3',
                           depth_scale=100)
    assert other.depth_path('/a/b/image_3/000001.jpg') == \
        osp.join('/a/b/dd', '000001.png')
    with pytest.raises(ValueError, match='image_3'):
        other.depth_path('/a/b/image_2/000001.png')


def test_pad_depth_to_image_by_hand():
    depth = np.arange(1, 21, dtype=np.float32).reshape(4, 5)
    out = pad_depth_to_image(depth, (7, 10), max_pad_ratio=1.0)
    # pad_top = 7 - 4 = 3, pad_left = floor(5 / 2) = 2, pad_right = 3.
    expect = np.empty((7, 10), dtype=np.float32)
    rows = [0, 0, 0, 0, 1, 2, 3]
    cols = [0, 0, 0, 1, 2, 3, 4, 4, 4, 4]
    for r in range(7):
        for c in range(10):
            expect[r, c] = depth[rows[r], cols[c]]
    np.testing.assert_array_equal(out, expect)
    np.testing.assert_array_equal(out[3:, 2:7], depth)
    # Same size: unchanged; larger than the image: an error.
    assert pad_depth_to_image(depth, (4, 5)) is depth
    with pytest.raises(ValueError, match='x.png has size 5x4'):
        pad_depth_to_image(depth, (7, 10), 'x.png')  # 43 % of rows padded
    with pytest.raises(ValueError, match='x.png'):
        pad_depth_to_image(depth, (3, 5), 'x.png')


def test_load_dense_depth_pads_crop(tmp_path):
    results, depth_path = _depth_results(tmp_path)
    raw = (np.arange(20, dtype=np.uint16).reshape(4, 5) + 1) * 256
    assert cv2.imwrite(str(depth_path), raw)
    out = LoadDenseDepth(max_pad_ratio=1.0)(results)['depth_map']
    assert out.shape == (7, 10)
    np.testing.assert_array_equal(out[3:, 2:7], raw / 256.0)
    np.testing.assert_array_equal(out[:3, 2:7], np.tile(raw[:1] / 256.0,
                                                        (3, 1)))
    np.testing.assert_array_equal(out[:, :2], np.tile(out[:, 2:3], (1, 2)))
    np.testing.assert_array_equal(out[:, 7:], np.tile(out[:, 6:7], (1, 3)))


def test_load_dense_depth_undoes_generator_crop(tmp_path):
    """The synthetic generator's crop (KITTI depth-completion layout) is
    padded back onto the pixels it came from."""
    from monoasd.synthetic import generator as gen
    full = np.random.RandomState(2).uniform(1, 80, (H, W))
    crop = gen.crop_depth(full, gen.depth_crop_size(W, H))
    results, depth_path = _depth_results(tmp_path)
    results['img_shape'] = (H, W)
    assert cv2.imwrite(str(depth_path), encode_depth(crop))
    out = LoadDenseDepth()(results)['depth_map']
    ch, cw = crop.shape
    left = (W - cw) // 2
    region = (slice(H - ch, H), slice(left, left + cw))
    np.testing.assert_allclose(out[region], full[region],
                               atol=0.5 / 256 + 1e-6)
    assert out.shape == (H, W) and ch < H and cw < W


def test_load_dense_depth_errors_name_the_file(tmp_path):
    results, depth_path = _depth_results(tmp_path)
    load = LoadDenseDepth()
    with pytest.raises(FileNotFoundError) as err:
        load(dict(results))
    assert str(depth_path) in str(err.value)
    depth_path.write_bytes(np.random.RandomState(0).bytes(300))
    with pytest.raises(OSError) as err:
        load(dict(results))
    assert str(depth_path) in str(err.value)
    assert cv2.imwrite(str(depth_path), np.full((7, 10), 9, np.uint8))
    with pytest.raises(ValueError) as err:
        load(dict(results))
    assert str(depth_path) in str(err.value)
    assert cv2.imwrite(str(depth_path), np.zeros((7, 10, 3), np.uint16))
    with pytest.raises(ValueError, match='000007'):
        load(dict(results))


# ---------------------------------------------------------------------------
# KittiObjectFilter
# ---------------------------------------------------------------------------
def test_kitti_level_boundaries():
    cases = [  # (height, truncation, occlusion) -> level
        ((40, 0.15, 0), 0), ((39.9, 0.0, 0), 1), ((40, 0.16, 0), 1),
        ((40, 0.0, 1), 1), ((25, 0.30, 1), 1), ((25, 0.31, 0), 2),
        ((25, 0.50, 2), 2), ((100, 0.0, 2), 2), ((24.9, 0.0, 0), -1),
        ((25, 0.51, 0), -1), ((100, 0.0, 3), -1)]
    arr = np.array([c[0] for c in cases], dtype=np.float64)
    level = kitti_level(arr[:, 0], arr[:, 1], arr[:, 2].astype(int))
    assert level.tolist() == [c[1] for c in cases]


def _filter_results():
    n = 6
    boxes = np.zeros((n, 7), dtype=np.float32)
    boxes[:, 2] = [10, 1.9, 2.0, 30, 15, 50]  # z; the second is too near
    boxes[:, 3:6] = [3.9, 1.5, 1.6]
    # Annotated 2D boxes: heights y2 - y1 + 1 = 40, 40, 25, 24, 40, 39.
    kitti_bbox = [[10, 10, 50, 49], [0, 0, 9, 39], [5, 5, 30, 29],
                  [1, 1, 9, 24], [3, 10, 60, 49], [7, 20, 70, 58]]
    truncated = [0.0, 0.0, 0.5, 0.0, 0.51, 0.15]
    occluded = [0, 0, 2, 0, 0, 0]
    return dict(
        img_path='x/000001.png',
        gt_bboxes=np.zeros((n, 4), dtype=np.float32) + 1000,  # projected
        gt_bboxes_labels=np.arange(n),
        gt_bboxes_3d=CameraInstance3DBoxes(boxes),
        gt_labels_3d=np.arange(n) + 10,
        centers_2d=np.arange(2 * n, dtype=np.float32).reshape(n, 2),
        depths=boxes[:, 2].copy(),
        ann_info=dict(kitti_bbox=np.array(kitti_bbox, dtype=np.float64),
                      truncated=np.array(truncated),
                      occluded=np.array(occluded)))


def test_kitti_object_filter():
    results = _filter_results()
    filt = TRANSFORMS.build(dict(type='KittiObjectFilter', min_depth=2.0))
    out = filt(copy.deepcopy(results))
    # Kept: 0 (easy), 2 (hard, z = 2 is not < 2), 5 (moderate: h = 39).
    keep = [0, 2, 5]
    assert out['gt_labels_3d'].tolist() == [10 + i for i in keep]
    assert out['gt_bboxes_labels'].tolist() == keep
    np.testing.assert_array_equal(out['gt_bboxes'],
                                  results['ann_info']['kitti_bbox'][keep])
    assert out['gt_bboxes'].dtype == np.float32
    assert isinstance(out['gt_bboxes_3d'], CameraInstance3DBoxes)
    np.testing.assert_array_equal(out['gt_bboxes_3d'].tensor.numpy(),
                                  results['gt_bboxes_3d'].tensor[keep])
    np.testing.assert_array_equal(out['centers_2d'],
                                  results['centers_2d'][keep])
    np.testing.assert_array_equal(out['depths'], results['depths'][keep])
    # Without the level filter only the depth rule applies; without the
    # KITTI boxes the projected ones stay.
    out = KittiObjectFilter(filter_levels=False, use_kitti_bbox=False)(
        copy.deepcopy(results))
    assert out['gt_bboxes_labels'].tolist() == [0, 2, 3, 4, 5]
    assert (out['gt_bboxes'] == 1000).all()
    out = KittiObjectFilter(min_depth=20.0)(copy.deepcopy(results))
    assert out['gt_bboxes_labels'].tolist() == [5]
    out = KittiObjectFilter(min_depth=60.0)(copy.deepcopy(results))
    assert out['gt_bboxes_labels'].tolist() == []
    assert len(out['gt_bboxes_3d']) == 0
    assert out['centers_2d'].shape == (0, 2)
    out = KittiObjectFilter(max_objs=2)(copy.deepcopy(results))
    assert out['gt_bboxes_labels'].tolist() == [0, 2]


def test_kitti_object_filter_missing_key():
    for key in ('kitti_bbox', 'truncated', 'occluded'):
        results = _filter_results()
        del results['ann_info'][key]
        with pytest.raises(KeyError, match=key):
            KittiObjectFilter()(results)


# ---------------------------------------------------------------------------
# MonoAffineAug
# ---------------------------------------------------------------------------
def test_flip_camera_projects_mirrored_points():
    rs = np.random.RandomState(0)
    pts = np.stack([rs.uniform(-20, 20, 50), rs.uniform(-2, 3, 50),
                    rs.uniform(3, 70, 50)], 1)
    flipped = flip_camera(P2, W)
    mirrored = pts * [-1, 1, 1]
    uv = proj(pts, P2)
    uv_f = proj(mirrored, flipped)
    np.testing.assert_allclose(uv_f[:, 0], W - 1 - uv[:, 0], atol=1e-9)
    np.testing.assert_allclose(uv_f[:, 1], uv[:, 1], atol=1e-9)
    np.testing.assert_allclose(project(pts, P2), uv)
    # Intrinsics stay, the principal point mirrors (pixel-centre flip).
    assert flipped[0, 0] == P2[0, 0] and flipped[1, 1] == P2[1, 1]
    assert flipped[0, 2] == pytest.approx(W - 1 - P2[0, 2])
    assert flipped[0, 3] == pytest.approx((W - 1) * P2[2, 3] - P2[0, 3])
    np.testing.assert_array_equal(flipped[1:], P2[1:])


def test_draw_order_and_trans_matrix():
    aug = TRANSFORMS.build(dict(type='MonoAffineAug', out_size=OUT))
    seen = set()
    for seed in range(12):
        flip, centre, crop_w = draws(seed, W, H)
        np.random.seed(seed)
        out = aug(make_results(with_blob=False))
        assert out['flip'] == flip
        assert out['aug_scale'] == pytest.approx(crop_w / W)
        np.testing.assert_allclose(out['trans_mat'][:2],
                                   expected_trans(centre, crop_w),
                                   rtol=1e-6, atol=1e-4)
        np.testing.assert_array_equal(out['trans_mat'][2], [0, 0, 1])
        assert out['img'].shape == (OUT[1], OUT[0], 3)
        assert out['depth_map'].shape == (OUT[1], OUT[0])
        assert out['img_shape'] == (OUT[1], OUT[0])
        seen.add((flip, crop_w != W))
    assert seen == {(False, False), (False, True), (True, False),
                    (True, True)}


@pytest.mark.parametrize('flip,crop', [(True, True), (False, True),
                                       (True, False)])
def test_affine_labels_consistent(flip, crop):
    seed = find_seed(flip, crop)
    results = make_results(with_blob=False)
    orig_boxes = results['gt_bboxes_3d'].tensor.numpy().astype(np.float64)
    orig_bboxes = results['gt_bboxes'].astype(np.float64)
    np.random.seed(seed)
    out = MonoAffineAug(out_size=OUT)(copy.deepcopy(results))
    assert out['flip'] == flip and (out['aug_scale'] != 1) == crop
    trans = np.asarray(out['trans_mat'], dtype=np.float64)
    cam = np.asarray(out['cam2img'])
    # (1) Projecting each 3D box centre with trans @ cam2img lands on
    # centers_2d.
    grav = out['gt_bboxes_3d'].gravity_center.numpy().astype(np.float64)
    np.testing.assert_allclose(proj(grav, trans @ cam[:3]),
                               out['centers_2d'], atol=0.5)
    np.testing.assert_allclose(proj(grav, trans @ cam[:3]),
                               out['centers_2d'], atol=1e-3)
    # ... and, independently of the flipped camera, on the (mirrored)
    # original-frame projection mapped by trans.
    centres = orig_boxes[:, :3] - [0, 1, 0] * orig_boxes[:, 4:5] / 2
    uv = proj(centres, P2)
    if flip:
        uv[:, 0] = W - 1 - uv[:, 0]
    np.testing.assert_allclose(out['centers_2d'], apply_trans(trans, uv),
                               atol=1e-3)
    np.testing.assert_array_equal(np.asarray(out['ori_cam2img'])[:3], P2)
    # (3) 3D boxes: x mirrored, yaw pi - ry in [-pi, pi), size unchanged;
    # depths are z (metres, not scaled by aug_scale).
    new = out['gt_bboxes_3d'].tensor.numpy().astype(np.float64)
    sign = -1.0 if flip else 1.0
    np.testing.assert_allclose(new[:, 0], sign * orig_boxes[:, 0],
                               atol=1e-6)
    np.testing.assert_allclose(new[:, 1:6], orig_boxes[:, 1:6], atol=1e-6)
    ry = wrap(np.pi - orig_boxes[:, 6]) if flip else orig_boxes[:, 6]
    np.testing.assert_allclose(wrap(new[:, 6] - ry), 0, atol=1e-5)
    assert ((new[:, 6] >= -np.pi) & (new[:, 6] < np.pi)).all()
    np.testing.assert_allclose(out['depths'], orig_boxes[:, 2], atol=1e-5)
    # 2D boxes: the corners mapped by trans (after the mirror), no clip.
    corners = orig_bboxes.copy()
    if flip:
        corners[:, [0, 2]] = W - 1 - orig_bboxes[:, [2, 0]]
    expect = np.concatenate([apply_trans(trans, corners[:, :2]),
                             apply_trans(trans, corners[:, 2:])], 1)
    np.testing.assert_allclose(out['gt_bboxes'], expect, atol=1e-3)
    assert (out['gt_bboxes'][:, 2] > out['gt_bboxes'][:, 0]).all()


def test_yaw_flip_wraps():
    ry = np.array([-3.1, -np.pi / 2, -0.5, 0.0, 0.5, np.pi / 2, 3.1])
    boxes = np.zeros((len(ry), 7), dtype=np.float32)
    boxes[:, 2] = 10
    boxes[:, 3:6] = 1
    boxes[:, 6] = ry
    results = dict(img=np.zeros((H, W, 3), np.uint8), cam2img=P2.tolist(),
                   gt_bboxes_3d=CameraInstance3DBoxes(boxes))
    out = MonoAffineAug(out_size=OUT, flip_prob=1.0, crop_prob=0.0)(results)
    got = out['gt_bboxes_3d'].tensor[:, 6].numpy()
    expect = np.array([3.1 - np.pi, -np.pi / 2, 0.5 - np.pi, -np.pi,
                       np.pi - 0.5, np.pi / 2, np.pi - 3.1])
    np.testing.assert_allclose(got, expect, atol=1e-6)


@pytest.mark.parametrize('flip,crop', [(True, True), (False, True),
                                       (False, False)])
def test_image_and_depth_stay_aligned(flip, crop):
    seed = find_seed(flip, crop)
    np.random.seed(seed)
    out = MonoAffineAug(out_size=OUT)(make_results())
    assert out['flip'] == flip
    u0, v0 = 320.3, 94.4
    if flip:
        u0 = W - 1 - u0
    expect = apply_trans(out['trans_mat'], np.array([[u0, v0]]))[0]
    img_c = centroid(out['img'][..., 1])
    depth_c = centroid(out['depth_map'])
    assert out['img'][..., [0, 2]].max() == 0
    np.testing.assert_allclose(img_c, depth_c, atol=0.05)
    np.testing.assert_allclose(img_c, expect, atol=0.25)
    np.testing.assert_allclose(depth_c, expect, atol=0.25)
    # The peak pixels coincide as well.
    peak_img = np.unravel_index(np.argmax(out['img'][..., 1]), (OUT[1],
                                                                OUT[0]))
    peak_depth = np.unravel_index(np.argmax(out['depth_map']), (OUT[1],
                                                                OUT[0]))
    assert np.abs(np.subtract(peak_img, peak_depth)).max() <= 1
    assert out['depth_map'].dtype == np.float32


def test_affine_pattern_alignment_everywhere():
    """A coordinate-encoding pattern maps identically in image and depth."""
    rows, cols = np.mgrid[:H, :W]
    pattern = (cols % 40) * 5.0 + (rows % 30) * 1.0  # integers < 256
    results = make_results(with_blob=False)
    results['img'][..., 2] = pattern.astype(np.uint8)
    results['depth_map'] = pattern.astype(np.float32) / 10.0
    np.random.seed(find_seed(True, True))
    out = MonoAffineAug(out_size=OUT)(results)
    img = out['img'][..., 2].astype(np.float64)
    depth = out['depth_map'].astype(np.float64) * 10.0
    # Bilinear interpolation of uint8 rounds; the float map does not.
    assert np.abs(img - depth).max() <= 0.51


def test_affine_test_mode_is_deterministic():
    aug = MonoAffineAug(out_size=OUT, test_mode=True)
    state = np.random.get_state()[1].copy()
    outs = [aug(make_results()) for _ in range(2)]
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    for out in outs:
        assert out['flip'] is False and out['aug_scale'] == 1.0
        np.testing.assert_allclose(out['trans_mat'][:2],
                                   expected_trans((W / 2, H / 2), W),
                                   atol=1e-5)
    np.testing.assert_array_equal(outs[0]['img'], outs[1]['img'])
    np.testing.assert_array_equal(outs[0]['depth_map'],
                                  outs[1]['depth_map'])
    # Test mode ignores the probabilities.
    out = MonoAffineAug(out_size=OUT, flip_prob=1, crop_prob=1,
                        test_mode=True)(make_results())
    assert out['flip'] is False and out['aug_scale'] == 1.0


# ---------------------------------------------------------------------------
# MonoColorJitter
# ---------------------------------------------------------------------------
def _jitter_by_hand(bgr, seed, var=0.4, std=0.1, bgr_gray=False):
    """Spec B1.3 step 4 on a BGR uint8 image; returns float BGR x 255."""
    rs = np.random.RandomState(seed)
    rs.random_sample()  # the probability draw
    rgb = bgr[..., ::-1].astype(np.float64) / 255.0
    w = [0.114, 0.587, 0.299] if bgr_gray else [0.299, 0.587, 0.114]
    gray = (rgb * w).sum(-1, keepdims=True)
    for op in rs.permutation(3):
        alpha = 1.0 + rs.uniform(-var, var)
        if op == 0:  # brightness
            rgb = rgb * alpha
        elif op == 1:  # contrast
            rgb = rgb * alpha + (1 - alpha) * gray.mean()
        else:  # saturation
            rgb = rgb * alpha + (1 - alpha) * gray
    alpha = rs.normal(scale=std, size=3)
    rgb = rgb + EIG_VEC @ (EIG_VAL * alpha)
    return rgb[..., ::-1] * 255.0


def test_color_jitter_matches_hand_computation():
    rs = np.random.RandomState(1)
    bgr = rs.randint(0, 256, (6, 9, 3)).astype(np.uint8)
    jitter = TRANSFORMS.build(dict(type='MonoColorJitter'))
    for seed in (0, 1, 2):
        np.random.seed(seed)
        out = jitter(dict(img=bgr.copy()))['img']
        assert out.dtype == np.float32 and out.shape == bgr.shape
        np.testing.assert_allclose(out, _jitter_by_hand(bgr, seed),
                                   atol=2e-3)
    np.random.seed(0)
    gray_bgr = MonoColorJitter(gray_bgr_weights=True)(dict(
        img=bgr.copy()))['img']
    np.testing.assert_allclose(gray_bgr,
                               _jitter_by_hand(bgr, 0, bgr_gray=True),
                               atol=2e-3)
    # The two grey conventions differ on a coloured image.
    np.random.seed(0)
    rgb_gray = jitter(dict(img=bgr.copy()))['img']
    assert np.abs(gray_bgr - rgb_gray).max() > 1e-2


def test_color_jitter_deterministic_and_prob():
    bgr = np.random.RandomState(3).randint(0, 256, (5, 7, 3)).astype(
        np.uint8)
    jitter = MonoColorJitter()
    outs = []
    for _ in range(2):
        np.random.seed(7)
        outs.append(jitter(dict(img=bgr.copy()))['img'])
    np.testing.assert_array_equal(outs[0], outs[1])
    assert np.abs(outs[0] - bgr).max() > 0.5
    out = MonoColorJitter(prob=0.0)(dict(img=bgr.copy()))['img']
    np.testing.assert_array_equal(out, bgr)
    # Zero variances and no lighting: identity up to float32 rounding.
    out = MonoColorJitter(0, 0, 0, 0)(dict(img=bgr.copy()))['img']
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, bgr, atol=1e-3)


# ---------------------------------------------------------------------------
# PackMonoDepthInputs and MonoDepthDataPreprocessor
# ---------------------------------------------------------------------------
PACK_KEYS = ['img', 'depth_map', 'gt_bboxes', 'gt_bboxes_labels',
             'gt_bboxes_3d', 'gt_labels_3d', 'centers_2d', 'depths']


def test_pack_mono_depth_inputs():
    np.random.seed(find_seed(True, True))
    results = MonoAffineAug(out_size=OUT)(make_results())
    results['depth_path'] = 'd/000001.png'
    depth = results['depth_map'].copy()
    pack = TRANSFORMS.build(dict(type='PackMonoDepthInputs',
                                 keys=PACK_KEYS))
    out = pack(results)
    inputs, sample = out['inputs'], out['data_samples']
    assert tuple(inputs['img'].shape) == (3, OUT[1], OUT[0])
    # the depth map travels with the data sample, not as a network input
    assert set(inputs) == {'img'}
    packed_depth = sample.gt_depth_map.data
    assert tuple(packed_depth.shape) == (1, OUT[1], OUT[0])
    assert packed_depth.dtype == torch.float32
    np.testing.assert_array_equal(packed_depth[0].numpy(), depth)
    for key in ('trans_mat', 'cam2img', 'ori_cam2img', 'aug_scale', 'flip',
                'depth_path', 'img_shape'):
        assert key in sample.metainfo, key
    assert sample.metainfo['aug_scale'] == results['aug_scale']
    gt = sample.gt_instances_3d
    assert len(gt.bboxes_3d) == 4 and tuple(gt.centers_2d.shape) == (4, 2)
    assert tuple(sample.gt_instances.bboxes.shape) == (4, 4)
    # Explicit meta keys are respected.
    pack = PackMonoDepthInputs(keys=['img'], meta_keys=('aug_scale', ))
    sample = pack(MonoAffineAug(out_size=OUT, test_mode=True)(
        make_results()))['data_samples']
    assert set(sample.metainfo) == {'aug_scale'}


def _sample(aug_scale, depth=None):
    sample = Det3DDataSample()
    sample.set_metainfo(dict(aug_scale=aug_scale))
    if depth is not None:
        sample.gt_depth_map = PixelData(data=depth)
    return sample


def test_preprocessor_normalises_and_builds_teacher_input():
    rs = np.random.RandomState(0)
    img_a = torch.from_numpy(rs.randint(0, 256, (3, 10, 12)).astype(
        np.float32))
    img_b = torch.from_numpy(rs.randint(0, 256, (3, 8, 16)).astype(
        np.float32))
    depth_a = torch.from_numpy(rs.uniform(0, 90, (1, 10, 12)).astype(
        np.float32))
    depth_b = torch.from_numpy(rs.uniform(0, 90, (1, 8, 16)).astype(
        np.float32))
    cfg = dict(type='MonoDepthDataPreprocessor', mean=MEAN.tolist(),
               std=STD.tolist(), bgr_to_rgb=True, pad_size_divisor=1)

    def batch():
        return dict(inputs=dict(img=[img_a, img_b]),
                    data_samples=[_sample(1.3, depth_a),
                                  _sample(0.7, depth_b)])

    pre = MODELS.build(cfg)
    out = pre(batch(), training=True)
    imgs, inputs = out['inputs']['imgs'], out['inputs']
    assert tuple(imgs.shape) == (2, 3, 10, 16)
    # Pixel (y=4, x=5) of sample 0, RGB channel c = BGR channel 2 - c.
    for c in range(3):
        want = (img_a[2 - c, 4, 5].item() - MEAN[c]) / STD[c]
        assert imgs[0, c, 4, 5].item() == pytest.approx(want, rel=1e-5)
    # Depth is padded with zeros (bottom/right) to the batch image size.
    depth = torch.stack([s.gt_depth_map.data for s in out['data_samples']])
    assert tuple(depth.shape) == (2, 1, 10, 16)
    assert torch.equal(depth[0, :, :10, :12], depth_a)
    assert torch.equal(depth[1, :, :8, :16], depth_b)
    assert depth[0, :, :, 12:].abs().sum() == 0
    assert depth[1, :, 8:].abs().sum() == 0
    # Teacher input: depth * aug_scale / 20480 on 3 channels (design D1.3).
    teach = inputs['depth_imgs']
    assert tuple(teach.shape) == (2, 3, 10, 16)
    for c in range(3):
        torch.testing.assert_close(teach[0, c, :10, :12],
                                   depth_a[0] * 1.3 / 20480.0)
        torch.testing.assert_close(teach[1, c, :8], depth_b[0] * 0.7 /
                                   20480.0)
    # Options: divisor, clip and no aug_scale.
    pre = MonoDepthDataPreprocessor(depth_divisor=80.0, depth_max=80.0,
                                    use_aug_scale=False, **{
                                        k: v
                                        for k, v in cfg.items()
                                        if k != 'type'
                                    })
    teach = pre(batch())['inputs']['depth_imgs']
    torch.testing.assert_close(teach[0, 1, :10, :12],
                               depth_a[0].clamp(max=80.0) / 80.0)
    torch.testing.assert_close(teach[1, 2, :8],
                               depth_b[0].clamp(max=80.0) / 80.0)
    assert teach.max() <= 1.0 + 1e-6 and depth_a.max() > 80
    # Padding to a size divisor pads the depth maps alike.
    pre = MODELS.build(dict(cfg, pad_size_divisor=32))
    out = pre(batch())
    assert tuple(out['inputs']['imgs'].shape) == (2, 3, 32, 32)
    assert [tuple(s.gt_depth_map.shape) for s in out['data_samples']
            ] == [(32, 32)] * 2
    assert tuple(out['inputs']['depth_imgs'].shape) == (2, 3, 32, 32)
    with pytest.raises(ValueError):
        MonoDepthDataPreprocessor(depth_divisor=0)
    # Without depth maps the preprocessor is plain Det3DDataPreprocessor.
    out = MODELS.build(cfg)(dict(inputs=dict(img=[img_a]),
                                 data_samples=[_sample(1.0)]))
    assert 'depth_imgs' not in out['inputs']


# ---------------------------------------------------------------------------
# End to end on the tiny synthetic KITTI (pipelines of the tiny config)
# ---------------------------------------------------------------------------
@pytest.fixture(scope='module')
def teacher_cfg(mini_kitti):
    cfg = Config.fromfile(CONFIG)
    root = str(mini_kitti[0]) + '/'
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader].dataset.data_root = root
    return cfg


def _strip(pipeline, drop=(), test_mode=False):
    out = []
    for t in copy.deepcopy(pipeline):
        if t['type'] in drop:
            continue
        if t['type'] == 'MonoAffineAug' and test_mode:
            t['test_mode'] = True
        out.append(t)
    return out


def _original(root, sample_idx, flip):
    name = '%06d.png' % sample_idx
    img = cv2.imread(osp.join(root, 'training', 'image_2', name))
    depth = cv2.imread(osp.join(root, 'training', 'depth_dense', name),
                       cv2.IMREAD_UNCHANGED) / 256.0
    if flip:
        img, depth = img[:, ::-1], depth[:, ::-1]
    return np.ascontiguousarray(img), np.ascontiguousarray(depth)


@pytest.mark.parametrize('filter_levels', [True, False])
def test_end_to_end_train_pipeline(teacher_cfg, mini_kitti, filter_levels):
    """The config's train pipeline; at half resolution few cars reach the
    spec's 25 px, so the run without the level filter covers more boxes."""
    root = str(mini_kitti[0])
    ds_cfg = copy.deepcopy(teacher_cfg.train_dataloader.dataset)
    pipeline = ds_cfg.pipeline
    assert [t['type'] for t in pipeline] == [
        'LoadImageFromFileMono3D', 'LoadAnnotations3D', 'LoadDenseDepth',
        'KittiObjectFilter', 'MonoAffineAug', 'MonoColorJitter',
        'PackMonoDepthInputs']
    pipeline[3]['filter_levels'] = filter_levels
    # frames whose cars are all filtered out are redrawn (the geometry
    # checks below need boxes)
    ds_cfg.filter_empty_gt = True
    dataset = DATASETS.build(ds_cfg)
    # Same draws without the colour jitter (it runs after the affine warp),
    # so that the packed image can be compared with the raw image.
    plain = Compose(_strip(pipeline, drop=('MonoColorJitter', )))
    seen, num_boxes, num_images, num_visible = set(), 0, 0, 0
    for seed in range(12):
        if seed >= 3 and len(seen) == 4:  # flip x crop all covered
            break
        for idx in range(len(dataset)):
            np.random.seed(100 * seed + idx)
            packed = dataset[idx]
            meta = packed['data_samples'].metainfo
            gt = packed['data_samples'].gt_instances_3d
            trans = np.asarray(meta['trans_mat'], dtype=np.float64)
            cam = np.asarray(meta['cam2img'], dtype=np.float64)[:3]
            flip = meta['flip']
            seen.add((flip, meta['aug_scale'] != 1.0))
            assert packed['inputs']['img'].shape == (3, OUT[1], OUT[0])
            packed_depth = packed['data_samples'].gt_depth_map.data
            assert packed_depth.shape == (1, OUT[1], OUT[0])
            # centers_2d = trans @ cam2img @ gravity centre (0.5 px).
            grav = gt.bboxes_3d.gravity_center.numpy().astype(np.float64)
            centres = gt.centers_2d.numpy()
            assert np.abs(proj(grav, trans @ cam) - centres).max() < 0.5
            # ... and equals the raw label centre, projected with the raw
            # P2, mirrored if flipped and mapped by trans.
            sample_idx = frame_id(meta['img_path'])
            rows = expected_cars(root, sample_idx, filter_levels)
            assert len(rows) == len(gt.bboxes_3d) > 0
            p2 = read_calib(osp.join(root, 'training', 'calib',
                                     '%06d.txt' % sample_idx))['P2']
            loc = np.array([r['loc'] for r in rows])
            hwl = np.array([r['hwl'] for r in rows])
            uv = proj(loc - [0, 1, 0] * hwl[:, :1] / 2, p2)
            bbox = np.array([r['bbox'] for r in rows])
            if flip:
                uv[:, 0] = W - 1 - uv[:, 0]
                bbox[:, [0, 2]] = W - 1 - bbox[:, [2, 0]]
                loc[:, 0] = -loc[:, 0]
            assert np.abs(apply_trans(trans, uv) - centres).max() < 0.5
            np.testing.assert_allclose(gt.bboxes_3d.tensor[:, :3], loc,
                                       atol=1e-4)
            np.testing.assert_allclose(gt.depths, loc[:, 2], atol=1e-4)
            boxes_2d = packed['data_samples'].gt_instances.bboxes.numpy()
            np.testing.assert_allclose(
                boxes_2d[:, :2], apply_trans(trans, bbox[:, :2]), atol=1e-3)
            np.testing.assert_allclose(
                boxes_2d[:, 2:], apply_trans(trans, bbox[:, 2:]), atol=1e-3)
            num_boxes += len(rows)
            # Depth map and image: the raw files warped by the same trans.
            img0, depth0 = _original(root, sample_idx, flip)
            warp_d = cv2.warpAffine(depth0.astype(np.float32), trans[:2],
                                    OUT, flags=cv2.INTER_LINEAR)
            np.testing.assert_allclose(packed_depth[0], warp_d, atol=1e-3)
            np.random.seed(100 * seed + idx)
            info = dataset.get_data_info(idx)
            if frame_id(info['img_path']) == sample_idx:  # not resampled
                again = plain(info)
                np.testing.assert_array_equal(
                    again['data_samples'].gt_depth_map.data, packed_depth)
                warp_i = cv2.warpAffine(img0, trans[:2], OUT,
                                        flags=cv2.INTER_LINEAR)
                # (trans_mat is float32 in the meta: +-1 grey level.)
                np.testing.assert_allclose(
                    again['inputs']['img'].permute(1, 2, 0).numpy(), warp_i,
                    atol=1)
                num_images += 1
            # The depth map agrees with the labels: at the projected centre
            # of a fully visible car the surface is within the box extent.
            depth = packed_depth[0].numpy()
            for r, (u, v) in zip(rows, centres):
                col, row = int(round(u)), int(round(v))
                if r['occluded'] or r['truncated'] or not (
                        0 <= col < OUT[0] and 0 <= row < OUT[1]):
                    continue
                d = depth[row, col]
                half_diag = 0.5 * math.hypot(r['hwl'][1], r['hwl'][2])
                assert abs(d - r['loc'][2]) <= half_diag + 0.05
                num_visible += 1
    assert seen == {(False, False), (False, True), (True, False),
                    (True, True)}
    assert num_boxes > 10 and num_images >= 3 and num_visible > 10


def test_end_to_end_val_sample_geometry(teacher_cfg, mini_kitti):
    root = str(mini_kitti[0])
    ds_cfg = copy.deepcopy(teacher_cfg.train_dataloader.dataset)
    ds_cfg.ann_file = 'kitti_infos_val.pkl'
    ds_cfg.pipeline = _strip(ds_cfg.pipeline, drop=('MonoColorJitter', ),
                             test_mode=True)
    dataset = DATASETS.build(ds_cfg)
    ids = [int(x) for x in open(osp.join(root, 'ImageSets', 'val.txt'))]
    assert [frame_id(dataset.get_data_info(i)['img_path'])
            for i in range(len(dataset))] == ids
    checked = 0
    trans = expected_trans((W / 2, H / 2), W)
    for idx, sample_idx in enumerate(ids):
        rows = expected_cars(root, sample_idx)
        if not rows:
            continue
        packed = dataset[idx]
        sample = packed['data_samples']
        assert sample.metainfo['sample_idx'] == idx
        assert frame_id(sample.metainfo['img_path']) == sample_idx
        assert sample.metainfo['aug_scale'] == 1.0
        assert sample.metainfo['flip'] is False
        np.testing.assert_allclose(sample.metainfo['trans_mat'][:2], trans,
                                   atol=1e-5)
        boxes = sample.gt_instances_3d.bboxes_3d.tensor.numpy()
        expect = np.array([list(r['loc']) + [r['hwl'][2], r['hwl'][0],
                                             r['hwl'][1], r['ry']]
                           for r in rows])
        np.testing.assert_allclose(boxes, expect, atol=1e-5)
        bbox = np.array([r['bbox'] for r in rows])
        got = sample.gt_instances.bboxes.numpy()
        np.testing.assert_allclose(got[:, :2], apply_trans(trans,
                                                           bbox[:, :2]),
                                   atol=1e-3)
        np.testing.assert_allclose(got[:, 2:], apply_trans(trans,
                                                           bbox[:, 2:]),
                                   atol=1e-3)
        checked += 1
    assert checked > 0
    # The teacher's test pipeline packs the depth map beside the image.
    test_set = DATASETS.build(teacher_cfg.val_dataloader.dataset)
    packed = test_set[0]
    assert tuple(packed['inputs']['img'].shape) == (3, OUT[1], OUT[0])
    assert tuple(packed['data_samples'].gt_depth_map.data.shape) == (
        1, OUT[1], OUT[0])
    assert packed['data_samples'].metainfo['aug_scale'] == 1.0


def test_end_to_end_preprocessor_batch(teacher_cfg):
    ds_cfg = copy.deepcopy(teacher_cfg.train_dataloader.dataset)
    dataset = DATASETS.build(ds_cfg)
    np.random.seed(0)
    batch = pseudo_collate([dataset[0], dataset[1]])
    scales = [s.metainfo['aug_scale'] for s in batch['data_samples']]
    depth_in = [s.gt_depth_map.data.clone() for s in batch['data_samples']]
    pre = MODELS.build(teacher_cfg.model.data_preprocessor)
    processed = pre(batch, training=True)
    out = processed['inputs']
    assert tuple(out['imgs'].shape) == (2, 3, OUT[1], OUT[0])
    depth = stack_depth_maps(processed['data_samples'])
    assert tuple(depth.shape) == (2, 1, OUT[1], OUT[0])
    # the tiny configs feed the teacher metres / 80 (corrected quirk Q1)
    for i, scale in enumerate(scales):
        torch.testing.assert_close(depth[i], depth_in[i])
        torch.testing.assert_close(
            out['depth_imgs'][i],
            (depth_in[i] * scale / 80.0).expand(3, -1, -1))
