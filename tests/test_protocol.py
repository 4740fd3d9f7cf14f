"""The main job's protocol: teacher -> baseline -> (control, MonoASD from
the baseline checkpoint), seeds and ablation, and the report's statistics.
"""
import argparse
import json
import os.path as osp
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from mmengine.config import Config

from conftest import import_tool
from monoasd.apis import workflow

ROOT = Path(__file__).resolve().parents[1]
SHARED = ('optim_wrapper', 'param_scheduler', 'train_cfg', 'randomness',
          'train_dataloader', 'default_hooks', 'custom_hooks')


@pytest.mark.parametrize('profile', ['tiny', 'tiny-half', 'kitti'])
def test_control_config_matches_monoasd_but_the_model(profile):
    prof = workflow.PROFILES[profile]
    control = Config.fromfile(str(ROOT / prof['control']))
    monoasd = Config.fromfile(str(ROOT / prof['monoasd']))

    def shared(cfg, key):
        value = cfg.get(key)
        if key == 'custom_hooks':  # hooks that act on a distiller only
            value = [h for h in value if h['type'] != 'DistillWarmupHook']
        return value

    for key in SHARED:
        assert shared(control, key) == shared(monoasd, key), key
    assert monoasd.model.type == 'AlignSelectDistiller'
    assert control.model == monoasd.model.student
    assert 'student_ckpt' in monoasd.model


def fake_training(monkeypatch, tmp_path):
    """Record the commands run_main would run; write what training leaves
    behind (last_checkpoint) so later stages find their inputs."""
    run_main = import_tool('run_main')
    calls, jobs = [], []

    def run(args, cmd, threads=0, log_file=''):
        calls.append(cmd)
        jobs.append((threads, log_file))
        if 'tools/train.py' in cmd:
            work = cmd[cmd.index('--work-dir') + 1]
            Path(work).mkdir(parents=True, exist_ok=True)
            ckpt = osp.join(work, 'epoch_1.pth')
            Path(ckpt).write_bytes(b'')
            Path(work, 'last_checkpoint').write_text(ckpt)

    monkeypatch.setattr(workflow, 'run', run)
    return run_main, calls, jobs


def test_protocol_commands_for_seeds_and_ablation(monkeypatch, tmp_path):
    run_main, calls, _ = fake_training(monkeypatch, tmp_path)
    work = tmp_path / 'w'
    run_main.main(['--work-dir', str(work), '--data-root', str(tmp_path),
                   '--stages', 'teacher,student,control,monoasd',
                   '--seeds', '2', '--ablation', '--jobs', '1'])
    trained = [c[c.index('--work-dir') + 1] for c in calls]
    names = [osp.basename(w) for w in trained]
    assert names == ['teacher', 'student', 'student_seed1', 'control',
                     'control_seed1', 'monoasd', 'monoasd_seed1',
                     'monoasd_no_align_select', 'monoasd_no_affinity',
                     'monoasd_no_head']

    def opts(name):
        cmd = calls[names.index(name)]
        return cmd[cmd.index('--cfg-options') + 1:]

    base1 = str(work / 'student_seed1' / 'epoch_1.pth')
    assert f'load_from={base1}' in opts('control_seed1')
    assert 'randomness.seed=1' in opts('control_seed1')
    assert f'model.student_ckpt={base1}' in opts('monoasd_seed1')
    teacher = str(work / 'teacher' / 'epoch_1.pth')
    assert f'model.teacher_ckpt={teacher}' in opts('monoasd')
    assert 'model.loss_head=None' in opts('monoasd_no_head')
    assert json.load(open(work / 'stage_seconds.json')).keys() == {
        'teacher+student', 'control+monoasd'}
    assert json.load(open(work / 'run_seconds.json')).keys() == set(names)
    # the machine each stage ran on, beside its time
    from monoasd.utils import machine_info, machine_line
    assert json.load(open(work / 'machines.json')) == {
        machine_line(machine_info()): ['teacher+student', 'control+monoasd']}


def test_data_stage_times_go_with_the_data_root(monkeypatch, tmp_path,
                                                capsys):
    """Making another KITTI-format copy (--data-root, no --work-dir) writes
    the data stages' times and machine into that copy, not into the work
    dir of the models; a report reads them from its data root. A data
    root that cannot be written is logged and the stages go on."""
    from monoasd.apis import report
    run_main, _, _ = fake_training(monkeypatch, tmp_path)
    work, other = tmp_path / 'w', tmp_path / 'other'
    argv = ['--work-dir', str(work), '--data-root', str(other)]
    run_main.main(argv + ['--stages', 'data,depth,infos'])
    assert json.load(open(other / 'stage_seconds.json')).keys() == {
        'data', 'depth', 'infos'}
    assert list(json.load(open(other / 'machines.json')).values()) == [
        ['data', 'depth', 'infos']]
    assert not (work / 'stage_seconds.json').exists()
    assert not (work / 'machines.json').exists()
    run_main.main(argv + ['--stages', 'teacher'])
    args = run_main.parse_args(argv)
    assert list(report.stage_seconds(args)) == ['data', 'depth', 'infos',
                                                'teacher']
    # the profile's work dir does not get another copy's data times
    args = run_main.parse_args(['--work-dir', str(work), '--data-root',
                                str(tmp_path / 'mine')])
    assert list(report.stage_seconds(args)) == ['teacher']
    # unwritable (here: its stage_seconds.json is a directory)
    ro = tmp_path / 'ro'
    (ro / 'stage_seconds.json').mkdir(parents=True)
    run_main.main(['--work-dir', str(work), '--data-root', str(ro),
                   '--stages', 'depth,infos'])
    out = capsys.readouterr().out
    assert f'stage depth: wall time not recorded in {ro}' in out
    assert 'stage infos took' in out
    assert not (ro / 'machines.json').exists()


def test_ablation_over_seeds(monkeypatch, tmp_path):
    """--ablation-seeds 2: every KD term off for seeds 0 and 1, each run
    from the baseline of its seed; more ablation seeds than seeds is
    refused."""
    run_main, calls, _ = fake_training(monkeypatch, tmp_path)
    work = tmp_path / 'w'
    run_main.main(['--work-dir', str(work), '--data-root', str(tmp_path),
                   '--stages', 'teacher,student,monoasd', '--seeds', '3',
                   '--ablation', '--ablation-seeds', '2', '--jobs', '1'])
    names = [osp.basename(c[c.index('--work-dir') + 1]) for c in calls]
    variants = list(workflow.ABLATIONS)
    assert names[-9:] == [
        'monoasd', 'monoasd_seed1', 'monoasd_seed2'] + [
        f'monoasd_{v}' for v in variants] + [
        f'monoasd_{v}_seed1' for v in variants]
    cmd = calls[names.index('monoasd_no_head_seed1')]
    base1 = str(work / 'student_seed1' / 'epoch_1.pth')
    assert f'model.student_ckpt={base1}' in cmd
    assert 'randomness.seed=1' in cmd and 'model.loss_head=None' in cmd
    with pytest.raises(SystemExit):
        run_main.parse_args(['--seeds', '2', '--ablation-seeds', '3'])


def test_report_rows_carry_the_box_errors(tmp_path):
    """metrics_row reads MonoKittiMetric's box errors; metrics written
    without them show '-' in the seed table."""
    from monoasd.apis import report
    for name, dz in (('control', 0.6), ('monoasd', None)):
        (tmp_path / name).mkdir()
        metrics = {report.AP_KEY.format('3D', 'moderate', 'loose'): 5.0}
        if dz is not None:
            metrics[report.ERR_KEY.format('dz')] = dz
            metrics[report.ERR_KEY.format('iou')] = 0.4
        (tmp_path / name / 'test_metrics.json').write_text(
            json.dumps(metrics))
    rows = {n: report.metrics_row(str(tmp_path / n))
            for n in ('control', 'monoasd')}
    assert rows['control']['err_dz'] == 0.6
    assert rows['control']['err_iou'] == 0.4
    assert rows['monoasd']['err_dz'] is None
    md, stats = report.seed_table(rows, [0])
    assert 'median \\|dz\\| (m) | median IoU |' in md
    assert md.startswith('| Model (Car AP40 moderate, 1 seed) |')
    assert stats['control']['err_dz']['median'] == 0.6
    control_line = [ln for ln in md.splitlines()
                    if ln.startswith('| ' + report.NAMES['control'])][0]
    assert control_line.endswith('| 0.60 [0.60, 0.60] | 0.40 [0.40, 0.40] |')
    assert stats['MonoASD - control']['err_dz']['n'] == 0


def test_ablation_table_median_and_paired_difference():
    from monoasd.apis import report

    def row(v):
        return {c: v for c in report.KEY_COLUMNS}

    rows = {'monoasd': row(10.0), 'monoasd_seed1': row(4.0),
            'monoasd_seed2': row(7.0),  # seed 2 has no ablation runs
            'monoasd_no_head': row(8.0), 'monoasd_no_head_seed1': row(5.0),
            'student': row(1.0)}
    md, stats = report.ablation_table(rows, [0, 1])
    col = report.KEY_COLUMNS[1]
    assert list(stats) == ['monoasd', 'monoasd_no_head',
                           'monoasd_no_head - all']
    assert stats['monoasd'][col] == pytest.approx(dict(
        median=7.0, min=4.0, max=10.0, mean=7.0, sd=18 ** 0.5, n=2))
    # per-seed differences 8 - 10 = -2 and 5 - 4 = +1
    assert stats['monoasd_no_head - all'][col] == pytest.approx(dict(
        median=-0.5, min=-2.0, max=1.0, mean=-0.5, sd=4.5 ** 0.5, n=2))
    assert '-0.50 [-2.00, 1.00]' in md
    assert report.split_seed('monoasd_no_head_seed12') == (
        'monoasd_no_head', 12)
    assert report.split_seed('monoasd_no_head') == ('monoasd_no_head', 0)


def test_independent_trainings_run_side_by_side(monkeypatch, tmp_path):
    """--jobs 2: teacher and baselines form one group, controls and
    distillations the next; each training gets cpu_count // 2 threads and
    its own log; every distillation still starts from its baseline."""
    import os
    import threading
    run_main, calls, jobs = fake_training(monkeypatch, tmp_path)
    fake = workflow.run
    running, peak, lock = [0], [0], threading.Lock()
    gate = threading.Barrier(2, timeout=10)

    def run(args, cmd, threads=0, log_file=''):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        name = osp.basename(cmd[cmd.index('--work-dir') + 1])
        if name in ('teacher', 'student'):
            gate.wait()  # both must be running at the same time
        fake(args, cmd, threads, log_file)
        with lock:
            running[0] -= 1

    monkeypatch.setattr(workflow, 'run', run)
    work = tmp_path / 'w'
    run_main.main(['--work-dir', str(work), '--data-root', str(tmp_path),
                   '--stages', 'teacher,student,control,monoasd',
                   '--seeds', '2', '--jobs', '2'])
    names = [osp.basename(c[c.index('--work-dir') + 1]) for c in calls]
    assert sorted(names[:3]) == ['student', 'student_seed1', 'teacher']
    assert sorted(names[3:]) == ['control', 'control_seed1', 'monoasd',
                                 'monoasd_seed1']
    assert peak[0] == 2
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert [t for t, _ in jobs] == [threads] * 7
    assert [osp.relpath(f, work) for _, f in jobs] == [
        osp.join(n, 'train_stdout.log') for n in names]
    base1 = str(work / 'student_seed1' / 'epoch_1.pth')
    cmd = calls[names.index('monoasd_seed1')]
    assert f'model.student_ckpt={base1}' in cmd


def test_eval_dir_evaluates_the_models_on_another_copy(
        monkeypatch, tmp_path):
    """--eval-dir with --stages eval,report: every model of the work dir
    is tested on --data-root's val split; its metrics and the eval stage's
    time go to the eval dir, and the report reads them from there."""
    from monoasd.apis import report
    run_main, calls, _ = fake_training(monkeypatch, tmp_path)
    work, other, ev = tmp_path / 'w', tmp_path / 'other', tmp_path / 'ev'
    run_main.main(['--work-dir', str(work), '--data-root', str(tmp_path),
                   '--stages', 'teacher,student,control,monoasd',
                   '--jobs', '1'])
    fake = workflow.run
    aps = dict(teacher=40.0, student=10.0, control=12.0, monoasd=15.0)

    def run(args, cmd, threads=0, log_file=''):
        fake(args, cmd, threads, log_file)
        if 'tools/test.py' in cmd:  # what tools/test.py --out-json writes
            out = cmd[cmd.index('--out-json') + 1]
            ap = aps[osp.basename(osp.dirname(out))]
            Path(out).write_text(json.dumps(
                {report.AP_KEY.format('3D', 'moderate', 'loose'): ap}))

    monkeypatch.setattr(workflow, 'run', run)
    calls.clear()
    argv = ['--work-dir', str(work), '--data-root', str(other),
            '--eval-dir', str(ev), '--results', str(tmp_path / 'res')]
    run_main.main(argv + ['--stages', 'eval'])
    tested = [c for c in calls if 'tools/test.py' in c]
    assert len(tested) == 4
    for cmd in tested:
        out = Path(cmd[cmd.index('--out-json') + 1])
        assert out.parent.parent == ev and out.is_file()
        assert f'test_evaluator.ann_file={other}/kitti_infos_val.pkl' in cmd
    assert not list(work.glob('*/test_metrics.json'))
    assert json.load(open(ev / 'stage_seconds.json')).keys() == {'eval'}
    assert 'eval' not in json.load(open(work / 'stage_seconds.json'))

    args = run_main.parse_args(argv)
    res = report.write_report(['teacher', 'student', 'control', 'monoasd'],
                              args)
    assert {n: r['3D@0.5_moderate'] for n, r in res['rows'].items()} == aps
    assert res['seed_stats']['MonoASD - control']['3D@0.5_moderate'][
        'median'] == 3.0
    assert res['stage_seconds'].keys() == {'teacher+student',
                                           'control+monoasd', 'eval'}
    assert res['data_root'] == str(other)
    assert list(res['machines'].values()) == [
        ['teacher+student', 'control+monoasd', 'eval']]
    ran_on = f'Ran on {next(iter(res["machines"]))}: teacher+student'
    assert ran_on in (tmp_path / 'res' / 'results.md').read_text()


def test_finetune_options_reach_control_and_monoasd_alike(
        monkeypatch, tmp_path):
    """--finetune-options: every control and MonoASD training (ablation
    included) gets the same options after the workflow's own, teacher and
    baselines get none, and the report lists them."""
    from monoasd.apis import report
    run_main, calls, _ = fake_training(monkeypatch, tmp_path)
    opts = ['optim_wrapper.optimizer.lr=5e-5', 'param_scheduler.0.gamma=1.0']
    work = tmp_path / 'w'
    argv = ['--work-dir', str(work), '--data-root', str(tmp_path),
            '--seeds', '2', '--ablation', '--jobs', '1',
            '--finetune-options'] + opts
    run_main.main(argv + ['--stages', 'teacher,student,control,monoasd'])
    names = [osp.basename(c[c.index('--work-dir') + 1]) for c in calls]
    assert len(names) == 1 + 2 + 2 + 2 + 3  # ablation: seed 0
    for name, cmd in zip(names, calls):
        if name.startswith(('control', 'monoasd')):
            assert cmd[-2:] == opts, name
        else:
            assert not set(opts) & set(cmd), name
    main_rows = ['teacher', 'student', 'control', 'monoasd']
    for name in main_rows:
        (work / name / 'test_metrics.json').write_text(json.dumps(
            {report.AP_KEY.format('3D', 'moderate', 'loose'): 1.0}))
    args = run_main.parse_args(argv + ['--results', str(tmp_path / 'res')])
    res = report.write_report(main_rows, args)
    assert res['finetune_options'] == opts
    md = (tmp_path / 'res' / 'results.md').read_text()
    assert '`optim_wrapper.optimizer.lr=5e-5` `param_scheduler.0.gamma=1.0`' \
        in md
    with pytest.raises(SystemExit):
        run_main.parse_args(['--finetune-options', 'lr'])
    # the same work dir with other options: refused, naming the run
    calls.clear()
    with pytest.raises(SystemExit, match=r'w/control was trained with other '
                       r'options: .*lr=5e-5.*\(this run: .*lr=1e-4'):
        run_main.main(argv[:-2] + ['optim_wrapper.optimizer.lr=1e-4',
                                   '--stages', 'control'])
    assert not calls
    # the same options: reused, nothing trained again
    run_main.main(argv + ['--stages', 'teacher,student,control,monoasd'])
    assert not calls
    # the same work dir and options from another profile's config: refused
    with pytest.raises(SystemExit, match=r'w/teacher was trained from '
                       r'configs/monoasd/did-m3d_dla34-half_tiny_.*_teacher'
                       r'\.py \(this run: .*dla34_tiny.*another --profile'):
        run_main.main(argv + ['--profile', 'tiny', '--stages', 'teacher'])
    assert not calls


def test_distill_options_reach_monoasd_only(monkeypatch, tmp_path):
    """--distill-options: every MonoASD training gets them, the control
    (no distillation terms), teacher and baselines do not; an ablation's
    own option comes after them and wins in the merged config, and the
    report lists them."""
    from mmengine.config import DictAction

    from monoasd.apis import report
    run_main, calls, _ = fake_training(monkeypatch, tmp_path)
    opts = ['model.loss_align_select.loss_weight=5.0',
            'model.loss_head.loss_weight=0.5']
    work = tmp_path / 'w'
    argv = ['--work-dir', str(work), '--data-root', str(tmp_path),
            '--ablation', '--jobs', '1', '--distill-options'] + opts
    run_main.main(argv + ['--stages', 'teacher,student,control,monoasd'])
    names = [osp.basename(c[c.index('--work-dir') + 1]) for c in calls]
    assert names == ['teacher', 'student', 'control', 'monoasd',
                     'monoasd_no_align_select', 'monoasd_no_affinity',
                     'monoasd_no_head']

    def merged(name):
        """The config tools/train.py would build for run ``name``."""
        cmd = calls[names.index(name)]
        parser = argparse.ArgumentParser()
        parser.add_argument('--cfg-options', nargs='+', action=DictAction)
        options = parser.parse_args(
            cmd[cmd.index('--cfg-options'):]).cfg_options
        cfg = Config.fromfile(str(ROOT / cmd[2]))
        cfg.merge_from_dict(options)
        return cfg.model

    for name, cmd in zip(names, calls):
        assert bool(set(opts) & set(cmd)) == name.startswith('monoasd'), \
            name
    full = merged('monoasd')
    assert full.loss_align_select.loss_weight == 5.0
    assert full.loss_head.loss_weight == 0.5
    own = Config.fromfile(str(ROOT / workflow.PROFILES[
        workflow.DEFAULT_PROFILE]['monoasd'])).model.loss_affinity
    assert full.loss_affinity == own
    assert merged('monoasd_no_align_select').loss_align_select[
        'loss_weight'] == 0.0
    assert merged('monoasd_no_head').loss_head is None
    (work / 'teacher' / 'test_metrics.json').write_text('{}')
    args = run_main.parse_args(argv + ['--results', str(tmp_path / 'res')])
    res = report.write_report(['teacher'], args)
    assert res['distill_options'] == opts
    assert ('MonoASD trained with --distill-options '
            '`model.loss_align_select.loss_weight=5.0` '
            '`model.loss_head.loss_weight=0.5` (not the control') in \
        (tmp_path / 'res' / 'results.md').read_text()
    with pytest.raises(SystemExit):
        run_main.parse_args(['--distill-options', 'weight'])
    # the same work dir with other distillation options: MonoASD refused
    calls.clear()
    with pytest.raises(SystemExit, match=r'w/monoasd was trained with '
                       r'other options: .*loss_weight=5.0.*\(this run: '):
        run_main.main(argv[:-2] + ['model.loss_head.loss_weight=1.0',
                                   '--stages', 'control,monoasd'])
    assert not calls


def test_half_width_ramp_is_one_epoch():
    """tiny-half repeats the train set per epoch: MonoASD's distillation
    ramp stays one epoch long, as in the tiny profile."""
    def ramp(cfg):
        return [h for h in cfg.custom_hooks
                if h['type'] == 'DistillWarmupHook'][0].warmup_iters

    tiny = Config.fromfile(str(ROOT / workflow.PROFILES['tiny']['monoasd']))
    half = Config.fromfile(
        str(ROOT / workflow.PROFILES['tiny-half']['monoasd']))
    times = half.train_dataloader.dataset.times
    assert times == half.repeat_times == 3
    assert ramp(half) == ramp(tiny) * times == 288
    # and its distillation weights are a quarter of the tiny profile's
    # (docs/profile_search.md, "Eleventh round")
    for key in ('loss_align_select', 'loss_affinity', 'loss_head'):
        assert half.model[key].get('loss_weight', 1.0) == \
            0.25 * tiny.model[key].get('loss_weight', 1.0), key


def test_each_profile_has_its_default_work_dir():
    run_main = import_tool('run_main')
    tiny = run_main.parse_args(['--profile', 'tiny'])
    assert (tiny.work_dir, tiny.results) == ('work_dirs/mini_kitti',
                                             'results')
    half = run_main.parse_args([])  # the default profile
    assert half.profile == workflow.DEFAULT_PROFILE == 'tiny-half'
    assert (half.work_dir, half.results) == ('work_dirs/mini_kitti_half',
                                             'results/tiny-half')
    assert half.jobs == workflow.default_jobs('tiny')
    assert run_main.parse_args(['--profile', 'tiny-half', '--work-dir',
                                'w']).work_dir == 'w'


def test_monoasd_needs_the_baseline(monkeypatch, tmp_path):
    run_main, _, _ = fake_training(monkeypatch, tmp_path)
    with pytest.raises(SystemExit, match='teacher is not trained'):
        run_main.main(['--work-dir', str(tmp_path), '--stages', 'monoasd'])


def test_seed_table_median_spread_and_gain():
    from monoasd.apis import report

    def row(v):
        return {c: v for c in report.KEY_COLUMNS}

    rows = {'student': row(1.0), 'student_seed1': row(2.0),
            'student_seed2': row(6.0), 'control': row(2.0),
            'control_seed1': row(3.0), 'control_seed2': row(4.0),
            'monoasd': row(5.0), 'monoasd_seed1': row(3.0),
            'monoasd_seed2': row(10.0)}
    md, stats = report.seed_table(rows, [0, 1, 2])
    col = report.KEY_COLUMNS[0]
    # deviations -2, -1, +3 from the mean: sample variance 14 / 2
    assert stats['student'][col] == pytest.approx(dict(
        median=2.0, min=1.0, max=6.0, mean=3.0, sd=7 ** 0.5, n=3))
    # per-seed gains 3, 0, 6 -> median 3, sample variance 18 / 2
    assert stats['MonoASD - control'][col] == dict(
        median=3.0, min=0.0, max=6.0, mean=3.0, sd=3.0, n=3)
    assert '3.00 [0.00, 6.00]' in md
    assert md.startswith('| Model (Car AP40 moderate, 3 seeds) |')


def test_per_seed_gains_keep_seed_order_and_skip_missing_runs():
    from monoasd.apis import report

    def row(v, **extra):
        r = {c: v for c in report.KEY_COLUMNS}
        r.update(extra)
        return r

    rows = {'control': row(2.0), 'monoasd': row(5.0),
            'control_seed1': row(3.0), 'monoasd_seed1': row(2.0),
            # seed 2: MonoASD has no AP3D@0.7; seed 3: no control at all
            'control_seed2': row(1.0), 'monoasd_seed2': row(
                4.0, **{'3D_moderate': None}),
            'monoasd_seed3': row(9.0)}
    md, gains = report.per_seed_lines(rows, [0, 1, 2, 3])
    assert gains['3D@0.5_moderate'] == [3.0, -1.0, 3.0, None]
    assert gains['3D_moderate'] == [3.0, -1.0, None, None]
    # 3, -1, 3: deviations 4/3, -8/3, 4/3 -> sd sqrt(16/3), se 4/3
    assert ('- AP3D@0.5: +3.00, -1.00, +3.00, - (mean +1.67, sd 2.31, '
            'se 1.33; 2 of 3 gain)') in md
    # 3, -1: sd sqrt(8), se 2
    assert ('- AP3D@0.7: +3.00, -1.00, -, - (mean +1.00, sd 2.83, se 2.00; '
            '1 of 2 gain)') in md
    # one seed: no spread to report
    one, _ = report.per_seed_lines(rows, [0])
    assert '- AP3D@0.5: +3.00 (mean +3.00; 1 of 1 gain)' in one
    assert report.summary([None]) == ''
    assert md.startswith('MonoASD - control per seed (0, 1, 2, 3)')


@pytest.mark.parametrize('config', sorted(
    p.name for p in (ROOT / 'configs/monoasd').glob('*tiny*.py')))
def test_tiny_configs_take_the_input_size_from_one_base(config):
    """Every tiny config's pipelines come from one dataset base
    (configs/_base_/datasets/mini-kitti-mono3d-tiny.py), so one value sets
    the input size of all of them; the HTL schedule ends within the
    training schedule."""
    cfg = Config.fromfile(str(ROOT / 'configs/monoasd' / config))
    base = Config.fromfile(
        str(ROOT / 'configs/_base_/datasets/mini-kitti-mono3d-tiny.py'))
    sizes = set()
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        # below the RepeatDataset of the half-width profile
        for t in workflow.unwrap_dataset(cfg[loader].dataset)[1].pipeline:
            if t.type == 'MonoAffineAug':
                sizes.add(tuple(t.out_size))
    assert sizes == {tuple(base.input_size)} == {tuple(cfg.input_size)}
    htl = cfg.model.get('student', cfg.model).get('bbox_head', {}).get('htl')
    if htl:
        assert htl.stat_epochs < htl.max_epoch <= Config.fromfile(str(
            ROOT / 'configs/monoasd/'
            'did-m3d_dla34_tiny_mini-kitti-car_student.py')).max_epochs


def _synthetic_root(tmp_path, **meta):
    root = tmp_path / 'kitti'
    (root / 'ImageSets').mkdir(parents=True)
    (root / 'ImageSets' / 'train.txt').write_text('000000\n')
    if meta:
        (root / 'synthetic.json').write_text(json.dumps(meta))
    return root


def _data_args(root, **over):
    import argparse
    args = dict(data_root=str(root), profile='tiny',
                num_train=workflow.NUM_TRAIN, num_val=workflow.NUM_VAL,
                num_test=8, seed=0, yaw=workflow.YAW)
    args.update(over)
    return argparse.Namespace(**args)


def test_data_stage_refuses_a_copy_generated_with_other_options(tmp_path):
    """An existing generated copy is reused only if it was generated with
    the options of this run (an older default, e.g. 24 val frames with
    uniform yaw, is refused with both values named)."""
    root = _synthetic_root(tmp_path, num_train=workflow.NUM_TRAIN, num_val=24,
                           num_test=8, seed=0, yaw='uniform')
    with pytest.raises(SystemExit, match=r"num_val=24 \(this run: 200\), "
                       r"yaw='uniform' \(this run: 'road'\)"):
        workflow.stage_data(_data_args(root))
    # the same options: reused, nothing is generated
    workflow.stage_data(_data_args(root, num_val=24, yaw='uniform'))
    # a KITTI copy (no synthetic.json) is used as it is, whatever the sizes
    kitti = _synthetic_root(tmp_path / 'real')
    workflow.stage_data(_data_args(kitti, num_train=7))
    # the kitti profile never checks
    workflow.stage_data(_data_args(root, profile='kitti'))


def test_failed_training_names_its_cause(tmp_path):
    """A training that fails side by side with another writes its
    traceback to its own log; the workflow's error repeats the exception
    line, and for a full disk the free space."""
    log_file = tmp_path / 'train_stdout.log'
    log_file.write_text(
        'Epoch(train) [2][96/96] loss: 1.0\nTraceback (most recent call '
        'last):\n  File "tools/train.py", line 61, in <module>\n'
        '    f.write(obj)\nOSError: [Errno 28] No space left on device\n\n')
    cmd = [sys.executable, '-c', 'import sys; sys.exit(3)']
    args = SimpleNamespace(root=str(tmp_path))
    with pytest.raises(SystemExit) as err:
        workflow.run(args, cmd, log_file=str(log_file))
    msg = str(err.value)
    assert msg.startswith('command failed (3): ')
    assert f'(log: {log_file})' in msg
    assert 'OSError: [Errno 28] No space left on device (' in msg
    assert 'MiB free there now' in msg
    # the run appended nothing; the last exception line wins over later
    # non-error lines, and any last line stands in when none names one
    log_file.write_text('RuntimeError: first\nValueError: second\n'
                        'some trailing output\n')
    assert workflow.failure_cause(str(log_file)) == 'ValueError: second'
    log_file.write_text('Killed\n')
    assert workflow.failure_cause(str(log_file)) == 'Killed'
    log_file.write_text('')
    assert workflow.failure_cause(str(log_file)) == ''
    assert workflow.failure_cause(str(tmp_path / 'missing.log')) == ''


def test_data_overrides_reach_a_wrapped_train_dataset(tmp_path):
    """--data-root rewrites the data root of a train set wrapped as in
    mmdet3d's KITTI configs (RepeatDataset), not the wrapper's own keys
    (which RepeatDataset would refuse), and names a ConcatDataset it cannot
    rewrite."""
    import argparse
    cfg = tmp_path / 'wrapped.py'
    cfg.write_text(
        f"_base_ = ['{ROOT}/configs/monoasd/"
        "did-m3d_dla34_tiny_mini-kitti-car_student.py']\n"
        "train_dataloader = dict(dataset=dict(_delete_=True, "
        "type='RepeatDataset', times=2, "
        "dataset={{_base_.train_dataloader.dataset}}))\n")
    args = argparse.Namespace(data_root='/data/kitti', root=str(ROOT))
    opts = workflow.data_overrides(args, str(cfg))
    assert opts[:3] == [
        'train_dataloader.dataset.dataset.data_root=/data/kitti/',
        'val_dataloader.dataset.data_root=/data/kitti/',
        'test_dataloader.dataset.data_root=/data/kitti/']
    # the key resolves in the merged config, where the plain key would not
    merged = Config.fromfile(str(cfg))
    merged.merge_from_dict(dict(o.split('=', 1) for o in opts))
    assert merged.train_dataloader.dataset.type == 'RepeatDataset'
    assert 'data_root' not in merged.train_dataloader.dataset
    assert merged.train_dataloader.dataset.dataset.data_root == \
        '/data/kitti/'
    # an unwrapped config keeps the plain keys
    plain = workflow.data_overrides(
        args, workflow.PROFILES['tiny']['student'])
    assert plain[0] == 'train_dataloader.dataset.data_root=/data/kitti/'
    concat = Config(dict(train_dataloader=dict(dataset=dict(
        type='ConcatDataset', datasets=[dict(), dict()]))))
    with pytest.raises(SystemExit, match='ConcatDataset of several'):
        workflow.dataset_key(concat, 'train_dataloader')
