# Copyright (c) MonoASD contributors. All rights reserved.
"""Results table and training curves of a main-job run
(:mod:`monoasd.apis.workflow`)."""
import glob
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from ..utils.machine import machine_info, machine_line  # noqa: E402

NAMES = {
    'teacher': 'Depth teacher (DID-M3D on dense depth)',
    'student': 'RGB baseline (DID-M3D student)',
    'control': 'Control (baseline trained further, no KD)',
    'monoasd': 'MonoASD distilled student (from the baseline)',
}
#: The four rows of the main table (seed 0).
MAIN_ROWS = ('teacher', 'student', 'control', 'monoasd')
AP_KEY = 'Kitti metric/pred_instances_3d/KITTI/Car_{}_AP40_{}_{}'
AP2D_KEY = 'Kitti metric/pred_instances/KITTI/Car_2D_AP40_{}_strict'
#: Columns of the seed, gain and ablation tables (moderate difficulty).
KEY_COLUMNS = ('3D_moderate', '3D@0.5_moderate', 'BEV@0.5_moderate',
               '2D_moderate', 'err_dz', 'err_iou')
#: Their headers: the APs, then the median |depth error| (m) and the median
#: 3D IoU of the boxes nearest to the moderate cars (MonoKittiMetric's
#: ``box_errors``; '-' for metrics written without them).
KEY_HEADERS = ('AP3D@0.7', 'AP3D@0.5', 'APBEV@0.5', 'AP2D',
               'median \\|dz\\| (m)', 'median IoU')
ERR_KEY = 'Kitti metric/pred_instances_3d/KITTI/Car_moderate_err_{}'


def display_name(name: str) -> str:
    """'monoasd_no_head_seed1' -> its table label."""
    base = name.split('_')[0]
    rest = name[len(base):].strip('_')
    label = NAMES.get(base, base)
    return f'{label} [{rest}]' if rest else label


def train_seconds_per_iter(work_dir: str) -> float:
    """Median 'time' of the training iterations logged in scalars.json."""
    times = sorted(r['time'] for r in read_scalars(work_dir) if 'time' in r)
    return times[len(times) // 2] if times else float('nan')


def metrics_row(work_dir: str, metrics_dir: Optional[str] = None) -> dict:
    """Car AP40 (E/M/H at IoU 0.7 and 0.5, 2D) and timings of one model.

    The metrics come from ``metrics_dir/test_metrics.json`` (``work_dir``
    by default), the training s/iter from ``work_dir``'s logs.
    """
    with open(osp.join(metrics_dir or work_dir, 'test_metrics.json')) as f:
        metrics = json.load(f)
    row = dict(train_s_per_iter=train_seconds_per_iter(work_dir),
               infer_ms_per_image=metrics.get('infer_ms_per_image'))
    for kind in ('3D', 'BEV'):
        for diff in ('easy', 'moderate', 'hard'):
            # strict: IoU 0.7; loose: IoU 0.5 (KittiMetric's names)
            for iou, mode in (('', 'strict'), ('@0.5', 'loose')):
                row[f'{kind}{iou}_{diff}'] = metrics.get(
                    AP_KEY.format(kind, diff, mode))
    for diff in ('easy', 'moderate', 'hard'):
        row[f'2D_{diff}'] = metrics.get(AP2D_KEY.format(diff))
    for err in ('dz', 'iou'):
        row[f'err_{err}'] = metrics.get(ERR_KEY.format(err))
    return row


def spread(values: Sequence[float]) -> dict:
    """Median, min, max, mean and sample standard deviation (``sd``,
    ``ddof=1``; None below two values) of a list of numbers (None
    skipped)."""
    v = sorted(x for x in values if x is not None)
    if not v:
        return dict(median=None, min=None, max=None, mean=None, sd=None,
                    n=0)
    return dict(median=float(np.median(v)), min=v[0], max=v[-1],
                mean=float(np.mean(v)),
                sd=float(np.std(v, ddof=1)) if len(v) > 1 else None,
                n=len(v))


def run_name(kind: str, seed: int, variant: str = '') -> str:
    """Work-dir name of one training run ('student', 'monoasd_seed1',
    'monoasd_no_head', ...)."""
    name = kind + (f'_{variant}' if variant else '')
    return name if seed == 0 else f'{name}_seed{seed}'


def eval_dir(args) -> str:
    """Where the eval stage writes each run's ``test_metrics.json`` and the
    report reads them: ``--eval-dir``, or the work dir."""
    return getattr(args, 'eval_dir', None) or args.work_dir


def read_seconds(path: str) -> dict:
    """The dict of a work dir's JSON record: name -> seconds of a wall-time
    file (``stage_seconds.json``, ``run_seconds.json``), or machine line ->
    stages of ``machines.json``; empty where there is none yet."""
    if not osp.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


#: Stages that make the data: their wall times and machine go with the
#: data root they wrote, not with a work dir (:func:`stage_dir`).
DATA_STAGES = ('data', 'depth', 'infos')


def stage_dir(args, stage: str) -> str:
    """Where ``stage``'s wall time and machine are recorded: the data
    stages' in ``args.data_root`` (another copy made with ``--data-root``
    leaves the profile's work dir alone), the eval stage's in
    :func:`eval_dir`, the trainings' and export's in the work dir."""
    if stage in DATA_STAGES:
        return args.data_root
    return eval_dir(args) if stage == 'eval' else args.work_dir


def record_dirs(args) -> list:
    """The directories :func:`stage_dir` records into, each once, data
    root first (so the data stages come first in the report)."""
    dirs = (getattr(args, 'data_root', None), args.work_dir, eval_dir(args))
    return list(dict.fromkeys(osp.normpath(d) for d in dirs if d))


def stage_seconds(args) -> dict:
    """Stage wall times of the data root, the work dir and
    :func:`eval_dir` (:func:`stage_dir`)."""
    times = {}
    for d in record_dirs(args):
        times.update(read_seconds(osp.join(d, 'stage_seconds.json')))
    return times


def record_machine(directory: str, stage: str) -> None:
    """Add ``stage`` to this machine's entry of ``directory/machines.json``
    (machine line -> stage names; see :mod:`monoasd.utils.machine`): a work
    dir whose stages ran on several machines says which ran where."""
    path = osp.join(directory, 'machines.json')
    machines = read_seconds(path)
    line = machine_line(machine_info())
    stages = machines.setdefault(line, [])
    if stage not in stages:
        stages.append(stage)
    os.makedirs(directory, exist_ok=True)
    with open(path, 'w') as f:
        json.dump(machines, f, indent=1)


def stage_machines(args) -> dict:
    """Machine line -> stages run on it, of the directories of
    :func:`record_dirs` (:func:`record_machine`)."""
    machines = {}
    for d in record_dirs(args):
        for line, stages in read_seconds(
                osp.join(d, 'machines.json')).items():
            merged = machines.setdefault(line, [])
            merged += [s for s in stages if s not in merged]
    return machines


def ablation_seed_list(args) -> list:
    """Training seeds of the ablation runs: 0..N-1 for
    ``--ablation-seeds N`` (1 by default: seed 0 only)."""
    return list(range(getattr(args, 'ablation_seeds', 1) or 1))


def over_seeds(rows: Dict[str, dict], kind: str,
               seeds: Sequence[int]) -> dict:
    """Column -> :func:`spread` of ``kind``'s runs over ``seeds``."""
    return {c: spread([rows[run_name(kind, s)].get(c) for s in seeds
                       if run_name(kind, s) in rows]) for c in KEY_COLUMNS}


def paired_over_seeds(rows: Dict[str, dict], a: str, b: str,
                      seeds: Sequence[int]) -> dict:
    """Column -> :func:`spread` of the per-seed differences ``a - b``
    (seeds where both ran)."""
    return {c: spread(per_seed_differences(rows, a, b, seeds, c))
            for c in KEY_COLUMNS}


def per_seed_differences(rows: Dict[str, dict], a: str, b: str,
                         seeds: Sequence[int], column: str) -> list:
    """``a - b`` of ``column`` for each of ``seeds``, in order (None where
    a run or its metric is missing)."""
    out = []
    for s in seeds:
        ra = rows.get(run_name(a, s)) or {}
        rb = rows.get(run_name(b, s)) or {}
        ok = ra.get(column) is not None and rb.get(column) is not None
        out.append(ra[column] - rb[column] if ok else None)
    return out


#: Columns listed seed by seed under the seed table, with their names.
PER_SEED_COLUMNS = (('3D@0.5_moderate', 'AP3D@0.5'),
                    ('BEV@0.5_moderate', 'APBEV@0.5'),
                    ('3D_moderate', 'AP3D@0.7'))


def summary(diffs: Sequence[float]) -> str:
    """' (mean +m, sd s, se e; k of n gain)' of per-seed differences (None
    skipped); sd and se from two seeds on, nothing without any."""
    st = spread(diffs)
    if st['mean'] is None:
        return ''
    parts = [f"mean {st['mean']:+.2f}"]
    if st['sd'] is not None:
        parts += [f"sd {st['sd']:.2f}",
                  f"se {st['sd'] / np.sqrt(st['n']):.2f}"]
    gain = sum(d > 0 for d in diffs if d is not None)
    return f" ({', '.join(parts)}; {gain} of {st['n']} gain)"


def per_seed_lines(rows: Dict[str, dict], seeds: Sequence[int]) -> tuple:
    """MonoASD - control seed by seed for :data:`PER_SEED_COLUMNS`, with
    the mean over the seeds that have both runs, their sample standard
    deviation, the standard error of the mean (sd / sqrt(n)) and how many
    seeds gain: markdown and a dict (column -> list of differences in
    ``seeds`` order)."""
    gains, lines = {}, []
    for column, label in PER_SEED_COLUMNS:
        diffs = per_seed_differences(rows, 'monoasd', 'control', seeds,
                                     column)
        gains[column] = diffs
        lines.append(f'- {label}: ' + ', '.join(
            '-' if d is None else f'{d:+.2f}' for d in diffs) +
            summary(diffs))
    head = ('MonoASD - control per seed (' +
            ', '.join(map(str, seeds)) + '), Car AP40 moderate:\n\n')
    return head + '\n'.join(lines) + '\n', gains


def finetune_opts(args) -> list:
    """``--finetune-options``: config options that every control and
    MonoASD training gets alike (after the workflow's own, so they win)."""
    return list(getattr(args, 'finetune_options', None) or [])


def distill_opts(args) -> list:
    """``--distill-options``: config options of the distillation itself
    (loss weights, ramp) that every MonoASD training gets and the control,
    which has no distillation, does not; an ablation's own option comes
    after them and wins."""
    return list(getattr(args, 'distill_options', None) or [])


def seeds_label(seeds: Sequence[int]) -> str:
    """'1 seed', '3 seeds'."""
    n = len(seeds)
    return f"{n} seed{'' if n == 1 else 's'}"


def spread_table(title: str, stats: Dict[str, dict], labels: dict) -> str:
    """Markdown table of median [min, max] per row of ``stats``."""
    lines = [f'| {title} | ' + ' | '.join(KEY_HEADERS) + ' |',
             '|' + '---|' * (len(KEY_HEADERS) + 1)]
    for key, st in stats.items():
        cells = [labels.get(key, key)]
        for c in KEY_COLUMNS:
            x = st[c]
            cells.append('-' if x['median'] is None else
                         f"{x['median']:.2f} [{x['min']:.2f}, "
                         f"{x['max']:.2f}]")
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def seed_table(rows: Dict[str, dict], seeds: Sequence[int]) -> tuple:
    """Per-row median [min, max] over seeds, and the per-seed gains."""
    stats = {kind: over_seeds(rows, kind, seeds)
             for kind in ('student', 'control', 'monoasd')}
    stats['MonoASD - control'] = paired_over_seeds(rows, 'monoasd',
                                                   'control', seeds)
    stats['MonoASD - baseline'] = paired_over_seeds(rows, 'monoasd',
                                                    'student', seeds)
    return spread_table(f'Model (Car AP40 moderate, {seeds_label(seeds)})',
                        stats, NAMES), stats


def split_seed(name: str) -> tuple:
    """'monoasd_no_head_seed1' -> ('monoasd_no_head', 1)."""
    base, sep, seed = name.rpartition('_seed')
    if sep and seed.isdigit():
        return base, int(seed)
    return name, 0


def ablation_table(rows: Dict[str, dict], seeds: Sequence[int]) -> tuple:
    """Each distillation variant's median [min, max] over ``seeds``, and
    its per-seed difference from the full distillation of the same seed.

    Variants are the runs named ``monoasd_<variant>[_seed<N>]``; the full
    distillation is ``monoasd[_seed<N>]``.
    """
    variants = ['monoasd'] + sorted(
        {split_seed(n)[0] for n in rows if n.startswith('monoasd_')} -
        {'monoasd'})
    stats, labels = {}, {}
    for v in variants:
        stats[v] = over_seeds(rows, v, seeds)
        labels[v] = display_name(v)
        if v != 'monoasd':
            key = f'{v} - all'
            stats[key] = paired_over_seeds(rows, v, 'monoasd', seeds)
            labels[key] = display_name(v) + ' - all terms'
    return spread_table(f'Run (Car AP40 moderate, {seeds_label(seeds)})',
                        stats, labels), stats


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
        cells = [display_name(name)]
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


#: Val metrics drawn against iteration (Car AP|R40 moderate).
CURVE_METRICS = {
    'AP3D@0.7': 'pred_instances_3d/KITTI/Car_3D_AP40_moderate_strict',
    'AP3D@0.5': 'pred_instances_3d/KITTI/Car_3D_AP40_moderate_loose',
    'AP2D': 'pred_instances/KITTI/Car_2D_AP40_moderate_strict',
}


def read_val_curve(work_dir: str) -> List[tuple]:
    """(iteration, {label: AP}) of every validation in work_dir's logs.

    Validation records carry the epoch as ``step``; it is mapped to the
    last training iteration logged in that epoch.
    """
    paths = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                      'scalars.json')))
    last_iter, points = {}, []
    for path in paths:
        with open(path) as f:
            for r in map(json.loads, f):
                if 'loss' in r and 'epoch' in r:
                    last_iter[r['epoch']] = r['iter']
                key = 'Kitti metric/' + CURVE_METRICS['AP2D']
                if key in r and r.get('step') in last_iter:
                    points.append((last_iter[r['step']], {
                        k: r.get('Kitti metric/' + v)
                        for k, v in CURVE_METRICS.items()
                    }))
    return points


def plot_curves(work_dir: str, out_png: str, title: str) -> bool:
    """Loss terms, distillation terms, the learning rate and the val AP
    (Car moderate, :data:`CURVE_METRICS`) against iteration."""
    recs = read_scalars(work_dir)
    if not recs:
        return False
    keys = sorted({k for r in recs for k in r
                   if 'loss' in k and k != 'loss'})
    det = [k for k in keys if not k.startswith('distill.')]
    kd = [k for k in keys if k.startswith('distill.')]
    val = read_val_curve(work_dir)
    ncols = (3 if kd else 2) + bool(val)
    fig, axes = plt.subplots(1, ncols, figsize=(5 * ncols, 3.6))
    if val:
        ax, axes = axes[-1], axes[:-1]
        for label in CURVE_METRICS:
            pts = [(i, m[label]) for i, m in val if m[label] is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], 'o-',
                    label=label)
        ax.set_xlabel('iteration')
        ax.set_title('val AP|R40, Car moderate')
        ax.legend(fontsize=7)
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


def write_report(names: Sequence[str], args,
                 picture_models: Optional[Dict[str, tuple]] = None) -> dict:
    """Write results.md/results.json, curves and pictures into
    ``args.results``; returns the results dict.

    Args:
        names (Sequence[str]): Evaluated runs (work-dir names under
            ``args.work_dir``, each with ``test_metrics.json`` under
            :func:`eval_dir`).
        args: :mod:`monoasd.apis.workflow` options (``work_dir``, ``results``,
            ``profile``, ``data_root``, ``seed_list``, ``ablation``, and
            optionally ``eval_dir`` and ``num_pictures``).
        picture_models (dict, optional): Label -> (config, checkpoint) of
            the models drawn on val frames; None draws nothing.
    """
    out = args.results
    os.makedirs(out, exist_ok=True)
    rows = {n: metrics_row(osp.join(args.work_dir, n),
                           osp.join(eval_dir(args), n)) for n in names}
    main = {n: rows[n] for n in MAIN_ROWS if n in rows}
    pictures = []
    for name in main:
        png = osp.join(out, f'curves_{name}.png')
        if plot_curves(osp.join(args.work_dir, name), png, NAMES[name]):
            pictures.append(osp.basename(png))
    models = dict(picture_models or {})
    if models:
        # the pictures of an earlier report (other frames) would be listed
        for stale in glob.glob(osp.join(out, 'pred_*.png')):
            os.remove(stale)
        pictures += [osp.basename(p) for p in write_pictures(
            models, args.data_root, out, getattr(args, 'num_pictures', 4))]
    seeds = list(getattr(args, 'seed_list', [0]))
    seeds_md, seed_stats = seed_table(rows, seeds)
    per_seed_md, per_seed = per_seed_lines(rows, seeds)
    ablation = {n: r for n, r in rows.items()
                if n.startswith('monoasd') and 'seed' not in n}
    ablation_seeds = ablation_seed_list(args)
    ablation_md, ablation_stats = ablation_table(rows, ablation_seeds)
    times = stage_seconds(args)
    machines = stage_machines(args)
    finetune, distill = finetune_opts(args), distill_opts(args)
    result = dict(rows=rows, seeds=seeds, seed_stats=seed_stats,
                  per_seed_gains=per_seed,
                  ablation_seeds=ablation_seeds,
                  ablation_stats=ablation_stats if len(ablation) > 1 else {},
                  stage_seconds=times, data_root=args.data_root,
                  profile=args.profile, finetune_options=finetune,
                  distill_options=distill,
                  machines=machines)
    with open(osp.join(out, 'results.json'), 'w') as f:
        json.dump(result, f, indent=1)
    table = markdown_table(main)
    with open(osp.join(out, 'results.md'), 'w') as f:
        f.write(f'# MonoASD results ({args.profile}, {args.data_root})\n\n')
        f.write('Car AP|R40 on the val split from mmdet3d\'s KittiMetric: '
                'AP3D/APBEV at IoU 0.7 (strict) and 0.5, AP2D of the 2D '
                'head at IoU 0.7; training seconds per iteration (median); '
                'inference ms per image at batch 1. Seed 0.\n\n')
        f.write(table + '\n')
        if finetune:
            f.write('Control and MonoASD trained with --finetune-options ' +
                    ' '.join(f'`{o}`' for o in finetune) + '.\n\n')
        if distill:
            f.write('MonoASD trained with --distill-options ' +
                    ' '.join(f'`{o}`' for o in distill) + ' (not the '
                    'control: it has no distillation terms).\n\n')
        f.write('Median [min, max] over training seeds ' +
                ', '.join(map(str, seeds)) + ' (the teacher is trained '
                'once). The gain that counts is MonoASD - control (equal '
                'total training).\n\n' + seeds_md + '\n')
        if len(seeds) > 1:
            f.write(per_seed_md + '\n')
        if len(ablation) > 1:
            f.write('Ablation (seed 0): one distillation term off at a '
                    'time.\n\n' + markdown_table(ablation) + '\n')
            if len(ablation_seeds) > 1:
                f.write('Ablation over training seeds ' +
                        ', '.join(map(str, ablation_seeds)) + ': median '
                        '[min, max] of each run, and of its difference '
                        'from the full distillation of the same seed.\n\n'
                        + ablation_md + '\n')
        if times:
            f.write('Wall time per stage (s): ' + ', '.join(
                f'{k} {v:.0f}' for k, v in times.items()) +
                f' (total {sum(times.values()):.0f}).\n\n')
        for line, stages in machines.items():
            f.write(f'Ran on {line}: {", ".join(stages)}.\n\n')
        for png in pictures:
            f.write(f'![{png}]({png})\n')
    print(table)
    print(seeds_md)
    return result


def val_dataset(config: str, data_root: str):
    """The test split of ``config`` read from ``data_root``."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet3d.registry import DATASETS

    init_default_scope('mmdet3d')
    cfg = Config.fromfile(config)
    ds_cfg = cfg.test_dataloader.dataset
    ds_cfg.data_root = data_root.rstrip('/') + '/'
    return cfg, DATASETS.build(ds_cfg)


def picture_frames(dataset, num: int) -> List[int]:
    """Indices of ``num`` frames to draw: the first frames holding a
    ground-truth box of the dataset's classes, then (if the split has
    fewer) the first of the others, so the pictures show ground truth
    wherever the split has it."""
    with_gt, without = [], []
    for idx in range(len(dataset)):
        ann = dataset.get_data_info(idx).get('eval_ann_info') or {}
        labels = np.asarray(ann.get('gt_labels_3d', []))
        (with_gt if (labels >= 0).any() else without).append(idx)
        if len(with_gt) == num:
            break
    return (with_gt + without)[:num]


def predict_frames(config: str, checkpoint: str, data_root: str,
                   indices: Sequence[int]) -> List[dict]:
    """Run a config + checkpoint on val frames; predictions and GT."""
    import torch
    from mmengine.dataset import pseudo_collate
    from mmengine.runner import load_checkpoint
    from mmdet3d.registry import MODELS
    from mmdet3d.structures import CameraInstance3DBoxes

    cfg, dataset = val_dataset(config, data_root)
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
                gt_boxes=gt_boxes if gt_boxes is not None else
                CameraInstance3DBoxes(torch.zeros(0, 7)),
                boxes_3d=p3d.bboxes_3d,
                labels=[classes[int(i)] for i in p3d.labels_3d],
                scores=p3d.scores_3d.numpy()))
    return out


def write_pictures(models: Dict[str, tuple], data_root: str, out_dir: str,
                   num_frames: int = 4) -> List[str]:
    """Side-by-side pictures of ``num_frames`` val frames (the first with
    ground truth, :func:`picture_frames`).

    Args:
        models (dict): name -> (config, checkpoint), in display order.
    """
    import cv2
    from ..visualization.drawing import side_by_side
    first_cfg = next(iter(models.values()))[0]
    frames = picture_frames(val_dataset(first_cfg, data_root)[1],
                            num_frames)
    preds = {
        name: predict_frames(cfg, ckpt, data_root, frames)
        for name, (cfg, ckpt) in models.items()
    }
    written = []
    for i in range(len(frames)):
        first = next(iter(preds.values()))[i]
        img = cv2.imread(first['img_path'])[..., ::-1]  # RGB
        keys = ('boxes_3d', 'labels', 'scores')
        rows = [dict(name=display_name(n), **{k: preds[n][i][k]
                                              for k in keys})
                for n in models]
        png = osp.join(out_dir, f'pred_{osp.basename(first["img_path"])}')
        side_by_side(img, first['cam2img'], first['gt_boxes'], rows, png,
                     title=osp.basename(first['img_path']))
        written.append(png)
    return written
