# Copyright (c) MonoASD contributors. All rights reserved.
"""The main job's stages (``tools/run_main.py`` is their command line).

The reference protocol with a fair control (``docs/protocol.md``)::

    data     synthetic mini-KITTI (skipped when the data root holds KITTI)
    depth    dense depth maps from velodyne (tools/dense_depth.py)
    infos    mmdet3d v2 info files (tools/create_data.py kitti)
    teacher  train the depth teacher
    student  train the RGB baseline student                    (per seed)
    control  baseline checkpoint trained further, same schedule as
             MonoASD, no distillation                          (per seed)
    monoasd  distil the teacher into a student initialised from the
             baseline checkpoint (student_ckpt)                (per seed)
    export   write each distilled student as a plain student checkpoint
    eval     KittiMetric of every model + inference time
    report   results/results.{md,json}: table, gains, seeds, ablation,
             wall times, curves and pictures

Each stage is a function of the parsed options (``args``: ``root``,
``data_root``, ``work_dir``, ``eval_dir``, ``results``, ``profile``,
``seed_list``, ``ablation``, ``jobs``, ...) that runs the repository's tools as
subprocesses and skips what is already done, so an interrupted job
resumes. The trainings of ``teacher`` and ``student`` do not depend on each
other, nor do those of ``control`` and ``monoasd``: each pair runs as one
group of up to ``args.jobs`` trainings side by side, each with
``cpu_count // jobs`` threads (on a 2-core CPU two one-thread trainings
make about twice the progress of one two-thread training).
"""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ..synthetic.generator import SYNTHETIC_META, read_synthetic_meta
from .report import (ablation_seed_list, distill_opts, eval_dir,
                     finetune_opts, read_seconds, record_machine, run_name,
                     stage_dir, stage_seconds, write_report)

CFG_DIR = 'configs/monoasd/'
PROFILES = {
    'tiny': dict(
        teacher=CFG_DIR + 'did-m3d_dla34_tiny_mini-kitti-car_teacher.py',
        student=CFG_DIR + 'did-m3d_dla34_tiny_mini-kitti-car_student.py',
        control=CFG_DIR + 'did-m3d_dla34_tiny_mini-kitti-car_control.py',
        monoasd=CFG_DIR + 'monoasd_dla34_tiny_mini-kitti-car.py'),
    # half-width DLA-34, each epoch three passes over the train set:
    # three times the tiny profile's iterations in about its wall time
    # (docs/profile_search.md, "Ninth round")
    'tiny-half': dict(
        teacher=CFG_DIR + 'did-m3d_dla34-half_tiny_mini-kitti-car_teacher.py',
        student=CFG_DIR + 'did-m3d_dla34-half_tiny_mini-kitti-car_student.py',
        control=CFG_DIR + 'did-m3d_dla34-half_tiny_mini-kitti-car_control.py',
        monoasd=CFG_DIR + 'monoasd_dla34-half_tiny_mini-kitti-car.py'),
    'kitti': dict(
        teacher=CFG_DIR +
        'did-m3d_dla34_1xb16-150e_kitti-mono3d-car_teacher.py',
        student=CFG_DIR +
        'did-m3d_dla34_1xb16-150e_kitti-mono3d-car_student.py',
        control=CFG_DIR +
        'did-m3d_dla34_1xb16-150e_kitti-mono3d-car_control.py',
        monoasd=CFG_DIR + 'monoasd_dla34_1xb16-150e_kitti-mono3d-car.py'),
}
#: The main job's profile: over three seeds its baselines reach 22.65 to
#: 26.46 AP3D@0.5, against 9.55 for the tiny profile's seed 0 on the same
#: machine in about the same time (docs/profile_search.md, "Tenth round").
DEFAULT_PROFILE = 'tiny-half'
#: Profiles trained on the synthetic mini-KITTI (the data stage generates
#: it; two trainings side by side on a CPU-only machine).
SYNTHETIC_PROFILES = ('tiny', 'tiny-half')
#: Default --work-dir and --results of a profile: tiny-half has its own,
#: kept from before it was the default, so that one profile's runs and
#: report never replace another's (``train_done.json`` also records each
#: run's config).
DEFAULT_DIRS = dict(work_dir='work_dirs/mini_kitti', results='results')
PROFILE_DIRS = {
    'tiny-half': dict(work_dir='work_dirs/mini_kitti_half',
                      results='results/tiny-half')
}
#: Synthetic split sizes of the tiny profile. 200 val frames hold 353
#: moderate cars (generator seed 0): one run's AP is a measurement, not a
#: sample of a split (24 frames gave 2.97 or 15.24 AP3D@0.5 to the same
#: config), and KITTI's AP|R40 can reach 100 (it cannot below 41 objects).
NUM_TRAIN, NUM_VAL = 384, 200
#: Yaw of the synthetic objects of the tiny profile: most cars and cyclists
#: along the road, as on KITTI (generator ``yaw='road'``).
YAW = 'road'
#: Distillation terms switched off one at a time by --ablation.
ABLATIONS = {
    'no_align_select': ['model.loss_align_select.loss_weight=0.0'],
    'no_affinity': ['model.loss_affinity.loss_weight=0.0'],
    'no_head': ['model.loss_head=None'],
}


def log(msg: str) -> None:
    print(f'[main job {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def run(args, cmd: list, threads: int = 0, log_file: str = '') -> None:
    """Run a command from the repo root; stop the workflow if it fails.

    Args:
        threads (int): If > 0, the command's OpenMP/MKL threads (torch's
            intra-op threads).
        log_file (str): If given, the command's output goes there instead
            of this process's stdout.
    """
    log(' '.join(cmd) + (f'  > {log_file}' if log_file else ''))
    env = dict(os.environ)
    env['PYTHONPATH'] = args.root + os.pathsep + env.get('PYTHONPATH', '')
    if threads > 0:
        env['OMP_NUM_THREADS'] = env['MKL_NUM_THREADS'] = str(threads)
    if log_file:
        os.makedirs(osp.dirname(log_file) or '.', exist_ok=True)
        with open(log_file, 'a') as out:
            proc = subprocess.run(cmd, cwd=args.root, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    else:
        proc = subprocess.run(cmd, cwd=args.root, env=env)
    if proc.returncode != 0:
        tail = ''
        if log_file:
            tail = f' (log: {log_file})'
            cause = failure_cause(log_file)
            if cause:
                tail += f'\n  {cause}'
        raise SystemExit(f'command failed ({proc.returncode}): '
                         f'{" ".join(cmd)}{tail}')


def failure_cause(log_file: str, tail_bytes: int = 65536) -> str:
    """The error a failed command's log ends with (the last line that
    names an exception, else the last line; '' for an empty log), and, when
    it is ``No space left on device``, the free space of the log's disk:
    trainings side by side write their tracebacks to their logs, so without
    this the workflow could only say that a command failed."""
    try:
        with open(log_file, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - tail_bytes))
            text = f.read().decode('utf-8', 'replace')
    except OSError:
        return ''
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ''
    errors = [ln for ln in lines
              if ln.split(':', 1)[0].endswith(('Error', 'Exception',
                                               'Interrupt', 'Exit'))]
    cause = errors[-1] if errors else lines[-1]
    if 'No space left on device' in cause:
        free = shutil.disk_usage(osp.dirname(osp.abspath(log_file))).free
        cause += (f' ({free / 2**20:.0f} MiB free there now: free space '
                  'and rerun; finished runs are kept, README '
                  '"Troubleshooting" gives the space each run needs)')
    return cause


def unwrap_dataset(ds: dict):
    """(depth, dataset) of the dataset config below mmengine's one-dataset
    wrappers (``RepeatDataset``, ``ClassBalancedDataset``: a ``dataset``
    inside the ``dataset``), as in mmdet3d's KITTI configs; depth 0 for a
    plain dataset."""
    depth = 0
    while isinstance(ds.get('dataset'), dict):
        depth, ds = depth + 1, ds['dataset']
    return depth, ds


def dataset_key(cfg, loader: str) -> str:
    """The ``--cfg-options`` key of ``loader``'s dataset, below its
    wrappers (:func:`unwrap_dataset`)."""
    depth, ds = unwrap_dataset(cfg.get(loader, {}).get('dataset', {}))
    key = f'{loader}.dataset' + '.dataset' * depth
    if 'datasets' in ds:
        raise SystemExit(
            f'--data-root cannot set the data root of {key} '
            f"({ds.get('type')} of several datasets): set their data_root "
            'in the config instead')
    return key


def data_overrides(args, config: str = '') -> list:
    """``--cfg-options`` that point ``config``'s loaders and evaluators at
    ``args.data_root`` (its wrapped train dataset too, see
    :func:`dataset_key`)."""
    root = args.data_root.rstrip('/') + '/'
    cfg = {}
    if config:
        from mmengine.config import Config
        cfg = Config.fromfile(osp.join(getattr(args, 'root', ''), config))
    keys = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        keys.append(f'{dataset_key(cfg, loader)}.data_root={root}')
    for ev in ('val_evaluator', 'test_evaluator'):
        keys.append(f'{ev}.ann_file={root}kitti_infos_val.pkl')
    return keys


def train_done(work_dir: str) -> dict:
    """``train_done.json`` of a finished training (its ``checkpoint`` and
    ``options``); empty if unfinished."""
    done = osp.join(work_dir, 'train_done.json')
    if not osp.isfile(done):
        return {}
    with open(done) as f:
        return json.load(f)


def final_checkpoint(work_dir: str) -> str:
    """The last checkpoint of a finished training ('' if unfinished)."""
    return train_done(work_dir).get('checkpoint', '')


def train(name: str, config: str, args, extra=(), threads: int = 0,
          log_file: str = '') -> str:
    """Train ``config`` into ``work_dir/name`` unless already done
    (``threads``, ``log_file``: see :func:`run`)."""
    work_dir = osp.join(args.work_dir, name)
    # the options that make the run (seed, checkpoints, ablation,
    # --finetune-options, --epochs); the data paths may be spelt otherwise
    run_opts = list(extra)
    if args.epochs:
        run_opts.append(f'train_cfg.max_epochs={args.epochs}')
    done = train_done(work_dir)
    ckpt = done.get('checkpoint', '')
    if ckpt and osp.isfile(ckpt):
        check_run_options(work_dir, done.get('options'), run_opts,
                          done.get('config'), config)
        log(f'{name}: already trained ({ckpt})')
        return ckpt
    cmd = [sys.executable, 'tools/train.py', config, '--work-dir', work_dir]
    if glob.glob(osp.join(work_dir, 'epoch_*.pth')) or glob.glob(
            osp.join(work_dir, 'iter_*.pth')):
        cmd.append('--resume')
    opts = data_overrides(args, config) + run_opts
    t0 = time.time()
    run(args, cmd + ['--cfg-options'] + opts, threads, log_file)
    record_run_seconds(args, name, time.time() - t0)
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    with open(osp.join(work_dir, 'train_done.json'), 'w') as f:
        json.dump(dict(checkpoint=ckpt, options=run_opts, config=config),
                  f)
    return ckpt


def check_run_options(work_dir: str, done, run_opts: list,
                      done_config: str = None, config: str = None) -> None:
    """Refuse to reuse a finished run trained with other options ``done``
    (another ``--finetune-options`` or ``--epochs`` in the same work dir
    would otherwise be reported as if it had made the run) or from another
    config ``done_config`` (another ``--profile``). Runs finished before
    ``train_done.json`` kept its options or config (None) are reused as
    they are."""
    if done_config is not None and config is not None and \
            osp.normpath(done_config) != osp.normpath(config):
        raise SystemExit(
            f'{work_dir} was trained from {done_config} (this run: '
            f'{config}, another --profile?). Delete it to train it again, '
            'or choose another --work-dir')
    if done is None or done == run_opts:
        return
    raise SystemExit(
        f'{work_dir} was trained with other options: '
        f'{" ".join(done) or "none"} (this run: '
        f'{" ".join(run_opts) or "none"}). Delete it to train it again, or '
        'choose another --work-dir')


_RUN_SECONDS_LOCK = threading.Lock()


def record_run_seconds(args, name: str, seconds: float) -> None:
    """Add one training's wall time to ``work_dir/run_seconds.json``
    (trainings side by side finish in any order: one writer at a time)."""
    path = osp.join(args.work_dir, 'run_seconds.json')
    with _RUN_SECONDS_LOCK:
        times = read_seconds(path)
        times[name] = round(seconds, 1)
        with open(path, 'w') as f:
            json.dump(times, f, indent=1)


def default_jobs(profile: str) -> int:
    """Trainings run side by side by default: two for the synthetic (tiny)
    profiles on a CPU-only machine with at least two cores, else one."""
    import torch
    if profile not in SYNTHETIC_PROFILES or torch.cuda.is_available():
        return 1
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def train_all(args, runs: list) -> None:
    """Train ``runs`` ((name, config, extra options) that do not depend on
    each other), ``args.jobs`` at a time, each with ``cpu_count // jobs``
    threads and its output in ``work_dir/name/train_stdout.log``; one job
    runs in the foreground as before. Every run finishes (or fails) before
    a failure stops the workflow."""
    jobs = max(1, min(getattr(args, 'jobs', 1), len(runs)))
    if jobs == 1:
        for name, config, extra in runs:
            train(name, config, args, extra)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    log(f'{len(runs)} trainings, {jobs} side by side at {threads} '
        f'thread(s) each: {", ".join(r[0] for r in runs)}')

    def one(spec):
        name, config, extra = spec
        return train(name, config, args, extra, threads,
                     osp.join(args.work_dir, name, 'train_stdout.log'))

    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(one, spec) for spec in runs]
    errors = [e for e in (f.exception() for f in futures) if e]
    if errors:
        raise SystemExit('; '.join(str(e) for e in errors))


def need(args, name: str) -> str:
    ckpt = final_checkpoint(osp.join(args.work_dir, name))
    if not ckpt:
        raise SystemExit(f'{name} is not trained yet: run its stage first')
    return ckpt


def check_synthetic_data(args) -> None:
    """Refuse a generated dataset whose generation options differ from the
    ones this run asks for (a copy from an older default, for instance);
    any other KITTI-format copy is used as it is."""
    meta = read_synthetic_meta(args.data_root)
    if meta is None:
        log(f'data: {args.data_root} exists (no {SYNTHETIC_META}: a KITTI '
            'copy, or generated before that file existed); used as it is')
        return
    asked = dict(num_train=args.num_train, num_val=args.num_val,
                 num_test=args.num_test, seed=args.seed,
                 yaw=getattr(args, 'yaw', YAW))
    diff = [f'{k}={meta.get(k)!r} (this run: {v!r})'
            for k, v in asked.items() if meta.get(k) != v]
    if diff:
        raise SystemExit(
            f'{args.data_root} was generated with other options: '
            f'{", ".join(diff)}. Delete it to regenerate it, pass those '
            'options, or choose another --data-root')
    log(f'data: {args.data_root} exists, generated with the same options')


def stage_data(args) -> None:
    if osp.isfile(osp.join(args.data_root, 'ImageSets', 'train.txt')):
        if args.profile in SYNTHETIC_PROFILES:
            check_synthetic_data(args)
        else:
            log(f'data: {args.data_root} exists')
        return
    if args.profile not in SYNTHETIC_PROFILES:
        raise SystemExit(f'{args.data_root} has no ImageSets/train.txt: '
                         'download KITTI there (README, "Reproducing on '
                         'KITTI")')
    run(args, [sys.executable, 'tools/create_synthetic_kitti.py', '--out',
               args.data_root, '--num-train', str(args.num_train), '--num-val',
               str(args.num_val), '--num-test', str(args.num_test), '--seed',
               str(args.seed), '--no-dense-depth', '--yaw',
               getattr(args, 'yaw', YAW)])


def stage_depth(args) -> None:
    run(args, [sys.executable, 'tools/dense_depth.py', '--root',
               osp.join(args.data_root, 'training')])


def stage_infos(args) -> None:
    if osp.isfile(osp.join(args.data_root, 'kitti_infos_val.pkl')):
        log('infos: exist')
        return
    run(args, [sys.executable, 'tools/create_data.py', 'kitti', '--root-path',
               args.data_root])


def seed_opts(seed: int) -> list:
    return [f'randomness.seed={seed}']


def teacher_runs(args) -> list:
    return [('teacher', PROFILES[args.profile]['teacher'], [])]


def student_runs(args) -> list:
    return [(run_name('student', seed), PROFILES[args.profile]['student'],
             seed_opts(seed)) for seed in args.seed_list]


def control_runs(args) -> list:
    runs = []
    for seed in args.seed_list:
        base = need(args, run_name('student', seed))
        runs.append((run_name('control', seed),
                     PROFILES[args.profile]['control'],
                     seed_opts(seed) + [f'load_from={base}'] +
                     finetune_opts(args)))
    return runs


def monoasd_runs(args) -> list:
    """(name, seed, extra options) of every distillation run."""
    runs = [(run_name('monoasd', s), s, []) for s in args.seed_list]
    if args.ablation:
        runs += [(run_name('monoasd', s, v), s, opts)
                 for s in ablation_seed_list(args)
                 for v, opts in ABLATIONS.items()]
    return runs


def monoasd_train_runs(args) -> list:
    teacher = need(args, 'teacher')
    runs = []
    for name, seed, extra in monoasd_runs(args):
        base = need(args, run_name('student', seed))
        runs.append((name, PROFILES[args.profile]['monoasd'],
                     seed_opts(seed) + [f'model.teacher_ckpt={teacher}',
                                        f'model.student_ckpt={base}'] +
                     distill_opts(args) + extra + finetune_opts(args)))
    return runs


def stage_teacher(args) -> None:
    train_all(args, teacher_runs(args))


def stage_student(args) -> None:
    train_all(args, student_runs(args))


def stage_control(args) -> None:
    train_all(args, control_runs(args))


def stage_monoasd(args) -> None:
    train_all(args, monoasd_train_runs(args))


def stage_export(args) -> None:
    for name, _, _ in monoasd_runs(args):
        out = osp.join(args.work_dir, name, 'student_only.pth')
        if osp.isfile(out):
            log(f'export {name}: {out} exists')
            continue
        run(args, [sys.executable, 'tools/export_student.py',
                   need(args, name), out])


def evaluated_runs(args) -> list:
    """(name, config, checkpoint) of every model to evaluate."""
    prof = PROFILES[args.profile]
    runs = [('teacher', prof['teacher'],
             final_checkpoint(osp.join(args.work_dir, 'teacher')))]
    for seed in args.seed_list:
        for kind in ('student', 'control'):
            name = run_name(kind, seed)
            runs.append((name, prof['student'],
                         final_checkpoint(osp.join(args.work_dir, name))))
    for name, _, _ in monoasd_runs(args):
        runs.append((name, prof['student'],
                     osp.join(args.work_dir, name, 'student_only.pth')))
    return runs


def stage_eval(args) -> None:
    for name, cfg, ckpt in evaluated_runs(args):
        work_dir = osp.join(eval_dir(args), name)
        out = osp.join(work_dir, 'test_metrics.json')
        if osp.isfile(out):
            log(f'eval {name}: done')
            continue
        os.makedirs(work_dir, exist_ok=True)
        run(args, [sys.executable, 'tools/test.py', cfg, ckpt, '--work-dir',
                   osp.join(work_dir, 'test'), '--out-json', out,
                   '--benchmark-images', str(args.benchmark_images),
                   '--cfg-options'] + data_overrides(args, cfg))


def stage_report(args) -> None:
    prof = PROFILES[args.profile]
    names = [name for name, _, _ in evaluated_runs(args)]
    os.makedirs(args.results, exist_ok=True)
    for kind in ('teacher', 'student', 'control', 'monoasd'):
        src = prof[kind]
        shutil.copy(osp.join(args.root, src),
                    osp.join(args.results, osp.basename(src)))
    pictures = {
        'teacher': (prof['teacher'], need(args, 'teacher')),
        'student': (prof['student'], need(args, 'student')),
        'control': (prof['student'], need(args, 'control')),
        'monoasd': (prof['student'],
                    osp.join(args.work_dir, 'monoasd', 'student_only.pth')),
    }
    write_report(names, args, picture_models=pictures)


#: The stages in the order they run.
STAGE_FUNCTIONS = {
    'data': stage_data, 'depth': stage_depth, 'infos': stage_infos,
    'teacher': stage_teacher, 'student': stage_student,
    'control': stage_control, 'monoasd': stage_monoasd,
    'export': stage_export, 'eval': stage_eval, 'report': stage_report
}
STAGES = tuple(STAGE_FUNCTIONS)
#: Training stages whose runs do not depend on each other (train_all runs
#: a group's trainings side by side), with the lists of their runs.
TRAIN_GROUPS = (
    (('teacher', teacher_runs), ('student', student_runs)),
    (('control', control_runs), ('monoasd', monoasd_train_runs)),
)


def record_stage_seconds(directory: str, key: str, took: float) -> None:
    """Write ``key``'s wall time to ``directory/stage_seconds.json`` and
    its machine to ``machines.json`` there. A stage of 5 s or less whose
    time is already there found its work done, and keeps the time of the
    run that did it; a directory that cannot be written (a read-only
    KITTI copy whose data stages found everything there) is logged and
    skipped."""
    path = osp.join(directory, 'stage_seconds.json')
    times = read_seconds(path)
    if took <= 5 and key in times:
        return
    times[key] = round(took, 1)
    try:
        os.makedirs(directory, exist_ok=True)
        with open(path, 'w') as f:
            json.dump(times, f, indent=1)
        record_machine(directory, key)
    except OSError as err:
        log(f'stage {key}: wall time not recorded in {directory} ({err})')


def run_stages(args, stages) -> dict:
    """Run ``stages`` (names of :data:`STAGES`) in the workflow's order.

    Wall times go to ``stage_seconds.json`` in the stage's directory
    (:func:`~.report.stage_dir`: the data root for data, depth and infos,
    ``eval_dir`` for eval, else the work dir; a resumed stage that finds
    everything done keeps the time of the run that did the work; a group
    of training stages run together, e.g. ``teacher+student``, has one
    entry) and each training's to ``work_dir/run_seconds.json``; the
    machine each stage that did work ran on goes to ``machines.json``
    beside ``stage_seconds.json`` (:func:`record_stage_seconds`).

    Returns:
        dict: Stage name -> seconds, as written (:func:`stage_seconds`).
    """
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise SystemExit(f'unknown stages {sorted(unknown)}; choose from '
                         f'{STAGES}')
    os.makedirs(args.work_dir, exist_ok=True)
    start = time.time()
    group_of = {name: group for group in TRAIN_GROUPS for name, _ in group}
    done = set()
    for stage, func in STAGE_FUNCTIONS.items():
        if stage not in stages or stage in done:
            continue
        members = [(n, f) for n, f in group_of.get(stage, ())
                   if n in stages]
        key = stage
        t0 = time.time()
        if len(members) > 1:  # one group, its trainings side by side
            key = '+'.join(n for n, _ in members)
            train_all(args, [r for _, f in members for r in f(args)])
            done.update(n for n, _ in members)
        else:
            func(args)
        took = time.time() - t0
        if stage != 'report':
            record_stage_seconds(stage_dir(args, stage), key, took)
        log(f'stage {key} took {took:.0f} s')
    log(f'done in {time.time() - start:.0f} s')
    return stage_seconds(args)
