# Copyright (c) MonoASD contributors. All rights reserved.
"""Results table and training curves of a :mod:`run_main` run."""
import glob
import json
import os
import os.path as osp
from typing import Dict

import matplotlib

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
    """Car AP|R40 (IoU 0.7) and timing per model as a markdown table."""
    head = ('| Model | AP3D E/M/H | APBEV E/M/H | AP2D E/M/H | train s/iter '
            '| infer ms/img |\n|---|---|---|---|---|---|\n')
    lines = []
    for name, row in rows.items():
        cells = [NAMES.get(name, name)]
        for kind in ('3D', 'BEV', '2D'):
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
    table = markdown_table(rows)
    with open(osp.join(out, 'results.json'), 'w') as f:
        json.dump(dict(rows=rows, data_root=args.data_root,
                       profile=args.profile), f, indent=1)
    with open(osp.join(out, 'results.md'), 'w') as f:
        f.write(f'# MonoASD results ({args.profile}, {args.data_root})\n\n')
        f.write('KITTI-style Car AP|R40 at IoU 0.7 on the val split '
                '(KittiMetric).\n\n')
        f.write(table)
        f.write('\n')
        for png in pictures + sorted(
                p for p in os.listdir(out) if p.startswith('pred_')):
            f.write(f'![{png}]({png})\n')
    print(table)
