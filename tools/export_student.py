# Copyright (c) MonoASD contributors. All rights reserved.
"""Write the student of a distiller checkpoint as a plain student checkpoint.

``python tools/export_student.py DISTILL_CKPT OUT.pth`` keeps the
``student.`` weights (prefix removed), so OUT.pth loads into the plain
student config (``tools/test.py STUDENT_CONFIG OUT.pth``) and runs with zero
extra inference cost: no teacher, adapter, align, select or fusion weights.
"""
import argparse
import os.path as osp

from mmengine.runner.checkpoint import _load_checkpoint

PREFIX = 'student.'


def export_student(src: str, dst: str) -> int:
    """Export; returns the number of tensors written."""
    from monoasd.utils import save_checkpoint_atomic  # safe loading too
    ckpt = _load_checkpoint(src, map_location='cpu')
    state = ckpt.get('state_dict', ckpt)
    student = {k[len(PREFIX):]: v for k, v in state.items()
               if k.startswith(PREFIX)}
    if not student:
        raise KeyError(f'{src} has no "{PREFIX}*" weights: not a '
                       'distiller checkpoint')
    meta = dict(ckpt.get('meta', {}))
    meta['exported_from'] = osp.abspath(src)
    meta['input_key'] = 'imgs'  # the deployed student reads RGB
    save_checkpoint_atomic(dict(state_dict=student, meta=meta), dst)
    return len(student)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', help='distiller checkpoint')
    parser.add_argument('out', help='student-only checkpoint to write')
    args = parser.parse_args(argv)
    n = export_student(args.checkpoint, args.out)
    print(f'wrote {n} student tensors to {args.out}')


if __name__ == '__main__':
    main()
