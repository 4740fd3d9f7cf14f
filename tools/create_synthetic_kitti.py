#!/usr/bin/env python
"""Generate a small synthetic dataset in the KITTI 3D object layout.

Procedural street scenes (Car, Pedestrian, Cyclist on a ground plane), ray
cast into the RGB image, dense depth, labels with truncation/occlusion and
a 64-beam LiDAR scan; the library is :mod:`monoasd.synthetic.generator`.

Example::

    python tools/create_synthetic_kitti.py --out data/mini_kitti \\
        --num-train 40 --num-val 20 --num-test 8 --seed 0
"""
import argparse
import os
import sys
from typing import Optional, Sequence, Tuple

from monoasd.synthetic.generator import (CLASS_NAMES, KITTI_HEIGHT,
                                         KITTI_WIDTH, YAW_MODES,
                                         depth_crop_size, write_dataset)


def parse_size(text: str) -> Tuple[int, int]:
    """Parse ``WxH`` into (w, h)."""
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError('expected WxH, got %r' % text)
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError('size must be positive')
    return w, h


def build_parser() -> argparse.ArgumentParser:
    """Command line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True, help='dataset root to write')
    parser.add_argument('--num-train', type=int, default=40)
    parser.add_argument('--num-val', type=int, default=20)
    parser.add_argument('--num-test', type=int, default=8)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--width', type=int, default=KITTI_WIDTH)
    parser.add_argument('--height', type=int, default=KITTI_HEIGHT)
    parser.add_argument('--workers', type=int,
                        default=min(2, os.cpu_count() or 1))
    parser.add_argument('--no-dense-depth', action='store_true',
                        help='do not write training/depth_dense')
    parser.add_argument('--depth-crop', nargs='?', const='auto',
                        default=None, metavar='WxH',
                        help='write crop-sized depth maps (bottom-anchored, '
                        'horizontally centred); without a value the KITTI '
                        'depth-completion crop 1216x352 scaled to the image')
    parser.add_argument('--yaw', choices=YAW_MODES, default='uniform',
                        help='object yaw: uniform in [-pi, pi), or "road": '
                        '80%% of cars and cyclists along the road')
    parser.add_argument('--overwrite', action='store_true',
                        help='overwrite frames of an existing dataset '
                        '(frames beyond the new counts are left in place)')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    depth_crop = None
    if args.depth_crop == 'auto':
        depth_crop = depth_crop_size(args.width, args.height)
    elif args.depth_crop is not None:
        depth_crop = parse_size(args.depth_crop)
    try:
        res = write_dataset(
            args.out, args.num_train, args.num_val, args.num_test,
            args.seed, args.width, args.height, args.workers,
            dense_depth=not args.no_dense_depth, depth_crop=depth_crop,
            overwrite=args.overwrite, yaw=args.yaw)
    except ValueError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    except FileExistsError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    n_train, n_val = len(res['train_ids']), len(res['val_ids'])
    n_frames = n_train + n_val + len(res['test_ids'])
    print('wrote %d training (%d train / %d val) and %d testing frames to %s '
          'in %.1f s (%.2f s/frame with %d workers)'
          % (n_train + n_val, n_train, n_val, len(res['test_ids']), args.out,
             res['seconds'], res['seconds'] / max(n_frames, 1),
             args.workers))
    labelled = ', '.join('%s: %d' % (c, res['counts'].get(c, 0))
                         for c in CLASS_NAMES + ('DontCare', ))
    print('labelled objects (training): %s' % labelled)
    return 0


if __name__ == '__main__':
    sys.exit(main())
