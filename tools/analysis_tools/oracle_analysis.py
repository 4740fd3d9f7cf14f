# Copyright (c) MonoASD contributors. All rights reserved.
"""Which head output limits a DID-M3D model's AP (oracle analysis).

    python tools/analysis_tools/oracle_analysis.py CONFIG [CHECKPOINT] \
        [--ann-file kitti_infos_val.pkl] [--modes model depth all perfect]

Evaluates the model, then the model with one output group (depth, size_3d,
offset_3d, heading, or all) replaced by its target at each detection next
to an object, or several joined by ``+`` (``size_3d+offset_3d+heading``:
all but depth), and ``perfect`` (every output from the targets: the ceiling
of encoding, decoding and the metric). Prints Car AP|R40 moderate per mode
(``monoasd.evaluation.oracle``; README, "Tests").
"""
import argparse
import json

from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

KEYS = ('3D_AP40_moderate_strict', '3D_AP40_moderate_loose',
        'BEV_AP40_moderate_loose', '2D_AP40_moderate_strict')


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument('--ann-file', help='info file of data_root to use '
                        "(default: the config's train split)")
    parser.add_argument('--modes', nargs='+', default=[
        'model', 'depth', 'size_3d', 'offset_3d', 'heading', 'all',
        'perfect'])
    parser.add_argument('--class-name', default='Car')
    parser.add_argument('--out', help='write all metrics as JSON')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    import monoasd  # noqa: F401
    from monoasd.evaluation import oracle_from_config
    init_default_scope('mmdet3d')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    modes = args.modes if args.checkpoint else ['perfect']
    res = oracle_from_config(cfg, args.checkpoint, args.ann_file, modes)
    prefix = f'Kitti metric/pred_instances_3d/KITTI/{args.class_name}_'
    width = max(10, *(len(m) for m in res))
    print(f'{"mode":{width}s} ' + ' '.join(f'{k:>24s}' for k in KEYS))
    for mode, metrics in res.items():
        print(f'{mode:{width}s} ' + ' '.join(
            f'{metrics.get(prefix + k, float("nan")):24.2f}' for k in KEYS))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == '__main__':
    main()
