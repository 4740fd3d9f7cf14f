"""Pictures on mmdet3d's Det3DLocalVisualizer and KITTI result lines."""
import numpy as np
import torch
from mmdet3d.structures import CameraInstance3DBoxes, points_cam2img

from monoasd.visualization import (draw_boxes_on_image, kitti_lines,
                                   side_by_side)
from monoasd.visualization.drawing import CLASS_COLORS, GT_COLOR, draw_bev

P2 = np.array([[721.5, 0.0, 609.6, 44.9], [0.0, 721.5, 172.9, 0.2],
               [0.0, 0.0, 1.0, 0.003]])
H, W = 375, 1242


def _boxes(rows):
    return CameraInstance3DBoxes(torch.tensor(rows, dtype=torch.float32))


def test_projected_box_is_drawn_at_its_corners_in_its_class_colour():
    box = _boxes([[2.0, 1.6, 20.0, 3.9, 1.5, 1.6, 0.3]])
    out = draw_boxes_on_image(np.zeros((H, W, 3), np.uint8), box, P2,
                              labels=['Car'])
    assert out.shape == (H, W, 3)
    uv = points_cam2img(box.corners[0],
                        torch.tensor(P2, dtype=torch.float32)).numpy()
    hit = 0
    for u, v in uv:
        patch = out[int(v) - 2:int(v) + 3, int(u) - 2:int(u) + 3]
        hit += bool((np.abs(patch.astype(int) - CLASS_COLORS['Car']).sum(
            -1) < 60).any())
    assert hit == 8
    # nothing is drawn far from the box
    x0, x1 = uv[:, 0].min() - 5, uv[:, 0].max() + 5
    mask = np.ones((H, W), bool)
    mask[:, int(x0):int(x1) + 1] = False
    assert not out[mask].any()


def test_box_behind_the_camera_is_not_drawn():
    behind = _boxes([[0.0, 1.6, -5.0, 3.9, 1.5, 1.6, 0.0]])
    out = draw_boxes_on_image(np.zeros((H, W, 3), np.uint8), behind, P2)
    assert not out.any()
    empty = draw_boxes_on_image(np.full((H, W, 3), 7, np.uint8),
                                _boxes(np.zeros((0, 7))), P2)
    assert (empty == 7).all()


def test_box_past_the_image_edge_does_not_shrink_the_picture():
    # a car close by on the left projects partly left of the image; the
    # picture must keep its scale (the view used to widen to the box and
    # shrink the image, with a white margin), and the box is drawn where
    # its corners fall inside the image
    box = _boxes([[-6.0, 1.6, 8.0, 3.9, 1.5, 1.6, 0.3]])
    uv = points_cam2img(box.corners[0],
                        torch.tensor(P2, dtype=torch.float32)).numpy()
    assert uv[:, 0].min() < -50 and 0 < uv[:, 0].max() < W / 2
    img = np.full((H, W, 3), 40, np.uint8)
    img[:, W - 10:] = 200  # a bright strip at the right edge
    out = draw_boxes_on_image(img, box, P2, labels=['Car'])
    assert out.shape == (H, W, 3)
    right = slice(int(uv[:, 0].max()) + 5, W)
    np.testing.assert_array_equal(out[:, right], img[:, right])
    car = (np.abs(out.astype(int) - CLASS_COLORS['Car']).sum(-1) < 60)
    assert car[:, :int(uv[:, 0].max()) + 5].sum() > 200


def test_bev_places_boxes_by_x_and_depth():
    gt = _boxes([[10.0, 1.6, 40.0, 4.0, 1.5, 1.6, 0.0]])
    pred = _boxes([[-10.0, 1.6, 15.0, 4.0, 1.5, 1.6, 0.0]])
    img = draw_bev(gt, pred, ['Car'], size=600, max_depth=60.0)
    assert img.shape == (600, 600, 3)
    white = (img == GT_COLOR).all(-1)
    car = (np.abs(img.astype(int) - CLASS_COLORS['Car']).sum(-1) < 60)
    ys, xs = np.nonzero(white)
    # 10 px per metre, camera at the bottom centre, depth upwards
    assert abs(xs.mean() - (300 + 100)) < 8 and abs(ys.mean() - 200) < 8
    ys, xs = np.nonzero(car)
    assert abs(xs.mean() - (300 - 100)) < 8 and abs(ys.mean() - 450) < 8


def test_side_by_side_writes_one_row_per_model(tmp_path):
    img = np.zeros((H, W, 3), np.uint8)
    gt = _boxes([[2.0, 1.6, 20.0, 3.9, 1.5, 1.6, 0.3]])
    rows = [dict(name=n, boxes_3d=gt, labels=['Car'], scores=[0.9])
            for n in ('a', 'b')]
    png = tmp_path / 'x.png'
    side_by_side(img, P2, gt, rows, str(png), title='t')
    import cv2
    pic = cv2.imread(str(png))
    assert pic is not None and pic.shape[0] > 2 * 150


def test_kitti_lines_by_hand():
    box = _boxes([[2.0, 1.6, 20.0, 3.9, 1.5, 1.6, 0.3]])
    (line, ) = kitti_lines(box, np.array([[10, 20, 30, 40.5]]), [0.5],
                           ['Car'])
    alpha = 0.3 - np.arctan2(2.0, 20.0)
    assert line == (f'Car 0.00 0 {alpha:.2f} 10.00 20.00 30.00 40.50 1.50 '
                    '1.60 3.90 2.00 1.60 20.00 0.30 0.5000')
