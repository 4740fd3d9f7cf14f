# Copyright (c) MonoASD contributors. All rights reserved.
"""What distillation costs, measured side by side on this machine.

    python tools/analysis_tools/benchmark.py --data-root data/mini_kitti \
        [--profiles tiny kitti] [--sections inference train data memory \
        scan eval] [--reps 5] [--out bench.json]

Prints Markdown tables (README, "Benchmarks"); see monoasd.apis.benchmark
for what each section measures. Run it on a quiet machine: absolute CPU
times move with other load, ratios much less.
"""
import argparse
import json
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def main(argv=None) -> dict:
    import monoasd  # noqa: F401
    from monoasd.apis.benchmark import (PROFILES, SECTIONS, format_report,
                                        run_benchmark)
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-root', default='data/mini_kitti')
    parser.add_argument('--config-dir',
                        default=osp.join(ROOT, 'configs', 'monoasd'))
    parser.add_argument('--profiles', nargs='+', default=list(PROFILES),
                        choices=list(PROFILES))
    parser.add_argument('--sections', nargs='+', default=list(SECTIONS),
                        choices=list(SECTIONS))
    parser.add_argument('--reps', type=int, default=5)
    parser.add_argument('--eval-frames', type=int, default=3769)
    parser.add_argument('--data-batches', type=int, default=20)
    parser.add_argument('--data-workers', type=int, nargs='+',
                        default=[0, 1, 2])
    parser.add_argument('--scan-levels', nargs='+', default=None,
                        help='L:C pairs (default: the four levels of '
                        '384x1280)')
    parser.add_argument('--out', help='write the results as JSON')
    args = parser.parse_args(argv)
    kwargs = {}
    if args.scan_levels:
        kwargs['scan_levels'] = [tuple(int(v) for v in p.split(':'))
                                 for p in args.scan_levels]
    res = run_benchmark(args.config_dir, args.data_root, args.profiles,
                        args.sections, args.reps,
                        eval_frames=args.eval_frames,
                        data_batches=args.data_batches,
                        data_workers=args.data_workers, **kwargs)
    print(format_report(res))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == '__main__':
    main()
