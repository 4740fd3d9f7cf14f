# Copyright (c) MonoASD contributors. All rights reserved.
"""Benchmarks of what distillation costs (tools/analysis_tools).

Every comparison runs side by side in one process, repetitions
interleaved (A, B, A, B, ...), because absolute CPU times on a shared
machine move from run to run; each figure is reported as median, best and
worst of its repetitions. Sections:

* ``inference``: exported MonoASD student vs baseline student: parameters,
  FLOPs (mmengine's ``get_model_complexity_info``), latency per image;
* ``train``: seconds per training iteration, distiller vs student alone,
  with the forward time of each part (forward hooks) and the FLOPs of both
  steps (``torch.utils.flop_counter``, forward + backward), and both again
  with their weights in ``channels_last`` memory format;
* ``scan``: the fused (numba) and the chunked CPU selective scans vs the
  sequential scan;
* ``data``: training-pipeline samples/s with and without the depth map;
* ``eval``: KittiMetric wall time on replicated frames, IoU share;
* ``memory``: peak resident memory of a training step (fresh process).
"""
import copy
import math
import multiprocessing as mp
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from ..utils.machine import machine_info, machine_line
from .workflow import unwrap_dataset

#: Stride-4 .. stride-32 feature sizes of a 384x1280 input and their
#: channels (the distiller's four levels).
KITTI_LEVELS = ((96 * 320, 64), (48 * 160, 128), (24 * 80, 256),
                (12 * 40, 512))


# ------------------------------------------------------------------ timing
def summarize(times: Sequence[float]) -> Dict[str, float]:
    """Median, best and worst of repeated timings (seconds)."""
    return dict(median=statistics.median(times), best=min(times),
                worst=max(times), n=len(times))


def side_by_side(fns: Dict[str, Callable[[], None]], reps: int,
                 warmup: int = 1) -> Dict[str, Dict[str, float]]:
    """Time several functions with interleaved repetitions (the order is
    reversed every other repetition)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    names = list(fns)
    for rep in range(reps):
        # A B, then B A: neither always runs first (caches, clocks)
        for name in (names if rep % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: summarize(t) for name, t in times.items()}


def ratio(a: Dict[str, float], b: Dict[str, float]) -> float:
    """Ratio of two medians."""
    return a['median'] / b['median']


# ----------------------------------------------------------------- building
def load_config(path: str, data_root: Optional[str]) -> Config:
    """A config with no pretrained download and ``data_root`` applied; a
    wrapped train set (``RepeatDataset`` of the tiny-half profile) is
    replaced by the dataset it wraps: the benchmark times steps and
    batches, not epochs."""
    cfg = Config.fromfile(path)
    cfg.train_dataloader.dataset = unwrap_dataset(
        cfg.train_dataloader.dataset)[1]
    model = cfg.model
    for side in (model, model.get('student'), model.get('teacher')):
        if side and side.get('backbone') is not None:
            side.backbone.init_cfg = None
    if 'teacher_ckpt' in model:
        model.update(teacher_ckpt=None, student_ckpt=None)
    if data_root is not None:
        root = data_root.rstrip('/') + '/'
        for loader in ('train_dataloader', 'val_dataloader'):
            cfg[loader].dataset.data_root = root
        cfg.val_evaluator.ann_file = root + 'kitti_infos_val.pkl'
    return cfg


def build_model(cfg: Config):
    """The config's model (scope mmdet3d)."""
    from mmengine.registry import init_default_scope

    from mmdet3d.registry import MODELS
    init_default_scope('mmdet3d')
    return MODELS.build(copy.deepcopy(cfg.model))


def train_batch(cfg: Config, batch_size: int, depth: bool = True) -> dict:
    """One collated training batch from the config's train dataset."""
    from mmdet3d.registry import DATASETS
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    if not depth:
        ds_cfg.pipeline = without_depth(ds_cfg.pipeline)
    dataset = DATASETS.build(ds_cfg)
    return pseudo_collate([dataset[i % len(dataset)]
                           for i in range(batch_size)])


def without_depth(pipeline: List[dict]) -> List[dict]:
    """The pipeline without ``LoadDenseDepth`` and the packed depth map."""
    out = []
    for t in pipeline:
        if t['type'] == 'LoadDenseDepth':
            continue
        t = copy.deepcopy(t)
        if 'keys' in t:
            t['keys'] = [k for k in t['keys'] if k != 'depth_map']
        out.append(t)
    return out


# ---------------------------------------------------------------- inference
def bench_inference(student_cfg: Config, batch: dict, reps: int,
                    baseline_state: Optional[dict] = None,
                    monoasd_state: Optional[dict] = None) -> dict:
    """Baseline student vs the exported MonoASD student (same config).

    The states are ``state_dict``s (``tools/export_student.py`` output for
    MonoASD); None keeps the random init, which costs the same: both are
    the student config's network.
    """
    from mmengine.analysis import get_model_complexity_info
    models = {}
    for name, state in (('baseline', baseline_state),
                        ('monoasd', monoasd_state)):
        models[name] = build_model(student_cfg).eval()
        if state is not None:
            models[name].load_state_dict(state, strict=True)
    data = models['baseline'].data_preprocessor(copy.deepcopy(batch), False)
    imgs = data['inputs']['imgs'][:1]
    samples = data['data_samples'][:1]
    out = dict(input_hw=list(imgs.shape[-2:]))
    for name, model in models.items():
        info = get_model_complexity_info(
            model, inputs=({'imgs': imgs}, ), show_table=False,
            show_arch=False)
        out[f'{name}_params'] = int(info['params'])
        out[f'{name}_flops'] = int(info['flops'])

    def run(model):
        def fn():
            with torch.inference_mode():
                model.predict({'imgs': imgs}, samples)
        return fn

    times = side_by_side({n: run(m) for n, m in models.items()}, reps)
    out.update(times)
    out['latency_ratio'] = ratio(times['monoasd'], times['baseline'])
    return out


# -------------------------------------------------------------------- train
#: Distiller parts timed by forward hooks: name -> attribute paths.
DISTILLER_PARTS = {
    'teacher_forward': ('teacher', ),
    'student_forward': ('student', ),
    'adapters': ('adapters', ),
    'align': ('aligns', ),
    'select': ('selects_s', 'selects_t'),
    'fusion': ('fusions_s', 'fusions_t'),
    'losses': ('loss_align_select', 'loss_affinity', 'loss_head'),
}


class ForwardTimer:
    """Accumulates the forward time of module groups through hooks.

    Hooks go on the leaves of the module tree that the distiller calls
    (for the detectors their backbone, neck and head, which the distiller
    calls directly rather than through the detector's ``forward``).
    """

    def __init__(self, model, parts: Dict[str, Sequence[str]]):
        self.totals = {name: 0.0 for name in parts}
        self._handles = []
        for name, paths in parts.items():
            for path in paths:
                mod = getattr(model, path, None)
                if mod is None:
                    continue
                targets = [getattr(mod, c) for c in ('backbone', 'neck',
                                                     'bbox_head')
                           if getattr(mod, c, None) is not None] or \
                    (list(mod) if isinstance(mod, torch.nn.ModuleList)
                     else [mod])
                for m in targets:
                    self._hook(m, name)

    def _hook(self, module, name):
        start = {}

        def pre(mod, args):
            start[id(mod)] = time.perf_counter()

        def post(mod, args, output):
            self.totals[name] += time.perf_counter() - start.pop(id(mod))

        self._handles += [module.register_forward_pre_hook(pre),
                          module.register_forward_hook(post)]

    def reset(self):
        for k in self.totals:
            self.totals[k] = 0.0

    def remove(self):
        for h in self._handles:
            h.remove()


def _optim(model):
    from mmengine.optim import OptimWrapper
    params = [p for p in model.parameters() if p.requires_grad]
    return OptimWrapper(torch.optim.AdamW(params, lr=1e-6))


def step_flops(model, batch: dict) -> int:
    """FLOPs of one training step (forward + backward), counted by
    ``torch.utils.flop_counter.FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode
    data = model.data_preprocessor(copy.deepcopy(batch), True)
    with FlopCounterMode(display=False) as counter:
        losses = model.loss(data['inputs'], data['data_samples'])
        sum(v for k, v in losses.items() if 'loss' in k).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def bench_train(student_cfg: Config, distill_cfg: Config, batch: dict,
                reps: int) -> dict:
    """s/iter of the distiller vs the student alone on the same batch."""
    student = build_model(student_cfg).train()
    distiller = build_model(distill_cfg).train()
    # the same models with their weights in channels_last (NHWC) memory
    # format, which the convolutions' outputs then follow
    cl = {name: copy.deepcopy(m).to(memory_format=torch.channels_last)
          for name, m in (('student', student), ('distiller', distiller))}
    opt_s, opt_d = _optim(student), _optim(distiller)
    opt_cl = {name: _optim(m) for name, m in cl.items()}
    timer = ForwardTimer(distiller, DISTILLER_PARTS)
    parts = {k: [] for k in DISTILLER_PARTS}

    def step_student():
        student.train_step(copy.deepcopy(batch), opt_s)

    def step_distiller():
        timer.reset()
        distiller.train_step(copy.deepcopy(batch), opt_d)
        for k, v in timer.totals.items():
            parts[k].append(v)

    def step_cl(name):
        return lambda: cl[name].train_step(copy.deepcopy(batch),
                                           opt_cl[name])

    times = side_by_side(
        dict(student=step_student, distiller=step_distiller,
             student_channels_last=step_cl('student'),
             distiller_channels_last=step_cl('distiller')), reps)
    timer.remove()
    out = dict(times)
    for name in ('student', 'distiller'):
        out[f'{name}_channels_last_speedup'] = ratio(
            times[name], times[f'{name}_channels_last'])
    out['time_ratio'] = ratio(times['distiller'], times['student'])
    # the warm-up step is in ``parts`` too: use the timed repetitions
    out['distiller_parts_median'] = {
        k: statistics.median(v[-reps:]) for k, v in parts.items()}
    out['distiller_parts_median']['backward_step_rest'] = \
        times['distiller']['median'] - sum(
            out['distiller_parts_median'].values())
    out['student_flops'] = step_flops(student, batch)
    out['distiller_flops'] = step_flops(distiller, batch)
    out['flop_ratio'] = out['distiller_flops'] / out['student_flops']
    out['time_vs_flop_ratio'] = out['time_ratio'] / out['flop_ratio']
    return out


# --------------------------------------------------------------------- scan
def bench_scan(levels: Sequence = KITTI_LEVELS, batch: int = 2,
               expand: int = 2, d_state: int = 16, reps: int = 3,
               seed: int = 0) -> List[dict]:
    """Fused and chunked CPU scans vs the sequential scan, forward and
    fwd+bwd: times, the max absolute error of the output and the max error
    of each input gradient relative to that gradient's largest entry (all
    three in float32; the gradients of A, B and C sum over up to 61k
    terms, so their float32 rounding is far above the output's)."""
    from ..models.layers.selective_scan import (selective_scan_fused,
                                                selective_scan_ref,
                                                selective_scan_torch)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for length, channels in levels:
        d = channels * expand
        u = torch.randn(batch, d, length, generator=g)
        delta = torch.randn(batch, d, length, generator=g) * 0.5
        A = -torch.rand(d, d_state, generator=g) - 0.5
        B = torch.randn(batch, d_state, length, generator=g)
        C = torch.randn(batch, d_state, length, generator=g)
        Dv = torch.randn(d, generator=g)
        args = (u, delta, A, B, C, Dv)

        def fwd(fn):
            def run():
                with torch.no_grad():
                    fn(*args, delta_softplus=True)
            return run

        def fwd_bwd(fn):
            def run():
                leaves = [a.detach().requires_grad_() for a in args]
                fn(*leaves, delta_softplus=True).sum().backward()
            return run

        def outputs(fn):
            leaves = [a.detach().requires_grad_() for a in args]
            out = fn(*leaves, delta_softplus=True)
            grads = torch.autograd.grad(out.sum(), leaves)
            return [out.detach()] + list(grads)

        ref = outputs(selective_scan_ref)

        def errors(fn):
            got = outputs(fn)
            out_err = float((got[0] - ref[0]).abs().max())
            grad_err = max(float((a - b).abs().max() / b.abs().max())
                           for a, b in zip(got[1:], ref[1:]))
            return out_err, grad_err

        impls = dict(fused=selective_scan_fused,
                     chunked=selective_scan_torch,
                     sequential=selective_scan_ref)
        f = side_by_side({k: fwd(v) for k, v in impls.items()}, reps)
        fb = side_by_side({k: fwd_bwd(v) for k, v in impls.items()}, reps)
        row = dict(L=length, D=d, N=d_state, batch=batch, forward=f,
                   forward_backward=fb)
        for name in ('fused', 'chunked'):
            row[f'{name}_max_abs_err'], row[f'{name}_grad_rel_err'] = \
                errors(impls[name])
            row[f'{name}_speedup_forward'] = ratio(f['sequential'], f[name])
            row[f'{name}_speedup_forward_backward'] = ratio(
                fb['sequential'], fb[name])
        row['max_abs_err'] = max(row['fused_max_abs_err'],
                                 row['chunked_max_abs_err'])
        rows.append(row)
    return rows


# --------------------------------------------------------------------- data
def bench_data(cfg: Config, workers: Sequence[int], batches: int,
               batch_size: int) -> List[dict]:
    """Samples/s of the training pipeline with and without the depth map.
    """
    from mmengine.runner import Runner
    rows = []
    for n in workers:
        rates = {}
        for name, depth in (('with_depth', True), ('image_only', False)):
            loader_cfg = copy.deepcopy(cfg.train_dataloader)
            loader_cfg.update(num_workers=n, persistent_workers=False,
                              batch_size=batch_size)
            if not depth:
                loader_cfg.dataset.pipeline = without_depth(
                    loader_cfg.dataset.pipeline)
            loader = Runner.build_dataloader(loader_cfg, seed=0)
            it = iter(loader)
            next(it)  # worker start-up is not throughput
            t0, seen = time.perf_counter(), 0
            for _ in range(batches):
                try:
                    data = next(it)
                except StopIteration:
                    it = iter(loader)
                    data = next(it)
                seen += len(data['data_samples'])
            rates[name] = seen / (time.perf_counter() - t0)
        rows.append(dict(workers=n, **rates,
                         ratio=rates['with_depth'] / rates['image_only']))
    return rows


def bench_transforms(cfg: Config, frames: int) -> Dict[str, float]:
    """Milliseconds per frame of each training transform, one process
    (where the pipeline's time goes, e.g. the depth PNG against the image).
    """
    from mmdet3d.registry import DATASETS, TRANSFORMS
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    pipeline = ds_cfg.pop('pipeline')
    dataset = DATASETS.build(dict(ds_cfg, pipeline=[]))
    transforms = [TRANSFORMS.build(t) for t in pipeline]
    totals = {type(t).__name__: 0.0 for t in transforms}
    np.random.seed(0)
    for i in range(frames):
        results = dataset.get_data_info(i % len(dataset))
        for t in transforms:
            start = time.perf_counter()
            results = t(results)
            totals[type(t).__name__] += time.perf_counter() - start
            if results is None:  # a transform dropped the frame
                break
    return {k: 1e3 * v / frames for k, v in totals.items()}


# --------------------------------------------------------------------- eval
def bench_eval(cfg: Config, num_frames: int, seed: int = 0) -> dict:
    """KittiMetric on ``num_frames`` frames replicated from the val split.

    Predictions are the ground truth with noise (0.3 m in position, 5 % in
    size, 0.1 rad in yaw, 2 px in the 2D box); the time spent in the
    rotated-IoU routine is measured by wrapping it.
    """
    import importlib

    from mmengine.fileio import dump, load

    from mmdet3d.registry import METRICS
    from mmdet3d.structures import CameraInstance3DBoxes

    from ..evaluation.kitti_cpu_iou import ROTATE_IOU_MODULE
    rng = np.random.default_rng(seed)
    ann = load(cfg.val_evaluator.ann_file)
    classes = tuple(cfg.val_dataloader.dataset.get('metainfo', {}).get(
        'classes', ('Car', )))
    id2name = {v: k for k, v in ann['metainfo']['categories'].items()}
    infos = [i for i in ann['data_list'] if i.get('instances')]
    if not infos:
        raise ValueError(f'{cfg.val_evaluator.ann_file} has no annotated '
                         'frame to replicate')
    data_list, results = [], []
    for k in range(num_frames):
        info = copy.deepcopy(infos[k % len(infos)])
        info['sample_idx'] = k
        data_list.append(info)
        boxes, boxes2d, labels = [], [], []
        for inst in info['instances']:
            name = id2name.get(inst['bbox_label_3d'])
            if name not in classes:
                continue
            labels.append(classes.index(name))
            b = np.array(inst['bbox_3d'], dtype=np.float32)
            b[:3] += rng.normal(0, 0.3, 3)
            b[3:6] *= 1 + rng.normal(0, 0.05, 3)
            b[6] += rng.normal(0, 0.1)
            boxes.append(b)
            boxes2d.append(np.array(inst['bbox']) + rng.normal(0, 2, 4))
        n = len(boxes)
        scores = torch.from_numpy(rng.uniform(0.3, 1, n).astype(np.float32))
        labels = torch.tensor(labels, dtype=torch.long)
        boxes = np.stack(boxes) if n else np.zeros((0, 7), np.float32)
        boxes2d = np.stack(boxes2d) if n else np.zeros((0, 4))
        results.append(dict(
            sample_idx=k,
            pred_instances_3d=dict(
                bboxes_3d=CameraInstance3DBoxes(
                    torch.from_numpy(boxes), box_dim=7,
                    origin=(0.5, 1.0, 0.5)),
                scores_3d=scores, labels_3d=labels),
            pred_instances=dict(
                bboxes=torch.from_numpy(boxes2d).float(),
                scores=scores, labels=labels)))
    with tempfile.TemporaryDirectory() as tmp:
        ann_file = f'{tmp}/infos.pkl'
        dump(dict(metainfo=ann['metainfo'], data_list=data_list), ann_file)
        metric = METRICS.build(dict(copy.deepcopy(cfg.val_evaluator),
                                    ann_file=ann_file))
        metric.dataset_meta = dict(classes=classes)
        module = importlib.import_module(ROTATE_IOU_MODULE)
        real = module.rotate_iou_gpu_eval
        iou_time = [0.0]

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                iou_time[0] += time.perf_counter() - t0

        module.rotate_iou_gpu_eval = timed
        try:
            t0 = time.perf_counter()
            metrics = metric.compute_metrics(results)
            total = time.perf_counter() - t0
        finally:
            module.rotate_iou_gpu_eval = real
    moderate = [v for k, v in metrics.items()
                if k.endswith('3D_AP40_moderate_strict')]
    return dict(frames=num_frames, seconds=total, iou_seconds=iou_time[0],
                iou_vs_rest=iou_time[0] / max(total - iou_time[0], 1e-9),
                ap3d_moderate_strict=moderate[0] if moderate else None)


# ------------------------------------------------------------------- memory
def _rss_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise KeyError(field)


def _peak_rss_child(config_path, data_root, batch_size, queue):
    import monoasd  # noqa: F401
    cfg = load_config(config_path, data_root)
    model = build_model(cfg).train()
    batch = train_batch(cfg, batch_size)
    optim = _optim(model)
    model.train_step(copy.deepcopy(batch), optim)  # optimizer state exists
    before = _rss_kib('VmRSS')
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the peak (VmHWM) to the current RSS
    model.train_step(batch, optim)
    queue.put((before, _rss_kib('VmHWM')))


def bench_memory(configs: Dict[str, str], data_root: Optional[str],
                 batch_size: int) -> Dict[str, dict]:
    """Peak resident memory (MiB) of a training step, each model in a
    fresh process: the second step's peak (``VmHWM`` after resetting it
    through ``/proc/self/clear_refs``; Linux only), and the resident memory
    before it (model, batch, optimizer state)."""
    out = {}
    ctx = mp.get_context('spawn')
    scale = 1 / 1024
    for name, path in configs.items():
        queue = ctx.Queue()
        proc = ctx.Process(target=_peak_rss_child,
                           args=(path, data_root, batch_size, queue))
        proc.start()
        base, peak = queue.get(timeout=1800)
        proc.join()
        out[name] = dict(before_step_mib=base * scale,
                         peak_mib=peak * scale)
    return out


def fmt(x: float, digits: int = 3) -> str:
    """Compact number formatting for the printed tables."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return '-'
    return f'{x:.{digits}f}'


def fmt_spread(t: Dict[str, float], digits: int = 3) -> str:
    """``median [best, worst]`` of one :func:`side_by_side` entry."""
    return (f'{fmt(t["median"], digits)} [{fmt(t["best"], digits)}, '
            f'{fmt(t["worst"], digits)}]')


#: Student and distiller configs of each profile (configs/monoasd/).
PROFILES = {
    'tiny': ('did-m3d_dla34_tiny_mini-kitti-car_student.py',
             'monoasd_dla34_tiny_mini-kitti-car.py'),
    'tiny-half': ('did-m3d_dla34-half_tiny_mini-kitti-car_student.py',
                  'monoasd_dla34-half_tiny_mini-kitti-car.py'),
    'kitti': ('did-m3d_dla34_1xb16-150e_kitti-mono3d-car_student.py',
              'monoasd_dla34_1xb16-150e_kitti-mono3d-car.py'),
}
SECTIONS = ('inference', 'train', 'data', 'memory', 'scan', 'eval')


def run_benchmark(config_dir: str, data_root: str,
                  profiles: Sequence[str] = ('tiny', 'kitti'),
                  sections: Sequence[str] = SECTIONS, reps: int = 5,
                  batch_size: Optional[Dict[str, int]] = None,
                  scan_levels: Sequence = KITTI_LEVELS,
                  eval_frames: int = 3769, data_batches: int = 20,
                  data_workers: Sequence[int] = (0, 1, 2),
                  log: Callable[[str], None] = print) -> dict:
    """Run the chosen sections; see the module docstring.

    Args:
        config_dir (str): Folder of the configs in :data:`PROFILES`.
        data_root (str): KITTI-format root with info files (e.g. the main
            job's synthetic ``data/mini_kitti``); the ``kitti`` profile
            runs its 384x1280 pipeline on it.
        profiles, sections: What to run.
        reps (int): Timed repetitions per measurement (plus one warm-up).
        batch_size (dict, optional): Per profile; defaults: tiny 4, kitti 1.
        scan_levels: (L, C) pairs of the scan section.
        eval_frames (int): Frames of the evaluation section (KITTI val has
            3769).
    """
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet3d')
    batch_size = dict({'tiny': 4, 'tiny-half': 4, 'kitti': 1},
                      **(batch_size or {}))
    res = dict(torch_threads=torch.get_num_threads(), reps=reps,
               machine=machine_info(), profiles={})
    for prof in profiles:
        s_path, d_path = (f'{config_dir}/{n}' for n in PROFILES[prof])
        s_cfg = load_config(s_path, data_root)
        d_cfg = load_config(d_path, data_root)
        bs = batch_size[prof]
        sec = res['profiles'][prof] = dict(batch_size=bs)
        batch = train_batch(s_cfg, bs) if {'inference', 'train'} & set(
            sections) else None
        if 'inference' in sections:
            log(f'[{prof}] inference')
            sec['inference'] = bench_inference(s_cfg, batch, reps)
        if 'train' in sections:
            log(f'[{prof}] training step')
            sec['train'] = bench_train(s_cfg, d_cfg, batch, reps)
        if 'data' in sections:
            log(f'[{prof}] data pipeline')
            sec['data'] = bench_data(s_cfg, data_workers, data_batches, bs)
            sec['transforms_ms'] = bench_transforms(
                s_cfg, data_batches * bs)
        if 'memory' in sections:
            log(f'[{prof}] memory')
            sec['memory'] = bench_memory(dict(student=s_path,
                                              distiller=d_path),
                                         data_root, bs)
    if 'scan' in sections:
        log('selective scan')
        res['scan'] = bench_scan(scan_levels, reps=max(1, min(reps, 3)))
    if 'eval' in sections:
        log('evaluation')
        cfg = load_config(f'{config_dir}/{PROFILES["tiny"][0]}', data_root)
        res['eval'] = bench_eval(cfg, eval_frames)
    return res


# ------------------------------------------------------------------ report
def format_report(res: dict) -> str:
    """Markdown tables of :func:`run_benchmark`'s results."""
    lines = []
    if res.get('machine'):
        lines += [f'Machine: {machine_line(res["machine"])}; torch threads '
                  f'{res.get("torch_threads", "?")}.', '']
    for prof, sec in res.get('profiles', {}).items():
        inf = sec.get('inference')
        if inf:
            h, w = inf['input_hw']
            lines += [f'### Inference, {prof} ({h}x{w}, batch 1)', '',
                      '| model | params | FLOPs (G) | latency ms, median '
                      '[best, worst] |', '|---|---|---|---|']
            for name in ('baseline', 'monoasd'):
                t = inf[name]
                lines.append(
                    f'| {name} | {inf[name + "_params"]:,} | '
                    f'{inf[name + "_flops"] / 1e9:.2f} | '
                    f'{t["median"] * 1e3:.1f} [{t["best"] * 1e3:.1f}, '
                    f'{t["worst"] * 1e3:.1f}] |')
            lines += ['', f'latency ratio MonoASD / baseline: '
                      f'{inf["latency_ratio"]:.3f}', '']
        tr = sec.get('train')
        if tr:
            lines += [f'### Training step, {prof}', '',
                      '| model | s/iter median [best, worst] | FLOPs/step '
                      '(G, fwd+bwd) |', '|---|---|---|']
            for name in ('student', 'distiller'):
                t = tr[name]
                lines.append(
                    f'| {name} | {fmt(t["median"])} [{fmt(t["best"])}, '
                    f'{fmt(t["worst"])}] | '
                    f'{tr[name + "_flops"] / 1e9:.1f} |')
            lines += ['', f'time ratio {tr["time_ratio"]:.2f}, FLOP ratio '
                      f'{tr["flop_ratio"]:.2f}, time/FLOP ratio '
                      f'{tr["time_vs_flop_ratio"]:.2f}', '',
                      '| distiller part (forward) | s |', '|---|---|']
            for k, v in tr['distiller_parts_median'].items():
                lines.append(f'| {k} | {fmt(v)} |')
            lines += ['', '| model | s/iter, channels_last weights | '
                      'speed-up |', '|---|---|---|']
            for name in ('student', 'distiller'):
                t = tr[f'{name}_channels_last']
                lines.append(
                    f'| {name} | {fmt(t["median"])} [{fmt(t["best"])}, '
                    f'{fmt(t["worst"])}] | '
                    f'{tr[name + "_channels_last_speedup"]:.3f} |')
            lines.append('')
        data = sec.get('data')
        if data:
            lines += [f'### Data pipeline, {prof}', '',
                      '| workers | samples/s with depth | image only | '
                      'ratio |', '|---|---|---|---|']
            for r in data:
                lines.append(f'| {r["workers"]} | {r["with_depth"]:.1f} | '
                             f'{r["image_only"]:.1f} | {r["ratio"]:.2f} |')
            lines.append('')
        tms = sec.get('transforms_ms')
        if tms:
            lines += [f'### Training transforms, {prof} (ms per frame, one '
                      'process)', '', '| transform | ms |', '|---|---|']
            lines += [f'| {k} | {v:.2f} |' for k, v in tms.items()]
            lines.append('')
        mem = sec.get('memory')
        if mem:
            lines += [f'### Peak memory of a training step, {prof}', '',
                      '| model | peak RSS MiB | before the step |',
                      '|---|---|---|']
            for name, m in mem.items():
                lines.append(f'| {name} | {m["peak_mib"]:.0f} | '
                             f'{m["before_step_mib"]:.0f} |')
            lines.append('')
    scan = res.get('scan')
    if scan:
        lines += ['### Selective scan (CPU)', '',
                  'Seconds, median [best, worst]; speed-up over the '
                  'sequential scan. Errors against the sequential scan: '
                  'max absolute error of the output, and max error of the '
                  'input gradients relative to their largest entry.', '',
                  '| L | D | pass | fused s | chunked s | sequential s | '
                  'fused speed-up | chunked speed-up |',
                  '|---|---|---|---|---|---|---|---|']
        for r in scan:
            for label, key, sp in (('fwd', 'forward', 'speedup_forward'),
                                   ('fwd+bwd', 'forward_backward',
                                    'speedup_forward_backward')):
                t = r[key]
                lines.append(
                    f'| {r["L"]} | {r["D"]} | {label} | '
                    f'{fmt_spread(t["fused"])} | '
                    f'{fmt_spread(t["chunked"])} | '
                    f'{fmt_spread(t["sequential"])} | '
                    f'{r["fused_" + sp]:.1f}x | {r["chunked_" + sp]:.1f}x |')
        lines.append('')
        lines.append('output error, fused / chunked: ' + ', '.join(
            f'L={r["L"]}: {r["fused_max_abs_err"]:.1e} / '
            f'{r["chunked_max_abs_err"]:.1e}' for r in scan))
        lines.append('')
        lines.append('gradient error (relative), fused / chunked: ' +
                     ', '.join(f'L={r["L"]}: {r["fused_grad_rel_err"]:.1e} '
                               f'/ {r["chunked_grad_rel_err"]:.1e}'
                               for r in scan))
        lines.append('')
    ev = res.get('eval')
    if ev:
        lines += ['### KittiMetric (CPU)', '',
                  f'{ev["frames"]} frames: {ev["seconds"]:.1f} s, of which '
                  f'rotated IoU {ev["iou_seconds"]:.1f} s (IoU / rest = '
                  f'{ev["iou_vs_rest"]:.2f})', '']
    return '\n'.join(lines)
