"""monoasd.datasets.kitti_io: the one KITTI calib and depth-PNG codec."""
import cv2
import numpy as np
import pytest

from monoasd.datasets.kitti_io import (CALIB_KEYS, DEPTH_SCALE, encode_depth,
                                       format_calib, parse_calib_text,
                                       read_calib, read_depth_png, write_png)


def _calib():
    rng = np.random.default_rng(0)
    shapes = {k: (3, 3) if k == 'R0_rect' else (3, 4) for k in CALIB_KEYS}
    return {k: rng.normal(size=s) for k, s in shapes.items()}


def test_format_parse_round_trip_and_order(tmp_path):
    calib = _calib()
    text = format_calib(calib)
    assert [line.split(':')[0] for line in text.split('\n') if line] == \
        list(CALIB_KEYS)
    back = parse_calib_text(text)
    for k in CALIB_KEYS:
        np.testing.assert_allclose(back[k], calib[k], rtol=1e-12)
    path = tmp_path / 'c.txt'
    path.write_text(text)
    assert set(read_calib(str(path))) == set(CALIB_KEYS)


def test_aliases_and_unknown_keys():
    text = ('P2: ' + ' '.join(['1'] * 12) + '\nR_rect: ' +
            ' '.join(['0'] * 9) + '\nTr_velo_cam: ' + ' '.join(['2'] * 12) +
            '\nS_02: 1 2\n')
    calib = parse_calib_text(text)
    assert set(calib) == {'P2', 'R0_rect', 'Tr_velo_to_cam'}
    assert calib['R0_rect'].shape == (3, 3)
    assert (calib['Tr_velo_to_cam'] == 2).all()


def test_errors_name_file_and_key(tmp_path):
    bad = tmp_path / 'bad.txt'
    bad.write_text('P2: 1 2 3\n')
    with pytest.raises(ValueError, match=r'bad.txt: malformed P2 line.*12'):
        read_calib(str(bad))
    bad.write_text('P2: 1 2 x 4 5 6 7 8 9 10 11 12\n')
    with pytest.raises(ValueError, match='bad.txt: malformed P2'):
        read_calib(str(bad))
    bad.write_text('P0: ' + ' '.join(['1'] * 12) + '\n')
    with pytest.raises(ValueError, match='has no "P2:" line$'):
        read_calib(str(bad), required=('P2', ))
    with pytest.raises(ValueError, match='"R0_rect:", "Tr_velo_to_cam:"'):
        read_calib(str(bad), required=('P0', 'R0_rect', 'Tr_velo_to_cam'))
    bad.write_text('P2: ' + ' '.join(['nan'] + ['1'] * 11) + '\n')
    with pytest.raises(ValueError, match='non-finite values in P2'):
        read_calib(str(bad), required=('P2', ))
    with pytest.raises(ValueError, match='missing.txt: cannot read'):
        read_calib(str(tmp_path / 'missing.txt'))


def test_depth_png_round_trip_and_errors(tmp_path):
    depth = np.array([[0.0, 1.0, 12.3456], [79.99, 300.0, -1.0]])
    enc = encode_depth(depth)
    assert enc.dtype == np.uint16
    assert enc.tolist() == [[0, 256, round(12.3456 * 256)],
                            [round(79.99 * 256), 65535, 0]]
    path = tmp_path / 'd.png'
    write_png(str(path), enc)
    assert [p.name for p in tmp_path.iterdir()] == ['d.png']  # no tmp left
    back = read_depth_png(str(path))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back[0], depth[0], atol=0.5 / DEPTH_SCALE)
    assert back[1, 1] == pytest.approx(65535 / DEPTH_SCALE)
    rgb = tmp_path / 'rgb.png'
    cv2.imwrite(str(rgb), np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ValueError, match='rgb.png must be a single-channel'):
        read_depth_png(str(rgb))
    junk = tmp_path / 'junk.png'
    junk.write_bytes(b'not a png')
    with pytest.raises(IOError, match='junk.png is not a readable PNG'):
        read_depth_png(str(junk))
    with pytest.raises(FileNotFoundError, match='none.png'):
        read_depth_png(str(tmp_path / 'none.png'))
