"""Tests of tools/dense_depth.py on synthetic KITTI frames."""

import os
import shutil

import cv2
import numpy as np
import pytest

from monoasd.datasets.kitti_io import read_calib

from conftest import import_tool
from monoasd.datasets import depth_completion as dc
from monoasd.synthetic import generator as gen

cli = import_tool('create_synthetic_kitti')
dd = import_tool('dense_depth')

WIDTH, HEIGHT = 621, 188
NUM_FRAMES = 3
#: At LiDAR pixels the output must match the rendered depth within this.
POINT_TOL = 0.1
MIN_POINT_MATCH = 0.95
#: Median absolute error (metres) over ground/object pixels of the lower
#: image; measured about 0.09-0.11 m at 621x188 (0.04-0.08 m at 1242x375).
MAX_LOWER_MEDIAN_ERR = 0.25
#: The lower part of the image starts at this fraction of the height
#: (below the bottom of the distant background).
LOWER_START = 0.6


@pytest.fixture(scope='module')
def kitti(tmp_path_factory):
    """Synthetic frames plus dense depth maps written by the tool."""
    out = tmp_path_factory.mktemp('dd') / 'mini'
    assert cli.main(['--out', str(out), '--num-train', str(NUM_FRAMES),
                     '--num-val', '0', '--num-test', '0', '--width',
                     str(WIDTH), '--height', str(HEIGHT), '--workers',
                     '1']) == 0
    root = out / 'training'
    assert dd.main(['--root', str(root), '--out-dir', str(out / 'completed'),
                    '--workers', '2']) == 0
    return root, out / 'completed'


def load_depth(path):
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.dtype == np.uint16
    return image.astype(np.float64) / 256.0


def test_read_calib(kitti, tmp_path):
    root, _ = kitti
    calib = read_calib(str(root / 'calib/000000.txt'))
    assert calib['P2'].shape == (3, 4)
    assert calib['R0_rect'].shape == (3, 3)
    assert calib['Tr_velo_to_cam'].shape == (3, 4)
    frame = gen.generate_frame(0, 0, WIDTH, HEIGHT)
    for key in ('P2', 'R0_rect', 'Tr_velo_to_cam'):
        np.testing.assert_array_equal(calib[key], frame['calib'][key])
    bad = tmp_path / 'bad.txt'
    bad.write_text('P2: 1 2 3\n')
    with pytest.raises(ValueError, match='bad.txt'):
        read_calib(str(bad))
    with pytest.raises(ValueError, match='missing.txt'):
        read_calib(str(tmp_path / 'missing.txt'))


def test_project_velodyne_nearest_wins():
    focal, cu, cv = 100.0, 50.0, 20.0
    calib = {'P2': np.array([[focal, 0, cu, 0], [0, focal, cv, 0],
                             [0, 0, 1, 0]]),
             'R0_rect': np.eye(3),
             'Tr_velo_to_cam': np.c_[gen.VELO_TO_CAM_AXES, np.zeros(3)]}
    # LiDAR (forward, left, up) -> camera (x=-left, y=-up, z=forward).
    points = np.array([
        [10.0, 0.0, 0.0, 0.5],     # centre pixel (20, 50), z = 10
        [5.0, 0.0, 0.0, 0.5],      # same pixel, nearer: wins
        [20.0, -2.0, -1.0, 0.5],   # u = 60, v = 25, z = 20
        [-5.0, 0.0, 0.0, 0.5],     # behind the camera
        [0.05, 0.0, 0.0, 0.5],     # closer than the minimum depth
        [10.0, -10.0, 0.0, 0.5],   # u = 150: outside
        [10.0, -0.0449, 0.0449, 0.5],  # u = 50.449 -> col 50, row 20
    ], dtype=np.float32)
    depth = dc.project_velodyne(points, calib, (40, 100))
    assert depth.shape == (40, 100) and depth.dtype == np.float32
    assert depth[20, 50] == pytest.approx(5.0)
    assert depth[25, 60] == pytest.approx(20.0)
    assert np.count_nonzero(depth) == 2


def test_complete_depth_plane_and_empty():
    sparse = np.zeros((60, 80), dtype=np.float32)
    sparse[2::5, 1::3] = 12.5
    dense = dc.complete_depth(sparse)
    np.testing.assert_allclose(dense, 12.5, atol=1e-3)
    assert not (dc.complete_depth(np.zeros((10, 10))) != 0).any()
    far = np.full((10, 10), 120.0, dtype=np.float32)
    assert dc.complete_depth(far, max_depth=80.0).max() <= 80.0


def test_dense_depth_matches_rendering(kitti):
    root, completed = kitti
    for i in range(NUM_FRAMES):
        name = '%06d' % i
        dense = load_depth(completed / (name + '.png'))
        truth = load_depth(root / 'depth_dense' / (name + '.png'))
        assert dense.shape == truth.shape == (HEIGHT, WIDTH)
        calib = read_calib(str(root / 'calib' / (name + '.txt')))
        points = dc.read_velodyne(str(root / 'velodyne' / (name + '.bin')))
        sparse = dc.project_velodyne(points, calib, (HEIGHT, WIDTH))
        lidar = sparse > 0
        assert lidar.sum() > 1000
        # The tool keeps measured depths: compare each LiDAR pixel with the
        # rendered surface at the point's sub-pixel image position (1/depth
        # interpolated bilinearly, exact on planes).
        tr = calib['Tr_velo_to_cam']
        rect = (points[:, :3].astype(np.float64) @ tr[:, :3].T
                + tr[:, 3]) @ calib['R0_rect'].T
        rect = rect[rect[:, 2] > 0.1]
        uvw = rect @ calib['P2'][:, :3].T + calib['P2'][:, 3]
        u, v = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
        keep = (u >= 0) & (u <= WIDTH - 1) & (v >= 0) & (v <= HEIGHT - 1)
        u, v = u[keep], v[keep]
        col = np.floor(u + 0.5).astype(int)
        row = np.floor(v + 0.5).astype(int)
        c0 = np.clip(np.floor(u).astype(int), 0, WIDTH - 2)
        r0 = np.clip(np.floor(v).astype(int), 0, HEIGHT - 2)
        fu, fv = u - c0, v - r0
        quad = np.stack([truth[r0, c0], truth[r0, c0 + 1],
                         truth[r0 + 1, c0], truth[r0 + 1, c0 + 1]])
        ok = (quad > 0).all(axis=0)
        quad = np.where(ok, quad, 1.0)
        inv = ((1 - fv) * ((1 - fu) / quad[0] + fu / quad[1])
               + fv * ((1 - fu) / quad[2] + fu / quad[3]))
        ref = np.where(ok, 1.0 / inv, 0.0)
        match = np.abs(dense[row, col] - ref) < POINT_TOL
        assert match.mean() > MIN_POINT_MATCH, match.mean()
        # Pixel-centre comparison with a tolerance for the half-pixel
        # offset of the point (depth changes fast along the ground).
        pad = np.pad(truth, 1, mode='edge')
        grad_v = np.minimum(np.abs(pad[2:, 1:-1] - truth),
                            np.abs(truth - pad[:-2, 1:-1]))
        grad_u = np.minimum(np.abs(pad[1:-1, 2:] - truth),
                            np.abs(truth - pad[1:-1, :-2]))
        tol = POINT_TOL + 0.5 * np.maximum(grad_u, grad_v)
        err = np.abs(dense - truth)
        assert (err[lidar] < tol[lidar]).mean() > MIN_POINT_MATCH
        # Everywhere in the lower image (ground and objects).
        lower = np.zeros_like(lidar)
        lower[int(LOWER_START * HEIGHT):] = True
        region = lower & (truth > 0)
        assert (dense[region] > 0).all()
        assert np.median(err[region]) < MAX_LOWER_MEDIAN_ERR
    leftovers = [p for p in os.listdir(completed) if p.startswith('.')]
    assert not leftovers


def test_skip_existing_and_overwrite(kitti, tmp_path, capsys):
    root, _ = kitti
    out = tmp_path / 'out'
    argv = ['--root', str(root), '--out-dir', str(out), '--workers', '1']
    assert dd.main(argv) == 0
    assert 'written' in capsys.readouterr().out
    target = out / '000001.png'
    reference = target.read_bytes()
    target.write_bytes(b'sentinel')
    assert dd.main(argv) == 0
    assert '0 written, %d skipped, 0 failed' % NUM_FRAMES in (
        capsys.readouterr().out)
    assert target.read_bytes() == b'sentinel'
    assert dd.main(argv + ['--overwrite']) == 0
    assert '%d written, 0 skipped' % NUM_FRAMES in capsys.readouterr().out
    assert target.read_bytes() == reference
    # Default output directory is ROOT/depth_dense.
    copy = tmp_path / 'copy'
    for sub in ('image_2', 'calib', 'velodyne'):
        shutil.copytree(root / sub, copy / sub)
    assert dd.main(['--root', str(copy), '--workers', '1']) == 0
    assert sorted(os.listdir(copy / 'depth_dense')) == sorted(
        os.listdir(out))


def test_corrupt_inputs_are_reported(kitti, tmp_path, capsys):
    root, _ = kitti
    copy = tmp_path / 'copy'
    for sub in ('image_2', 'calib', 'velodyne'):
        shutil.copytree(root / sub, copy / sub)
    bin_path = copy / 'velodyne/000001.bin'
    data = bin_path.read_bytes()
    bin_path.write_bytes(data[:len(data) - 6])
    with pytest.raises(ValueError, match='000001.bin'):
        dc.read_velodyne(str(bin_path))
    os.remove(copy / 'calib/000002.txt')
    assert dd.main(['--root', str(copy), '--workers', '2']) == 1
    captured = capsys.readouterr()
    assert str(bin_path) in captured.err
    assert 'multiple of 16' in captured.err
    assert str(copy / 'calib/000002.txt') in captured.err
    assert '1 written, 0 skipped, 2 failed' in captured.out
    assert sorted(os.listdir(copy / 'depth_dense')) == ['000000.png']


def copy_inputs(root, dst):
    for sub in ('image_2', 'calib', 'velodyne'):
        shutil.copytree(root / sub, dst / sub)
    return dst


def test_dense_depth_reports_scans_without_image(kitti, tmp_path, capsys):
    root, _ = kitti
    copy = copy_inputs(root, tmp_path / 'copy')
    os.remove(copy / 'image_2/000002.png')
    assert dd.main(['--root', str(copy), '--workers', '1']) == 0
    captured = capsys.readouterr()
    assert '1 velodyne scan(s) have no image_2 file' in captured.err
    assert '000002' in captured.err
    assert '2 written' in captured.out and '1 without image' in captured.out


def test_dense_depth_refuses_sparse_scan(kitti, tmp_path, capsys):
    root, _ = kitti
    copy = copy_inputs(root, tmp_path / 'copy')
    velo = copy / 'velodyne/000001.bin'
    points = np.fromfile(velo, dtype=np.float32).reshape(-1, 4)
    points[:300].tofile(velo)
    assert dd.main(['--root', str(copy), '--workers', '1']) == 1
    captured = capsys.readouterr()
    assert '000001: only' in captured.err and 'no depth map' in captured.err
    assert '1 too sparse' in captured.out
    assert not (copy / 'depth_dense/000001.png').exists()
