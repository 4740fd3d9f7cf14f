# Copyright (c) MonoASD contributors. All rights reserved.
"""The MonoASD workflow end to end, one resumable stage after another.

Stages (each skips what is already done; ``--stages`` picks a subset)::

    data     synthetic mini-KITTI (skipped when --data-root holds KITTI)
    depth    dense depth maps from velodyne (tools/dense_depth.py)
    infos    mmdet3d v2 info files (tools/create_data.py kitti)
    teacher  train the depth teacher
    student  train the RGB baseline student
    monoasd  distil the teacher into a student (AlignSelectDistiller)
    export   write the distilled student as a plain student checkpoint
    eval     KittiMetric of all three + inference time
    report   results/results.{md,json}, configs and pictures

Examples::

    python tools/run_main.py                        # synthetic mini-KITTI
    python tools/run_main.py --data-root data/kitti --profile kitti
"""
import argparse
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
STAGES = ('data', 'depth', 'infos', 'teacher', 'student', 'monoasd',
          'export', 'eval', 'report')
PROFILES = {
    'tiny': dict(
        teacher='configs/monoasd/did-m3d_dla34_tiny_mini-kitti-car_teacher.py',
        student='configs/monoasd/did-m3d_dla34_tiny_mini-kitti-car_student.py',
        monoasd='configs/monoasd/monoasd_dla34_tiny_mini-kitti-car.py'),
    'kitti': dict(
        teacher='configs/monoasd/'
        'did-m3d_dla34_1xb16-150e_kitti-mono3d-car_teacher.py',
        student='configs/monoasd/'
        'did-m3d_dla34_1xb16-150e_kitti-mono3d-car_student.py',
        monoasd='configs/monoasd/'
        'monoasd_dla34_1xb16-150e_kitti-mono3d-car.py'),
}
AP_KEY = 'Kitti metric/pred_instances_3d/KITTI/Car_{}_AP40_{}_{}'
AP2D_KEY = 'Kitti metric/pred_instances/KITTI/Car_2D_AP40_{}_strict'


def log(msg: str) -> None:
    print(f'[run_main {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def run(cmd: list) -> None:
    """Run a command from the repo root; stop the workflow if it fails."""
    log(' '.join(cmd))
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    proc = subprocess.run(cmd, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f'command failed ({proc.returncode}): '
                         f'{" ".join(cmd)}')


def data_overrides(args) -> list:
    root = args.data_root.rstrip('/') + '/'
    keys = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        keys.append(f'{loader}.dataset.data_root={root}')
    for ev in ('val_evaluator', 'test_evaluator'):
        keys.append(f'{ev}.ann_file={root}kitti_infos_val.pkl')
    if args.epochs:
        keys.append(f'train_cfg.max_epochs={args.epochs}')
    return keys


def final_checkpoint(work_dir: str) -> str:
    """``work_dir/last_checkpoint`` target when training finished."""
    done = osp.join(work_dir, 'train_done.json')
    if not osp.isfile(done):
        return ''
    with open(done) as f:
        return json.load(f)['checkpoint']


def train(name: str, args, extra=()) -> str:
    work_dir = osp.join(args.work_dir, name)
    ckpt = final_checkpoint(work_dir)
    if ckpt and osp.isfile(ckpt):
        log(f'{name}: already trained ({ckpt})')
        return ckpt
    cmd = [sys.executable, 'tools/train.py', PROFILES[args.profile][name],
           '--work-dir', work_dir]
    if glob.glob(osp.join(work_dir, 'epoch_*.pth')):
        cmd.append('--resume')
    cmd += ['--cfg-options'] + data_overrides(args) + list(extra)
    run(cmd)
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    with open(osp.join(work_dir, 'train_done.json'), 'w') as f:
        json.dump(dict(checkpoint=ckpt), f)
    return ckpt


def stage_data(args) -> None:
    if osp.isfile(osp.join(args.data_root, 'ImageSets', 'train.txt')):
        log(f'data: {args.data_root} exists')
        return
    if args.profile != 'tiny':
        raise SystemExit(f'{args.data_root} has no ImageSets/train.txt: '
                         'download KITTI there (README, "Reproducing on '
                         'KITTI")')
    run([sys.executable, 'tools/create_synthetic_kitti.py', '--out',
         args.data_root, '--num-train', str(args.num_train), '--num-val',
         str(args.num_val), '--num-test', str(args.num_test), '--seed',
         str(args.seed), '--no-dense-depth'])


def stage_depth(args) -> None:
    run([sys.executable, 'tools/dense_depth.py', '--root',
         osp.join(args.data_root, 'training')])


def stage_infos(args) -> None:
    if osp.isfile(osp.join(args.data_root, 'kitti_infos_test.pkl')):
        log('infos: exist')
        return
    run([sys.executable, 'tools/create_data.py', 'kitti', '--root-path',
         args.data_root])


def stage_export(args) -> None:
    ckpt = final_checkpoint(osp.join(args.work_dir, 'monoasd'))
    out = osp.join(args.work_dir, 'monoasd', 'student_only.pth')
    if osp.isfile(out):
        log(f'export: {out} exists')
        return
    run([sys.executable, 'tools/export_student.py', ckpt, out])


def stage_eval(args) -> None:
    for name in ('teacher', 'student', 'monoasd'):
        work_dir = osp.join(args.work_dir, name)
        out = osp.join(work_dir, 'test_metrics.json')
        if osp.isfile(out):
            log(f'eval {name}: done')
            continue
        if name == 'monoasd':
            cfg = PROFILES[args.profile]['student']
            ckpt = osp.join(work_dir, 'student_only.pth')
        else:
            cfg = PROFILES[args.profile][name]
            ckpt = final_checkpoint(work_dir)
        run([sys.executable, 'tools/test.py', cfg, ckpt, '--work-dir',
             osp.join(work_dir, 'test'), '--out-json', out,
             '--benchmark-images', str(args.benchmark_images),
             '--cfg-options'] + data_overrides(args))


def train_seconds_per_iter(work_dir: str) -> float:
    """Median 'time' of the training iterations logged in scalars.json."""
    times = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data',
                                   'scalars.json')):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if 'loss' in rec and 'time' in rec:
                    times.append(rec['time'])
    times.sort()
    return times[len(times) // 2] if times else float('nan')


def stage_report(args) -> None:
    from monoasd_report import write_report  # noqa: E402 (tools/)
    rows = {}
    for name in ('teacher', 'student', 'monoasd'):
        work_dir = osp.join(args.work_dir, name)
        with open(osp.join(work_dir, 'test_metrics.json')) as f:
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
        rows[name] = row
    os.makedirs(args.results, exist_ok=True)
    for name in ('teacher', 'student', 'monoasd'):
        src = PROFILES[args.profile][name]
        shutil.copy(osp.join(ROOT, src),
                    osp.join(args.results, osp.basename(src)))
    prof = PROFILES[args.profile]
    args.picture_models = {
        'teacher': (prof['teacher'],
                    final_checkpoint(osp.join(args.work_dir, 'teacher'))),
        'student': (prof['student'],
                    final_checkpoint(osp.join(args.work_dir, 'student'))),
        'monoasd': (prof['student'],
                    osp.join(args.work_dir, 'monoasd', 'student_only.pth')),
    }
    write_report(rows, args)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data-root', default='data/mini_kitti')
    p.add_argument('--work-dir', default='work_dirs/mini_kitti')
    p.add_argument('--results', default='results')
    p.add_argument('--profile', choices=sorted(PROFILES), default='tiny')
    p.add_argument('--stages', default=','.join(STAGES),
                   help=f'comma-separated subset of {",".join(STAGES)}')
    p.add_argument('--num-train', type=int, default=48)
    p.add_argument('--num-val', type=int, default=24)
    p.add_argument('--num-test', type=int, default=8)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--epochs', type=int, default=None,
                   help='override max_epochs of every training stage')
    p.add_argument('--num-pictures', type=int, default=4,
                   help='val frames drawn for every model')
    p.add_argument('--benchmark-images', type=int, default=20,
                   help='images timed for inference ms/image')
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    stages = [s.strip() for s in args.stages.split(',') if s.strip()]
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise SystemExit(f'unknown stages {sorted(unknown)}; choose from '
                         f'{STAGES}')
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    start = time.time()
    for stage in STAGES:
        if stage not in stages:
            continue
        t0 = time.time()
        if stage in ('teacher', 'student'):
            train(stage, args)
        elif stage == 'monoasd':
            teacher = final_checkpoint(osp.join(args.work_dir, 'teacher'))
            if not teacher:
                raise SystemExit('monoasd needs a trained teacher: run the '
                                 'teacher stage first')
            train('monoasd', args, [f'model.teacher_ckpt={teacher}'])
        else:
            globals()[f'stage_{stage}'](args)
        log(f'stage {stage} took {time.time() - t0:.0f} s')
    log(f'done in {time.time() - start:.0f} s')


if __name__ == '__main__':
    main()
