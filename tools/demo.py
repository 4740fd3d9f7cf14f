# Copyright (c) MonoASD contributors. All rights reserved.
"""Monocular 3D detection on one image.

``python tools/demo.py IMAGE CALIB CONFIG CHECKPOINT --out-dir DIR`` writes
``DIR/<name>.png`` (projected 3D boxes) and ``DIR/<name>.txt`` (KITTI result
format). Works with the RGB student and with an exported MonoASD student
(``tools/export_student.py``); CALIB is a KITTI calib file (P2 is used).
"""
import argparse
import os
import os.path as osp

import cv2
import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

from monoasd.datasets.kitti_io import read_calib
from monoasd.visualization import (draw_boxes_on_image, kitti_lines,
                                   write_kitti_txt)


def detect(model, pipeline, img_path: str, p2: np.ndarray):
    """Run the test pipeline and the model on one image."""
    cam2img = np.eye(4)
    cam2img[:3] = p2
    data = dict(
        img_path=img_path,
        images=dict(CAM2=dict(img_path=img_path, cam2img=cam2img.tolist())),
        box_type_3d=None)
    from mmdet3d.structures import get_box_type
    data['box_type_3d'], data['box_mode_3d'] = get_box_type('Camera')
    batch = pseudo_collate([pipeline(data)])
    with torch.no_grad():
        return model.test_step(batch)[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('image')
    parser.add_argument('calib')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out-dir', default='outputs/demo')
    parser.add_argument('--score-thr', type=float, default=0.0)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys (e.g. the head size the '
                        'checkpoint was trained with)')
    args = parser.parse_args(argv)

    init_default_scope('mmdet3d')
    from mmdet3d.registry import MODELS
    from monoasd.datasets import frame_name
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} not found')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if not osp.isfile(args.image):
        raise FileNotFoundError(f'image {args.image} not found')
    # bad inputs fail before the model is built
    p2 = read_calib(args.calib, required=('P2', ))['P2']
    model = MODELS.build(cfg.model)
    # strict: a checkpoint of another config must not run on random weights
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
    model.eval()
    pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    pred = detect(model, pipeline, args.image, p2)

    classes = cfg.test_dataloader.dataset.metainfo['classes']
    p3d, p2d = pred.pred_instances_3d, pred.pred_instances
    keep = (p3d.scores_3d >= args.score_thr).numpy()
    names = [classes[int(i)] for i in p3d.labels_3d[keep]]
    os.makedirs(args.out_dir, exist_ok=True)
    name = frame_name(args.image)
    lines = kitti_lines(p3d.bboxes_3d[torch.from_numpy(keep)],
                        p2d.bboxes.numpy()[keep], p3d.scores_3d.numpy()[keep],
                        names)
    write_kitti_txt(osp.join(args.out_dir, name + '.txt'), lines)
    img = cv2.imread(args.image)[..., ::-1]  # RGB
    drawn = draw_boxes_on_image(img, p3d.bboxes_3d[torch.from_numpy(keep)],
                                p2, labels=names)
    cv2.imwrite(osp.join(args.out_dir, name + '.png'), drawn[..., ::-1])
    print(f'{len(lines)} detections -> {args.out_dir}/{name}.png/.txt')


if __name__ == '__main__':
    main()
