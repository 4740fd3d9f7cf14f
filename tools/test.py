# Copyright (c) MonoASD contributors. All rights reserved.
"""Evaluate a checkpoint: ``python tools/test.py CONFIG CHECKPOINT``.

``--format-only --submission-prefix DIR`` writes one KITTI result txt per
test image (KittiMetric's test-server format) instead of computing APs.
"""
import argparse
import json
import os.path as osp
import sys
import time

import torch
from mmengine.config import Config
from mmengine.dist import is_main_process

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from monoasd_cli import (add_common_args, build_runner, finish_distributed,  # noqa
                         load_cfg, parse)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a 3D detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='folder for the evaluation logs')
    parser.add_argument('--format-only', action='store_true',
                        help='only write KITTI result files')
    parser.add_argument('--submission-prefix',
                        help='folder of the KITTI result files')
    parser.add_argument('--out-json',
                        help='write the metrics (and timing) to this file')
    parser.add_argument(
        '--benchmark-images', type=int, default=0,
        help='also time inference on this many test images (batch 1)')
    parser.add_argument('--show-dir',
                        help='save drawn predictions into this folder')
    add_common_args(parser)
    return parse(parser, argv)


def build_cfg(args) -> Config:
    cfg = load_cfg(args)
    # loaded strictly in main(): a checkpoint of another config must not be
    # evaluated on partly random weights (mmengine's load_from is lenient)
    cfg.load_from = None
    if args.format_only:
        if not args.submission_prefix:
            raise SystemExit('--format-only needs --submission-prefix DIR')
        cfg.test_evaluator.format_only = True
        cfg.test_evaluator.submission_prefix = args.submission_prefix
    if args.show_dir:
        hooks = cfg.default_hooks
        hooks.visualization.draw = True
        hooks.visualization.test_out_dir = args.show_dir
        hooks.visualization.vis_task = 'mono_det'
    return cfg


def benchmark_inference(runner, num_images: int, warmup: int = 2) -> float:
    """Milliseconds per image of ``model.test_step`` at batch size 1,
    data loading excluded."""
    dataset = runner.test_dataloader.dataset
    collate = runner.test_dataloader.collate_fn
    model = runner.model
    model.eval()
    num_images = min(num_images, len(dataset))
    batches = [collate([dataset[i]]) for i in range(num_images)]
    times = []
    with torch.no_grad():
        for i, batch in enumerate(batches):
            start = time.perf_counter()
            model.test_step(batch)
            if i >= min(warmup, num_images - 1):
                times.append(time.perf_counter() - start)
    return 1000.0 * sum(times) / max(len(times), 1)


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    runner = build_runner(cfg)
    runner.load_checkpoint(args.checkpoint, map_location='cpu', strict=True)
    metrics = runner.test()
    if args.benchmark_images > 0:
        metrics['infer_ms_per_image'] = benchmark_inference(
            runner, args.benchmark_images)
        runner.logger.info('inference: '
                           f'{metrics["infer_ms_per_image"]:.1f} ms/image')
    if args.out_json and is_main_process():
        with open(args.out_json, 'w') as f:
            json.dump({k: float(v) for k, v in metrics.items()}, f, indent=1)
    finish_distributed()
    return metrics


if __name__ == '__main__':
    main()
