"""The benchmark command's tiny run: output format, not speed."""
import json
import math
import os

from monoasd.apis import side_by_side, summarize

from conftest import import_tool


def test_summarize_and_interleaving():
    assert summarize([3.0, 1.0, 2.0]) == dict(median=2.0, best=1.0,
                                              worst=3.0, n=3)
    order = []
    res = side_by_side(dict(a=lambda: order.append('a'),
                            b=lambda: order.append('b')), reps=2, warmup=1)
    # warm-up, then A B and B A alternately
    assert order == ['a', 'b', 'a', 'b', 'b', 'a']
    assert res['a']['n'] == res['b']['n'] == 2


def test_benchmark_tiny_run(mini_kitti, tmp_path, capsys):
    root, _ = mini_kitti
    out = tmp_path / 'bench.json'
    res = import_tool('analysis_tools/benchmark').main([
        '--data-root', str(root), '--profiles', 'tiny', '--reps', '1',
        '--sections', 'inference', 'train', 'data', 'memory', 'scan', 'eval',
        '--scan-levels', '96:8', '--eval-frames', '12', '--data-batches',
        '2', '--data-workers', '0', '--out', str(out)])
    text = capsys.readouterr().out
    for title in ('### Inference, tiny', '### Training step, tiny',
                  '### Data pipeline, tiny', '### Training transforms, tiny',
                  '### Peak memory',
                  '### Selective scan', '### KittiMetric'):
        assert title in text
    assert json.loads(out.read_text())['reps'] == 1
    # the machine the figures came from
    assert res['machine']['logical_cpus'] == os.cpu_count()
    assert f'Machine: {res["machine"]["cpu"]}, ' in text
    tiny = res['profiles']['tiny']
    inf = tiny['inference']
    assert inf['input_hw'] == [96, 320]
    assert inf['baseline_params'] == inf['monoasd_params'] > 1e6
    assert inf['baseline_flops'] == inf['monoasd_flops'] > 1e8
    train = tiny['train']
    assert train['distiller_flops'] > train['student_flops'] > 0
    parts = train['distiller_parts_median']
    assert set(parts) >= {'teacher_forward', 'student_forward', 'select',
                          'align', 'fusion', 'adapters', 'losses'}
    assert all(v > 0 for k, v in parts.items() if k != 'backward_step_rest')
    assert math.isfinite(train['time_vs_flop_ratio'])
    for name in ('student', 'distiller'):
        assert train[f'{name}_channels_last']['n'] == 1
        assert train[f'{name}_channels_last_speedup'] > 0
    assert 's/iter, channels_last weights' in text
    assert tiny['data'][0]['workers'] == 0
    tms = tiny['transforms_ms']
    assert tms['LoadDenseDepth'] > 0 and tms['LoadImageFromFileMono3D'] > 0
    assert tiny['memory']['distiller']['peak_mib'] > 100
    (scan, ) = res['scan']
    assert scan['L'] == 96 and scan['D'] == 16
    assert scan['max_abs_err'] < 1e-4
    assert scan['fused_grad_rel_err'] < 1e-4
    assert scan['fused_speedup_forward'] > 0
    ev = res['eval']
    assert ev['frames'] == 12 and 0 < ev['iou_seconds'] < ev['seconds']
    assert ev['ap3d_moderate_strict'] is not None


def test_load_config_unwraps_the_repeated_train_set():
    """The tiny-half profile repeats its train set (RepeatDataset); the
    benchmark times steps and batches of the dataset it wraps, with the
    data root applied there."""
    from pathlib import Path

    from monoasd.apis.benchmark import PROFILES, load_config
    cfg_dir = Path(__file__).resolve().parents[1] / 'configs' / 'monoasd'
    student, distiller = (str(cfg_dir / n) for n in PROFILES['tiny-half'])
    cfg = load_config(student, '/data/other')
    ds = cfg.train_dataloader.dataset
    assert ds.type != 'RepeatDataset' and 'dataset' not in ds
    assert ds.data_root == '/data/other/'
    assert any(t.type == 'LoadDenseDepth' for t in ds.pipeline)
    assert cfg.model.backbone.widen_factor == 0.5
    assert cfg.model.backbone.init_cfg is None
    d_cfg = load_config(distiller, None)
    assert d_cfg.model.teacher_ckpt is None
    assert d_cfg.train_dataloader.dataset.type != 'RepeatDataset'
