# Copyright (c) MonoASD contributors. All rights reserved.
"""Convert a DID-M3D / MonoSKD / MonoASD reference checkpoint.

    python tools/model_converters/convert_did_m3d.py IN.pth OUT.pth \
        --side {student,teacher,distiller,imagenet} [--config CONFIG]

* ``student`` / ``teacher``: a detector checkpoint (DID-M3D's release,
  MonoSKD's ``rgb_pretrain_car_17.77.pth`` / ``depth_pretrain_car_43.81.pth``,
  MonoASD's ``student.pth`` / ``teacher.pth``) or that side of a
  distillation checkpoint (``centernet_rgb.`` / ``centernet_depth.``).
* ``distiller``: a MonoASD distillation checkpoint's student and distiller
  modules, for our ``AlignSelectDistiller`` (``load_from``).
* ``imagenet``: ``dla34-ba72cf86.pth`` renamed for mmdet3d's ``DLANet``.

The target model is built from ``--config`` (defaults: the KITTI Car
student, teacher or MonoASD config); its ``class_names`` choose and order
the heatmap and one-hot channels. Dropped keys, each with its reason, are
printed: ``backbone.fc.*`` (the ImageNet classifier, never run) and
MonoSKD's ``rgb_fs.*`` (not on the path MonoSKD/MonoASD train with).
Anything else that does not fit is an error listing it. The key map and
the options that reproduce the reference's numbers are in
docs/model_converters.md.
"""
import argparse
import os.path as osp
import sys
from collections import Counter

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG_DIR = osp.join(ROOT, 'configs', 'monoasd')
DEFAULT_CONFIGS = {
    'student': 'did-m3d_dla34_1xb16-150e_kitti-mono3d-car_student.py',
    'teacher': 'did-m3d_dla34_1xb16-150e_kitti-mono3d-car_teacher.py',
    'distiller': 'monoasd_dla34_1xb16-150e_kitti-mono3d-car.py',
}


def build_target(side: str, config: str = None):
    """The model the weights are for, built without loading anything."""
    from mmdet3d.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import monoasd  # noqa: F401  (registers the models, safe loading)
    init_default_scope('mmdet3d')
    if side == 'imagenet':
        return MODELS.build(dict(type='DLANet', depth=34, in_channels=3,
                                 norm_cfg=dict(type='BN')))
    cfg = Config.fromfile(config or osp.join(CFG_DIR, DEFAULT_CONFIGS[side]))
    model_cfg = cfg.model
    if side == 'distiller':
        model_cfg.teacher_ckpt = None
        model_cfg.student_ckpt = None
    return MODELS.build(model_cfg)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description='Convert a reference checkpoint for MonoASD')
    parser.add_argument('src', help='reference checkpoint')
    parser.add_argument('dst', help='mmengine checkpoint to write')
    parser.add_argument('--side', required=True,
                        choices=['student', 'teacher', 'distiller',
                                 'imagenet'])
    parser.add_argument('--config', help='config of the target model')
    parser.add_argument('--classes', nargs='+',
                        help="target classes (default: the config's)")
    parser.add_argument('--source-classes', nargs='+',
                        default=['Pedestrian', 'Car', 'Cyclist'],
                        help='classes of SRC in label order (default: the '
                        "reference's)")
    args = parser.parse_args(argv)
    from monoasd.utils import ConversionError, convert_checkpoint_file
    model = build_target(args.side, args.config)
    try:
        info = convert_checkpoint_file(args.src, args.dst, args.side, model,
                                       args.classes, args.source_classes)
    except (ConversionError, FileNotFoundError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    print(f'{args.dst}: {info["mapped"]} tensors converted, '
          f'{info["filled"]} filled from the model (HTL state), '
          f'{len(info["dropped"])} dropped')
    for reason, n in Counter(info['dropped'].values()).items():
        print(f'  dropped {n}: {reason}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
