#!/usr/bin/env python
"""Build dense depth maps for KITTI frames from their LiDAR scans.

LiDAR points projected into ``image_2`` and completed IP-Basic style
(:mod:`monoasd.datasets.depth_completion`), written as uint16 PNGs of
metres x 256 with the image's size.

Example::

    python tools/dense_depth.py --root data/mini_kitti/training --workers 2
"""
import argparse
import os
import sys
from typing import Optional, Sequence

from monoasd.datasets.depth_completion import (DEFAULT_MAX_DEPTH,
                                               DEFAULT_MIN_POINTS,
                                               complete_split)


def build_parser() -> argparse.ArgumentParser:
    """Command line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--root', required=True,
                        help='KITTI split dir with image_2, calib, velodyne')
    parser.add_argument('--out-dir', default=None,
                        help='output dir (default: ROOT/depth_dense)')
    parser.add_argument('--workers', type=int,
                        default=min(2, os.cpu_count() or 1))
    parser.add_argument('--overwrite', action='store_true',
                        help='rewrite existing outputs')
    parser.add_argument('--max-depth', type=float, default=DEFAULT_MAX_DEPTH,
                        help='clip depth to this many metres')
    parser.add_argument('--min-points', type=int, default=DEFAULT_MIN_POINTS,
                        help='skip (and report) frames with fewer LiDAR '
                        'points in the image')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point: 0 when every frame was written or
    skipped, 1 when any failed or was too sparse, 2 for bad arguments."""
    args = build_parser().parse_args(argv)
    try:
        res = complete_split(args.root, args.out_dir, args.workers,
                             args.overwrite, args.max_depth,
                             args.min_points)
    except ValueError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    counts, no_image = res['counts'], res['no_image']
    for message in res['failures']:
        print('failed: %s' % message, file=sys.stderr)
    rate = ''
    if counts['written']:
        rate = ', %.3f s per written frame' % (res['seconds'] /
                                               counts['written'])
    if no_image:
        print('warning: %d velodyne scan(s) have no image_2 file and get no '
              'depth map: %s' % (len(no_image), ', '.join(no_image[:20])),
              file=sys.stderr)
    print('dense depth -> %s: %d written, %d skipped, %d failed, %d too '
          'sparse, %d without image (%.1f s%s)'
          % (res['out_dir'], counts['written'], counts['skipped'],
             counts['failed'], counts['sparse'], len(no_image),
             res['seconds'], rate))
    return 1 if res['failures'] else 0


if __name__ == '__main__':
    sys.exit(main())
