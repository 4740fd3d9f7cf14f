# Copyright (c) MonoASD contributors. All rights reserved.
"""Results table and training curves of a :mod:`run_main` run."""
import glob
import json
import os
import os.path as osp
from typing import Dict, List, Sequence

import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

NAMES = {
    'teacher': 'Depth teacher (DID-M3D on dense depth)',
    'student': 'RGB baseline (DID-M3D student)',
    'monoasd': 'MonoASD distilled student',
}


def _fmt(value, digits=2) -> str:
    if value is None or value != value:  # None or NaN
        return '-'
    return f'{value:.{digits}f}'


def markdown_table(rows: Dict[str, dict]) -> str:
    """Car AP|R40 and timing per model as a markdown table."""
    kinds = ('3D', 'BEV', '3D@0.5', 'BEV@0.5', '2D')
    head = ('| Model | AP3D E/M/H | APBEV E/M/H | AP3D@0.5 E/M/H | '
            'APBEV@0.5 E/M/H | AP2D E/M/H | train s/iter | infer ms/img |'
            '\n|---|---|---|---|---|---|---|---|\n')
    lines = []
    for name, row in rows.items():
        cells = [NAMES.get(name, name)]
        for kind in kinds:
            cells.append(' / '.join(
                _fmt(row.get(f'{kind}_{d}'))
                for d in ('easy', 'moderate', 'hard')))
        cells.append(_fmt(row.get('train_s_per_iter'), 3))
        cells.append(_fmt(row.get('infer_ms_per_image'), 1))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return head + '\n'.join(lines) + '\n'


def read_scalars(work_dir: str) -> list:
    """Training records (dicts with 'loss') of the newest run in work_dir."""
    paths = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                      'scalars.json')))
    records = []
    for path in paths:
        with open(path) as f:
            records += [r for r in map(json.loads, f) if 'loss' in r]
    return records


def plot_curves(work_dir: str, out_png: str, title: str) -> bool:
    """Loss terms, distillation terms and learning rate against iteration.
    """
    recs = read_scalars(work_dir)
    if not recs:
        return False
    keys = sorted({k for r in recs for k in r
                   if 'loss' in k and k != 'loss'})
    det = [k for k in keys if not k.startswith('distill.')]
    kd = [k for k in keys if k.startswith('distill.')]
    ncols = 3 if kd else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5 * ncols, 3.6))
    for ax, group, name in zip(axes, [det, kd] if kd else [det],
                               ['detector losses', 'distillation losses']):
        for k in group:
            xs = [r['iter'] for r in recs if k in r]
            ax.plot(xs, [r[k] for r in recs if k in r], label=k, lw=1)
        ax.set_yscale('symlog', linthresh=1e-2)
        ax.set_xlabel('iteration')
        ax.set_title(name)
        ax.legend(fontsize=6)
    ax = axes[-1]
    ax.plot([r['iter'] for r in recs], [r['lr'] for r in recs])
    ax.set_xlabel('iteration')
    ax.set_title('learning rate')
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return True


def write_report(rows: Dict[str, dict], args) -> None:
    """Write results.md/results.json and the curves into ``args.results``.
    """
    out = args.results
    os.makedirs(out, exist_ok=True)
    pictures = []
    for name in rows:
        png = osp.join(out, f'curves_{name}.png')
        if plot_curves(osp.join(args.work_dir, name), png, NAMES[name]):
            pictures.append(osp.basename(png))
    models = {n: m for n, m in getattr(args, 'picture_models', {}).items()}
    if models:
        write_pictures(models, args.data_root, out,
                       getattr(args, 'num_pictures', 4))
    table = markdown_table(rows)
    with open(osp.join(out, 'results.json'), 'w') as f:
        json.dump(dict(rows=rows, data_root=args.data_root,
                       profile=args.profile), f, indent=1)
    with open(osp.join(out, 'results.md'), 'w') as f:
        f.write(f'# MonoASD results ({args.profile}, {args.data_root})\n\n')
        f.write('Car AP|R40 on the val split from mmdet3d\'s KittiMetric: '
                'AP3D/APBEV at IoU 0.7 (strict) and 0.5, AP2D of the 2D '
                'head at IoU 0.7; training seconds per iteration (median); '
                'inference ms per image at batch 1.\n\n')
        f.write(table)
        f.write('\n')
        for png in pictures + sorted(
                p for p in os.listdir(out) if p.startswith('pred_')):
            f.write(f'![{png}]({png})\n')
    print(table)


def predict_frames(config: str, checkpoint: str, data_root: str,
                   indices: Sequence[int]) -> List[dict]:
    """Run a config + checkpoint on val frames; predictions and GT."""
    import torch
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint
    from mmdet3d.registry import DATASETS, MODELS

    init_default_scope('mmdet3d')
    cfg = Config.fromfile(config)
    ds_cfg = cfg.test_dataloader.dataset
    ds_cfg.data_root = data_root.rstrip('/') + '/'
    dataset = DATASETS.build(ds_cfg)
    classes = dataset.metainfo['classes']
    model = MODELS.build(cfg.model)
    load_checkpoint(model, checkpoint, map_location='cpu')
    model.eval()
    out = []
    for idx in indices:
        sample = dataset[idx]
        with torch.no_grad():
            pred = model.test_step(pseudo_collate([sample]))[0]
        meta = pred.metainfo
        gt = sample['data_samples'].eval_ann_info or {}
        gt_boxes = gt.get('gt_bboxes_3d')
        p3d = pred.pred_instances_3d
        out.append(
            dict(
                img_path=meta['img_path'],
                cam2img=np.asarray(meta['ori_cam2img']),
                gt_corners=gt_boxes.corners.numpy()
                if gt_boxes is not None else np.zeros((0, 8, 3)),
                corners=p3d.bboxes_3d.corners.numpy(),
                labels=[classes[int(i)] for i in p3d.labels_3d],
                scores=p3d.scores_3d.numpy()))
    return out


def write_pictures(models: Dict[str, tuple], data_root: str, out_dir: str,
                   num_frames: int = 4) -> List[str]:
    """Side-by-side pictures for the first ``num_frames`` val frames.

    Args:
        models (dict): name -> (config, checkpoint), in display order.
    """
    import cv2
    from monoasd_vis import side_by_side
    preds = {
        name: predict_frames(cfg, ckpt, data_root, range(num_frames))
        for name, (cfg, ckpt) in models.items()
    }
    written = []
    for i in range(num_frames):
        first = next(iter(preds.values()))[i]
        img = cv2.imread(first['img_path'])
        keys = ('corners', 'labels', 'scores')
        rows = [dict(name=NAMES.get(n, n), **{k: preds[n][i][k]
                                              for k in keys})
                for n in models]
        png = osp.join(out_dir, f'pred_{osp.basename(first["img_path"])}')
        side_by_side(img, first['cam2img'], first['gt_corners'], rows, png,
                     title=osp.basename(first['img_path']))
        written.append(png)
    return written
