# Copyright (c) MonoASD contributors. All rights reserved.
"""Evaluate a checkpoint: ``python tools/test.py CONFIG CHECKPOINT``.

``--format-only --submission-prefix DIR`` writes one KITTI result txt per
test image (KittiMetric's test-server format) instead of computing APs.
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a 3D detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='folder for the evaluation logs')
    parser.add_argument('--format-only', action='store_true',
                        help='only write KITTI result files')
    parser.add_argument('--submission-prefix',
                        help='folder of the KITTI result files')
    parser.add_argument('--show-dir',
                        help='save drawn predictions into this folder')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_cfg(args) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
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


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg \
        else RUNNERS.build(cfg)
    return runner.test()


if __name__ == '__main__':
    main()
