# Copyright (c) MonoASD contributors. All rights reserved.
"""Create mmdet3d v2 KITTI info files for monocular 3D detection
(``monoasd.datasets.kitti_infos``: mmdet3d's converters plus the fields
MonoASD needs).

Example::

    python tools/create_data.py kitti --root-path data/kitti
"""
import argparse

from monoasd.datasets.kitti_infos import create_kitti_infos


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Create KITTI info files')
    parser.add_argument('dataset', choices=['kitti'], help='dataset name')
    parser.add_argument('--root-path', default='data/kitti',
                        help='KITTI root folder')
    parser.add_argument('--out-dir', default=None,
                        help='output folder (default: root path)')
    parser.add_argument('--extra-tag', default='kitti',
                        help='info file prefix')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    summary = create_kitti_infos(args.root_path, args.out_dir, args.extra_tag)
    for split, (path, n_frames, n_ins) in summary.items():
        print(f'{split:9s} {n_frames:6d} frames {n_ins:7d} camera instances'
              f' -> {path}')


if __name__ == '__main__':
    main()
