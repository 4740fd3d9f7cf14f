# Copyright (c) MonoASD contributors. All rights reserved.
"""Drawing of 3D boxes on images and in bird's-eye view, and KITTI txt.

Used by ``tools/run_main.py`` (pictures of teacher, student and distilled
student side by side) and ``tools/demo.py``.
"""
from typing import List, Optional, Sequence

import cv2
import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

#: BGR colours per class name; ground truth is drawn in white/grey.
CLASS_COLORS = {
    'Car': (0, 160, 255),
    'Pedestrian': (255, 80, 200),
    'Cyclist': (80, 220, 60),
}
GT_COLOR = (255, 255, 255)
#: Corner pairs of mmdet3d's box corner order forming the 12 edges.
EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
         (0, 4), (1, 5), (2, 6), (3, 7))


def project_corners(corners: np.ndarray, cam2img: np.ndarray) -> np.ndarray:
    """(N, 8, 3) camera-frame corners -> (N, 8, 3) pixels + depth."""
    p = np.asarray(cam2img, dtype=np.float64)[:3]
    homo = np.concatenate([corners, np.ones(corners.shape[:2] + (1, ))], -1)
    uvw = homo @ p.T
    uvw[..., :2] /= np.clip(uvw[..., 2:3], 1e-6, None)
    return uvw


def draw_boxes_on_image(img: np.ndarray,
                        corners: np.ndarray,
                        cam2img: np.ndarray,
                        color,
                        thickness: int = 2,
                        labels: Optional[Sequence[str]] = None
                        ) -> np.ndarray:
    """Draw projected 3D boxes (N, 8, 3) on a BGR image (copy)."""
    out = img.copy()
    uvw = project_corners(corners, cam2img)
    for i, box in enumerate(uvw):
        if (box[:, 2] <= 0.1).any():
            continue
        c = color if labels is None else CLASS_COLORS.get(labels[i], color)
        pts = box[:, :2].round().astype(int)
        for a, b in EDGES:
            cv2.line(out, tuple(pts[a]), tuple(pts[b]), c, thickness,
                     cv2.LINE_AA)
        # front face cross (corners 4..7 are the +x (heading) face)
        cv2.line(out, tuple(pts[4]), tuple(pts[6]), c, 1, cv2.LINE_AA)
        cv2.line(out, tuple(pts[5]), tuple(pts[7]), c, 1, cv2.LINE_AA)
    return out


def draw_bev(ax, gt_corners: np.ndarray, pred_corners: np.ndarray,
             pred_labels: Sequence[str], title: str,
             max_depth: float = 60.0) -> None:
    """Bird's-eye view (x right, z forward) of GT and predicted boxes."""
    for corners, style in ((gt_corners, dict(color='k', lw=1.6)), ):
        for box in corners:
            xz = box[[0, 1, 5, 4, 0]][:, [0, 2]]
            ax.plot(xz[:, 0], xz[:, 1], **style)
    for box, name in zip(pred_corners, pred_labels):
        bgr = CLASS_COLORS.get(name, (0, 0, 255))
        rgb = tuple(v / 255 for v in bgr[::-1])
        xz = box[[0, 1, 5, 4, 0]][:, [0, 2]]
        ax.plot(xz[:, 0], xz[:, 1], color=rgb, lw=1.2)
    ax.plot([0], [0], 'k^')
    ax.set_xlim(-max_depth / 2, max_depth / 2)
    ax.set_ylim(0, max_depth)
    ax.set_aspect('equal')
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=6)


def side_by_side(img: np.ndarray, cam2img: np.ndarray,
                 gt_corners: np.ndarray, results: List[dict],
                 out_png: str, title: str = '') -> None:
    """One row per model: image with GT (white) and predictions, and BEV.

    Args:
        results (list[dict]): ``name``, ``corners`` (N, 8, 3), ``labels``
            (list of class names), ``scores`` for each model.
    """
    n = len(results)
    fig = plt.figure(figsize=(15, 2.9 * n))
    grid = fig.add_gridspec(n, 2, width_ratios=[4.2, 1])
    for row, res in enumerate(results):
        drawn = draw_boxes_on_image(img, gt_corners, cam2img, GT_COLOR, 2)
        drawn = draw_boxes_on_image(drawn, res['corners'], cam2img,
                                    (0, 0, 255), 2, res['labels'])
        ax = fig.add_subplot(grid[row, 0])
        ax.imshow(drawn[..., ::-1])
        ax.set_axis_off()
        ax.set_title(f'{res["name"]}: {len(res["corners"])} detections '
                     '(white = ground truth)', fontsize=9)
        draw_bev(fig.add_subplot(grid[row, 1]), gt_corners, res['corners'],
                 res['labels'], 'BEV (black = GT)')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)


def kitti_lines(boxes_3d, boxes_2d: np.ndarray, scores: np.ndarray,
                names: Sequence[str]) -> List[str]:
    """KITTI result lines for camera boxes (x, y, z, l, h, w, ry)."""
    lines = []
    t = boxes_3d.tensor.numpy() if hasattr(boxes_3d, 'tensor') else \
        np.asarray(boxes_3d)
    for box, b2d, score, name in zip(t, boxes_2d, scores, names):
        x, y, z, length, h, w, ry = [float(v) for v in box[:7]]
        alpha = ry - np.arctan2(x, z)
        alpha = (alpha + np.pi) % (2 * np.pi) - np.pi
        lines.append(
            f'{name} 0.00 0 {alpha:.2f} {b2d[0]:.2f} {b2d[1]:.2f} '
            f'{b2d[2]:.2f} {b2d[3]:.2f} {h:.2f} {w:.2f} {length:.2f} '
            f'{x:.2f} {y:.2f} {z:.2f} {ry:.2f} {float(score):.4f}')
    return lines


def write_kitti_txt(path: str, lines: List[str]) -> None:
    """Write KITTI result lines (atomically)."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write('\n'.join(lines) + ('\n' if lines else ''))
    import os
    os.replace(tmp, path)
