"""Tests of tools/create_synthetic_kitti.py (synthetic mini-KITTI)."""

import filecmp
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from monoasd.datasets.kitti_io import encode_depth

from conftest import import_tool
from monoasd.synthetic import generator as gen
from monoasd.synthetic import read_synthetic_meta

cli = import_tool('create_synthetic_kitti')

WIDTH, HEIGHT = 621, 188  # half of KITTI's 1242x375
NUM_TRAIN, NUM_VAL, NUM_TEST = 3, 2, 1
CLASSES = {'Car', 'Pedestrian', 'Cyclist'}
#: Labels are written with 2 decimals.
ROUND_TOL = 0.011
#: Points must match the rendered depth within this many metres.
LIDAR_DEPTH_TOL = 0.1
MIN_LIDAR_MATCH = 0.95


def run_generator(out, seed=0, workers=1, extra=()):
    argv = ['--out', str(out), '--num-train', str(NUM_TRAIN), '--num-val',
            str(NUM_VAL), '--num-test', str(NUM_TEST), '--seed', str(seed),
            '--width', str(WIDTH), '--height', str(HEIGHT), '--workers',
            str(workers)] + list(extra)
    assert cli.main(argv) == 0
    return Path(out)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    return run_generator(tmp_path_factory.mktemp('kitti') / 'mini')


def read_ids(path):
    return [line.strip() for line in open(path) if line.strip()]


def read_calib(path):
    calib = {}
    keys = []
    for line in open(path):
        if ':' in line:
            key, vals = line.split(':', 1)
            keys.append(key)
            calib[key] = np.array([float(v) for v in vals.split()])
    return keys, calib


def read_labels(path):
    rows = []
    for line in open(path):
        fields = line.split()
        if fields:
            rows.append(fields)
    return rows


def rot_y(ry):
    c, s = math.cos(ry), math.sin(ry)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def corners_3d(h, w, length, loc, ry):
    """Independent re-implementation of the KITTI box corners."""
    xs = [length / 2, length / 2, -length / 2, -length / 2] * 2
    ys = [0, 0, 0, 0, -h, -h, -h, -h]
    zs = [w / 2, -w / 2, -w / 2, w / 2] * 2
    return (rot_y(ry) @ np.array([xs, ys, zs])).T + np.asarray(loc)


def project(pts, p2):
    uvw = np.c_[pts, np.ones(len(pts))] @ p2.T
    return uvw[:, :2] / uvw[:, 2:]


def bev_overlap(a, b):
    """Separating-axis test of two (x, z, w, l, ry) footprints."""
    def rect(x, z, w, length, ry):
        c, s = math.cos(ry), math.sin(ry)
        ax = np.array([[c, -s], [s, c]])  # length axis, width axis (x, z)
        return np.array([x, z]), ax, np.array([length / 2, w / 2])
    ca, axa, ha = rect(*a)
    cb, axb, hb = rect(*b)
    for axis in np.concatenate([axa, axb]):
        if abs((cb - ca) @ axis) > (ha @ np.abs(axa @ axis)
                                    + hb @ np.abs(axb @ axis)):
            return False
    return True


def lidar_to_rect(points, calib):
    tr = calib['Tr_velo_to_cam'].reshape(3, 4)
    r0 = calib['R0_rect'].reshape(3, 3)
    return (points[:, :3].astype(np.float64) @ tr[:, :3].T + tr[:, 3]) @ r0.T


def sample_inverse_depth(depth, u, v):
    """Bilinear interpolation of 1/depth (exact on planes); 0 if invalid."""
    h, w = depth.shape
    c0 = np.clip(np.floor(u).astype(int), 0, w - 2)
    r0 = np.clip(np.floor(v).astype(int), 0, h - 2)
    fu, fv = u - c0, v - r0
    q = [depth[r0, c0], depth[r0, c0 + 1], depth[r0 + 1, c0],
         depth[r0 + 1, c0 + 1]]
    ok = np.all([qi > 0 for qi in q], axis=0)
    q = [np.where(ok, qi, 1.0) for qi in q]
    inv = ((1 - fv) * ((1 - fu) / q[0] + fu / q[1])
           + fv * ((1 - fu) / q[2] + fu / q[3]))
    return np.where(ok, 1.0 / inv, 0.0)


def test_layout_and_imagesets(dataset):
    sets = {name: read_ids(dataset / 'ImageSets' / (name + '.txt'))
            for name in ('train', 'val', 'trainval', 'test')}
    assert len(sets['train']) == NUM_TRAIN and len(sets['val']) == NUM_VAL
    assert not set(sets['train']) & set(sets['val'])
    assert sets['trainval'] == sorted(sets['train'] + sets['val'])
    num_training = NUM_TRAIN + NUM_VAL
    assert sets['trainval'] == ['%06d' % i for i in range(num_training)]
    assert sets['test'] == ['%06d' % i for i in range(NUM_TEST)]
    layout = {'training': {'image_2': '.png', 'calib': '.txt',
                           'label_2': '.txt', 'velodyne': '.bin',
                           'depth_dense': '.png'},
              'testing': {'image_2': '.png', 'calib': '.txt',
                          'velodyne': '.bin'}}
    for split, subdirs in layout.items():
        ids = sets['trainval' if split == 'training' else 'test']
        assert sorted(p.name for p in (dataset / split).iterdir()) == sorted(
            subdirs)
        for sub, ext in subdirs.items():
            names = sorted(os.listdir(dataset / split / sub))
            assert names == [i + ext for i in ids], (split, sub)
    for i in sets['trainval']:
        img = cv2.imread(str(dataset / 'training/image_2' / (i + '.png')))
        assert img.shape == (HEIGHT, WIDTH, 3)
        depth = cv2.imread(
            str(dataset / 'training/depth_dense' / (i + '.png')),
            cv2.IMREAD_UNCHANGED)
        assert depth.dtype == np.uint16 and depth.shape == (HEIGHT, WIDTH)
        assert depth.max() > 0
    assert sorted(p.name for p in dataset.iterdir()) == [
        'ImageSets', 'synthetic.json', 'testing', 'training']
    # the generation options, read back by run_main's data stage
    assert read_synthetic_meta(str(dataset)) == dict(
        num_train=NUM_TRAIN, num_val=NUM_VAL, num_test=NUM_TEST, seed=0,
        width=WIDTH, height=HEIGHT, yaw='uniform', dense_depth=True,
        depth_crop=None)


def test_deterministic_across_workers_and_seeds(dataset, tmp_path):
    same = run_generator(tmp_path / 'same', seed=0, workers=2)
    for split in ('training', 'testing'):
        for sub in os.listdir(dataset / split):
            names = sorted(os.listdir(dataset / split / sub))
            match, mismatch, errors = filecmp.cmpfiles(
                dataset / split / sub, same / split / sub, names,
                shallow=False)
            assert not mismatch and not errors, (split, sub, mismatch)
    other = run_generator(tmp_path / 'other', seed=1)
    for sub in ('image_2', 'label_2', 'velodyne', 'calib', 'depth_dense'):
        for name in os.listdir(dataset / 'training' / sub):
            assert (dataset / 'training' / sub / name).read_bytes() != (
                other / 'training' / sub / name).read_bytes(), (sub, name)
    # Test frames are seeded apart from training frames with the same id.
    assert (dataset / 'testing/image_2/000000.png').read_bytes() != (
        dataset / 'training/image_2/000000.png').read_bytes()


def test_calib_format_and_values(dataset):
    sx, sy = WIDTH / 1242.0, HEIGHT / 375.0
    for path in sorted((dataset / 'training/calib').iterdir()):
        keys, calib = read_calib(path)
        assert keys == ['P0', 'P1', 'P2', 'P3', 'R0_rect', 'Tr_velo_to_cam',
                        'Tr_imu_to_velo']
        assert all(len(calib[k]) == 12 for k in keys if k != 'R0_rect')
        assert len(calib['R0_rect']) == 9
        p2 = calib['P2'].reshape(3, 4)
        assert p2[0, 0] == pytest.approx(721.5377 * sx, rel=0.005)
        assert p2[1, 1] == pytest.approx(721.5377 * sy, rel=0.005)
        assert p2[0, 1] == 0 and p2[1, 0] == 0
        assert abs(p2[0, 2] - WIDTH / 2) < 13 * sx
        assert p2[1, 2] == pytest.approx(172.854 * sy, abs=2.1 * sy)
        np.testing.assert_allclose(p2[:, 3], [44.857 * sx, 0.2163 * sy,
                                              0.00274], rtol=1e-9)
        np.testing.assert_allclose(p2[2, :3], [0, 0, 1])
        r0 = calib['R0_rect'].reshape(3, 3)
        np.testing.assert_allclose(r0 @ r0.T, np.eye(3), atol=1e-9)
        np.testing.assert_allclose(r0, np.eye(3), atol=0.01)
        tr = calib['Tr_velo_to_cam'].reshape(3, 4)
        # LiDAR forward/left/up map to camera forward/-x/-y.
        np.testing.assert_allclose(tr[:, :3] @ [1, 0, 0], [0, 0, 1],
                                   atol=0.01)
        np.testing.assert_allclose(tr[:, :3] @ [0, 1, 0], [-1, 0, 0],
                                   atol=0.01)
        np.testing.assert_allclose(tr[:, 3], [-0.004, -0.076, -0.272],
                                   atol=0.01)


def test_full_size_calib():
    frame = gen.generate_frame(0, 0)
    p2 = frame['calib']['P2']
    assert frame['image'].shape == (375, 1242, 3)
    assert p2[0, 0] == pytest.approx(721.5377, rel=0.005)
    assert p2[1, 2] == pytest.approx(172.854, abs=2.1)
    np.testing.assert_allclose(p2[:, 3], [44.857, 0.2163, 0.00274])


def test_labels_match_projection(dataset):
    count = 0
    for path in sorted((dataset / 'training/label_2').iterdir()):
        _, calib = read_calib(dataset / 'training/calib' / (path.stem
                                                            + '.txt'))
        p2 = calib['P2'].reshape(3, 4)
        for fields in read_labels(path):
            assert len(fields) == 15
            if fields[0] == 'DontCare':
                continue
            count += 1
            assert fields[0] in CLASSES
            vals = [float(v) for v in fields[1:]]
            trunc, occ, alpha = vals[0], int(fields[2]), vals[2]
            bbox = np.array(vals[3:7])
            h, w, length = vals[7:10]
            loc = np.array(vals[10:13])
            ry = vals[13]
            assert 0.0 <= trunc <= 1.0 and occ in (0, 1, 2, 3)
            assert loc[1] == pytest.approx(1.65)
            assert 5.0 - ROUND_TOL <= loc[2] <= 60.0 + ROUND_TOL
            assert -math.pi <= ry <= math.pi
            expect_alpha = ry - math.atan2(loc[0], loc[2])
            expect_alpha = (expect_alpha + math.pi) % (2 * math.pi) - math.pi
            diff = (alpha - expect_alpha + math.pi) % (2 * math.pi) - math.pi
            assert abs(diff) < ROUND_TOL
            uv = project(corners_3d(h, w, length, loc, ry), p2)
            full = np.array([uv[:, 0].min(), uv[:, 1].min(),
                             uv[:, 0].max(), uv[:, 1].max()])
            clipped = np.clip(full, 0, [WIDTH - 1, HEIGHT - 1] * 2)
            np.testing.assert_allclose(bbox, clipped, atol=ROUND_TOL)
            area = np.prod(full[2:] - full[:2])
            expect_trunc = 1 - np.prod(clipped[2:] - clipped[:2]) / area
            assert trunc == pytest.approx(expect_trunc, abs=ROUND_TOL)
            centre = project((loc - [0, h / 2, 0])[None], p2)[0]
            assert full[0] <= centre[0] <= full[2]
            assert full[1] <= centre[1] <= full[3]
            if trunc == 0:
                assert bbox[0] <= centre[0] <= bbox[2]
                assert bbox[1] <= centre[1] <= bbox[3]
    assert count > 0


def test_objects_do_not_overlap_in_bev(dataset):
    for path in sorted((dataset / 'training/label_2').iterdir()):
        boxes = []
        for f in read_labels(path):
            if f[0] != 'DontCare':
                h, w, length, x, _, z, ry = (float(v) for v in f[8:15])
                boxes.append((x, z, w, length, ry))
        for i in range(len(boxes)):
            for j in range(i):
                assert not bev_overlap(boxes[i], boxes[j]), path
    # Many sampled scenes (no rendering needed).
    counts = []
    for seed in range(150):
        rng = np.random.default_rng(seed)
        calib = gen.make_calib(rng, WIDTH, HEIGHT)
        objects = gen.sample_objects(rng, calib, WIDTH)
        counts.append(len(objects))
        boxes = [(o['loc'][0], o['loc'][2], o['dims'][1], o['dims'][2],
                  o['ry']) for o in objects]
        for i in range(len(boxes)):
            for j in range(i):
                assert not bev_overlap(boxes[i], boxes[j])
        for o in objects:
            assert o['cls'] in CLASSES
            assert 5.0 - ROUND_TOL <= o['loc'][2] <= 60.0 + ROUND_TOL
    assert min(counts) >= 1 and max(counts) <= 8 and max(counts) >= 6


def test_velodyne_matches_rendered_depth(dataset):
    for split in ('training', 'testing'):
        for path in sorted((dataset / split / 'velodyne').iterdir()):
            assert path.stat().st_size % 16 == 0
            pts = np.fromfile(path, dtype='<f4').reshape(-1, 4)
            assert len(pts) > 1000
            assert ((pts[:, 3] >= 0) & (pts[:, 3] <= 1)).all()
            assert np.linalg.norm(pts[:, :3], axis=1).max() < 80.1
            # Near ground returns sit LIDAR_HEIGHT below the sensor.
            near = (np.hypot(pts[:, 0], pts[:, 1]) < 10) & (pts[:, 2] < -1.5)
            assert np.median(pts[near, 2]) == pytest.approx(-1.73, abs=0.05)
    for path in sorted((dataset / 'training/velodyne').iterdir()):
        _, calib = read_calib(dataset / 'training/calib' / (path.stem
                                                            + '.txt'))
        depth = cv2.imread(str(dataset / 'training/depth_dense'
                               / (path.stem + '.png')),
                           cv2.IMREAD_UNCHANGED) / 256.0
        pts = np.fromfile(path, dtype='<f4').reshape(-1, 4)
        rect = lidar_to_rect(pts, calib)
        rect = rect[rect[:, 2] > 0.1]
        uv = project(rect, calib['P2'].reshape(3, 4))
        inside = ((uv[:, 0] >= 0) & (uv[:, 0] <= WIDTH - 1)
                  & (uv[:, 1] >= 0) & (uv[:, 1] <= HEIGHT - 1))
        assert inside.sum() > 1000
        sampled = sample_inverse_depth(depth, uv[inside, 0], uv[inside, 1])
        err = np.abs(sampled - rect[inside, 2])
        assert (err < LIDAR_DEPTH_TOL).mean() > MIN_LIDAR_MATCH


def test_lone_object_and_occlusion():
    car = {'cls': 'Car', 'dims': (1.5, 1.6, 3.9), 'loc': (0.5, 1.65, 15.0),
           'ry': 0.3}
    frame = gen.generate_frame(3, 0, WIDTH, HEIGHT, objects=[car])
    labels = [r for r in frame['labels'] if r['type'] != 'DontCare']
    assert len(labels) == 1
    assert labels[0]['occluded'] == 0 and labels[0]['truncated'] == 0
    # The 2D box is tight around the rendered silhouette.
    rows, cols = np.nonzero(frame['ids'] == 0)
    x1, y1, x2, y2 = labels[0]['bbox']
    assert x1 <= cols.min() < x1 + 1 and x2 - 1 < cols.max() <= x2
    assert y1 <= rows.min() < y1 + 1 and y2 - 1 < rows.max() <= y2
    # Rendered depth of the ground below the car matches the plane.
    p2 = frame['calib']['P2']
    centre = -np.linalg.solve(p2[:, :3], p2[:, 3])
    row = HEIGHT - 1
    ray_y = (row - p2[1, 2]) / p2[1, 1]
    expect = centre[2] + (1.65 - centre[1]) / ray_y
    col = WIDTH // 2
    if frame['ids'][row, col] == gen.GROUND_ID:
        assert frame['depth'][row, col] == pytest.approx(expect, abs=1e-3)
    # A second, nearer car hides part of the first one: its occlusion level
    # follows from the pixels it keeps relative to the lone render.
    lone_pixels = (frame['ids'] == 0).sum()
    front = {'cls': 'Car', 'dims': (1.6, 1.7, 4.2), 'loc': (-1.2, 1.65, 8.0),
             'ry': 0.0}
    frame = gen.generate_frame(3, 0, WIDTH, HEIGHT, objects=[car, front])
    by_index = {r['index']: r for r in frame['labels']}
    assert by_index[1]['occluded'] == 0
    hidden = 1 - (frame['ids'] == 0).sum() / lone_pixels
    assert 0.1 <= hidden < 1.0
    expect = sum(hidden >= t for t in (0.1, 0.4, 0.8))
    assert by_index[0]['occluded'] == expect >= 1


def test_depth_crop_and_flags(tmp_path):
    base = ['--num-train', '1', '--num-val', '0', '--num-test', '0',
            '--width', str(WIDTH), '--height', str(HEIGHT), '--workers',
            '1']
    assert cli.main(['--out', str(tmp_path / 'a')] + base
                    + ['--depth-crop']) == 0
    crop = cv2.imread(str(tmp_path / 'a/training/depth_dense/000000.png'),
                      cv2.IMREAD_UNCHANGED)
    cw = round(WIDTH * 1216 / 1242)
    ch = round(HEIGHT * 352 / 375)
    assert crop.shape == (ch, cw)
    frame = gen.generate_frame(0, 0, WIDTH, HEIGHT)
    full = encode_depth(frame['depth'])
    left = (WIDTH - cw) // 2
    np.testing.assert_array_equal(crop, full[HEIGHT - ch:, left:left + cw])
    assert cli.main(['--out', str(tmp_path / 'b')] + base
                    + ['--depth-crop', '600x150']) == 0
    crop = cv2.imread(str(tmp_path / 'b/training/depth_dense/000000.png'),
                      cv2.IMREAD_UNCHANGED)
    assert crop.shape == (150, 600)
    assert cli.main(['--out', str(tmp_path / 'c')] + base
                    + ['--no-dense-depth']) == 0
    assert not (tmp_path / 'c/training/depth_dense').exists()
    # Existing frames are kept unless --overwrite is given.
    assert cli.main(['--out', str(tmp_path / 'c')] + base) == 1
    assert cli.main(['--out', str(tmp_path / 'c')] + base
                    + ['--overwrite']) == 0
    assert (tmp_path / 'c/training/depth_dense/000000.png').exists()
    leftovers = [name for _, _, files in os.walk(tmp_path)
                 for name in files if name.startswith('.')]
    assert not leftovers


def test_road_yaw_puts_most_vehicles_along_the_road():
    """``yaw='road'``: about 80 % of cars and cyclists have ry within 3
    sigma of +-pi/2, both directions occur, pedestrians stay uniform; the
    default ``'uniform'`` draws the same objects as before the option."""
    def along(ry):
        return abs(abs(ry) - math.pi / 2) < 3 * gen.ROAD_YAW_STD

    def objects(yaw):
        out = []
        for seed in range(300):
            rng = np.random.default_rng(seed)
            calib = gen.make_calib(rng, WIDTH, HEIGHT)
            out += gen.sample_objects(rng, calib, WIDTH, yaw)
        return out

    road = objects('road')
    vehicles = [o['ry'] for o in road if o['cls'] in gen.ROAD_CLASSES]
    fraction = np.mean([along(r) for r in vehicles])
    assert len(vehicles) > 500
    # 0.8 along the road + 0.2 x (uniform hits the band: 4 x 0.3 / 2 pi)
    assert abs(fraction - (0.8 + 0.2 * 1.2 / (2 * math.pi))) < 0.05
    assert 0.4 < np.mean([r > 0 for r in vehicles if along(r)]) < 0.6
    people = [o['ry'] for o in road if o['cls'] == 'Pedestrian']
    assert np.mean([along(r) for r in people]) < 0.35
    uniform = objects('uniform')
    assert np.mean([along(o['ry']) for o in uniform]) < 0.35
    # the default is the uniform draw, bit for bit
    rng = np.random.default_rng(7)
    calib = gen.make_calib(rng, WIDTH, HEIGHT)
    default = gen.sample_objects(rng, calib, WIDTH)
    rng = np.random.default_rng(7)
    calib = gen.make_calib(rng, WIDTH, HEIGHT)
    explicit = gen.sample_objects(rng, calib, WIDTH, 'uniform')

    def geometry(objs):
        return [(o['cls'], o['dims'], o['loc'], o['ry']) for o in objs]

    assert geometry(default) == geometry(explicit)
    with pytest.raises(ValueError, match='yaw'):
        gen.write_dataset('/nonexistent', 1, 1, 0, yaw='diagonal')
