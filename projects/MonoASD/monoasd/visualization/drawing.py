# Copyright (c) MonoASD contributors. All rights reserved.
"""Pictures of 3D detections (on mmdet3d's ``Det3DLocalVisualizer``) and
KITTI result lines.

Used by the main job's report (teacher, baseline, control and distilled
student side by side) and ``tools/demo.py``.
"""
import os
from typing import List, Optional, Sequence

import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from mmdet3d.structures import CameraInstance3DBoxes  # noqa: E402
from mmdet3d.visualization import Det3DLocalVisualizer  # noqa: E402

#: RGB colours per class name; ground truth is drawn in white.
CLASS_COLORS = {
    'Car': (255, 160, 0),
    'Pedestrian': (200, 80, 255),
    'Cyclist': (60, 220, 80),
}
GT_COLOR = (255, 255, 255)
OTHER_COLOR = (255, 0, 0)
#: Name of the shared visualizer instance (mmengine's ManagerMixin).
VISUALIZER_NAME = 'monoasd_drawing'


def _visualizer() -> Det3DLocalVisualizer:
    return Det3DLocalVisualizer.get_instance(VISUALIZER_NAME)


def _pin_view(vis: Det3DLocalVisualizer, width: int, height: int,
              y_down: bool = True) -> None:
    """Keep the visualizer's view on its image. Matplotlib autoscales the
    view to every drawn artist, so a projected box past the image edge (or
    mmdet3d's BEV camera marker) would widen it and ``get_image`` would
    return a shrunken picture with a white margin."""
    vis.ax_save.set_xlim(0, width)
    vis.ax_save.set_ylim(*((height, 0) if y_down else (0, height)))
    vis.ax_save.set_autoscale_on(False)


def _colors(labels: Optional[Sequence[str]], n: int, default) -> list:
    if labels is None:
        return [default] * n
    return [CLASS_COLORS.get(name, default) for name in labels]


def _cam4x4(cam2img) -> np.ndarray:
    """A 3x3, 3x4 or 4x4 camera matrix as the 4x4 mmdet3d projects with.
    """
    cam = np.asarray(cam2img, dtype=np.float64)
    out = np.eye(4)
    out[:cam.shape[0], :cam.shape[1]] = cam
    return out


def draw_boxes_on_image(img: np.ndarray,
                        boxes_3d: CameraInstance3DBoxes,
                        cam2img: np.ndarray,
                        color=OTHER_COLOR,
                        labels: Optional[Sequence[str]] = None,
                        line_width: float = 2) -> np.ndarray:
    """Projected 3D boxes on an RGB image (returns a new RGB image).

    Args:
        img (np.ndarray): (H, W, 3) RGB image.
        boxes_3d (CameraInstance3DBoxes): Boxes in the camera frame.
        cam2img (np.ndarray): 3x4 or 4x4 camera matrix (P2).
        color (tuple): RGB colour of boxes without a known class.
        labels (Sequence[str], optional): Class names: colours by class.
    """
    vis = _visualizer()
    vis.set_image(np.ascontiguousarray(img))
    _pin_view(vis, img.shape[1], img.shape[0])
    boxes, names = boxes_3d, labels
    if len(boxes_3d):  # only boxes entirely in front of the camera
        keep = (boxes_3d.corners[..., 2] > 0.1).all(dim=1)
        boxes = boxes_3d[keep]
        if labels is not None:
            names = [n for n, k in zip(labels, keep.tolist()) if k]
    if len(boxes):
        vis.draw_proj_bboxes_3d(
            boxes, dict(cam2img=_cam4x4(cam2img)),
            edge_colors=_colors(names, len(boxes), color),
            line_widths=line_width, alpha=0.35)  # translucent front face
    return vis.get_image()


def draw_bev(gt_boxes: CameraInstance3DBoxes,
             pred_boxes: CameraInstance3DBoxes,
             pred_labels: Optional[Sequence[str]] = None,
             size: int = 480,
             max_depth: float = 60.0) -> np.ndarray:
    """Bird's-eye view (x right, z up from the camera at the bottom centre)
    of ground truth (white) and predictions, as an RGB image."""
    vis = _visualizer()
    blank = np.zeros((size, size, 3), np.uint8)
    vis.set_image(blank)  # sizes the canvas
    vis.set_bev_image(blank)
    _pin_view(vis, size, size, y_down=False)
    scale = size / max_depth
    if len(gt_boxes):
        vis.draw_bev_bboxes(gt_boxes, scale=scale,
                            edge_colors=[GT_COLOR] * len(gt_boxes))
    if len(pred_boxes):
        vis.draw_bev_bboxes(
            pred_boxes, scale=scale,
            edge_colors=_colors(pred_labels, len(pred_boxes), OTHER_COLOR))
    return vis.get_image()


def side_by_side(img: np.ndarray, cam2img: np.ndarray,
                 gt_boxes: CameraInstance3DBoxes, results: List[dict],
                 out_png: str, title: str = '') -> None:
    """One row per model: image with GT (white) and predictions, and BEV.

    Args:
        img (np.ndarray): (H, W, 3) RGB image.
        results (list[dict]): ``name``, ``boxes_3d``
            (:class:`CameraInstance3DBoxes`), ``labels`` (class names) and
            ``scores`` of each model.
    """
    n = len(results)
    fig = plt.figure(figsize=(15, 2.9 * n))
    grid = fig.add_gridspec(n, 2, width_ratios=[4.2, 1])
    with_gt = draw_boxes_on_image(img, gt_boxes, cam2img, GT_COLOR)
    for row, res in enumerate(results):
        drawn = draw_boxes_on_image(with_gt, res['boxes_3d'], cam2img,
                                    labels=res['labels'])
        ax = fig.add_subplot(grid[row, 0])
        ax.imshow(drawn)
        ax.set_axis_off()
        ax.set_title(f'{res["name"]}: {len(res["boxes_3d"])} detections '
                     '(white = ground truth)', fontsize=9)
        ax = fig.add_subplot(grid[row, 1])
        ax.imshow(draw_bev(gt_boxes, res['boxes_3d'], res['labels']))
        ax.set_axis_off()
        ax.set_title('BEV, 60 m (white = GT)', fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)


def kitti_lines(boxes_3d, boxes_2d: np.ndarray, scores: np.ndarray,
                names: Sequence[str]) -> List[str]:
    """KITTI result lines for camera boxes (x, y, z, l, h, w, ry) of one
    image (``KittiMetric.format_results`` writes them for a whole info
    file; this is the single-image case of the demo)."""
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
    os.replace(tmp, path)
