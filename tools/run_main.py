# Copyright (c) MonoASD contributors. All rights reserved.
"""The MonoASD main job: teacher, baseline, control and MonoASD, evaluated
and reported (stages in ``monoasd.apis.workflow``; ``docs/protocol.md``).

Every stage skips what is already done; ``--stages`` picks a subset.

Examples::

    python tools/run_main.py                        # synthetic mini-KITTI
    # (profile tiny-half: half-width DLA-34, work_dirs/mini_kitti_half)
    python tools/run_main.py --seeds 3              # 3 student-side seeds
    python tools/run_main.py --ablation             # one KD term off each
    python tools/run_main.py --data-root data/kitti --profile kitti
    # full-width DLA-34, a third of the iterations (work_dirs/mini_kitti)
    python tools/run_main.py --profile tiny
    # control and MonoASD fine-tuned at the baseline's final rate
    python tools/run_main.py --finetune-options \\
        optim_wrapper.optimizer.lr=5e-5 param_scheduler.0.gamma=1.0
    # MonoASD at the reference's distillation weights (tiny-half's are a
    # quarter of them; the control, which has none, is the same run)
    python tools/run_main.py --distill-options \\
        model.loss_align_select.loss_weight=10.0 \\
        model.loss_affinity.loss_weight=1.0 model.loss_head.loss_weight=1.0
    # the trained models evaluated on another KITTI-format copy
    python tools/run_main.py --stages eval,report --data-root data/other \\
        --eval-dir work_dirs/mini_kitti_on_other --results results_other
"""
import argparse
import os.path as osp

from monoasd.apis import workflow

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data-root', default='data/mini_kitti')
    p.add_argument('--work-dir', default=None,
                   help='default: work_dirs/mini_kitti_half for the '
                   'default profile tiny-half, work_dirs/mini_kitti for the '
                   'others')
    p.add_argument('--results', default=None,
                   help='default: results/tiny-half for the default profile '
                   'tiny-half, results for the others')
    p.add_argument('--eval-dir', default=None,
                   help='where the eval stage writes each model\'s '
                   'test_metrics.json and the report reads them (default: '
                   '--work-dir). With --stages eval,report and --data-root '
                   'another KITTI-format copy, it evaluates the trained '
                   'models of --work-dir on that copy\'s val split')
    p.add_argument('--profile', choices=sorted(workflow.PROFILES),
                   default=workflow.DEFAULT_PROFILE,
                   help='configs of the four trainings (workflow.PROFILES; '
                   'default %(default)s: half-width DLA-34, '
                   'docs/profile_search.md "Tenth round")')
    p.add_argument('--stages', default=','.join(workflow.STAGES),
                   help='comma-separated subset of '
                   f'{",".join(workflow.STAGES)}')
    p.add_argument('--num-train', type=int, default=workflow.NUM_TRAIN)
    p.add_argument('--num-val', type=int, default=workflow.NUM_VAL)
    p.add_argument('--num-test', type=int, default=8)
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the synthetic data')
    p.add_argument('--yaw', choices=('uniform', 'road'), default=workflow.YAW,
                   help='yaw of the synthetic objects (tools/'
                   'create_synthetic_kitti.py --yaw)')
    p.add_argument('--seeds', type=int, default=1,
                   help='training seeds 0..N-1 of the student-side stages '
                   '(baseline, control, MonoASD); the report gives the '
                   'median and spread')
    p.add_argument('--ablation', action='store_true',
                   help='also distil with each KD term off (seed 0)')
    p.add_argument('--ablation-seeds', type=int, default=1,
                   help='with --ablation: run the ablation for training '
                   'seeds 0..N-1 (N <= --seeds); the report gives the '
                   'median and spread of each variant and its paired '
                   'difference from the full distillation')
    p.add_argument('--jobs', type=int, default=None,
                   help='trainings run side by side where they do not '
                   'depend on each other (teacher with baseline, control '
                   'with MonoASD), each with cpu_count // jobs threads; '
                   'default 2 for the tiny profiles on a CPU-only machine '
                   'with 2+ cores, else 1')
    p.add_argument('--finetune-options', nargs='+', default=[],
                   metavar='KEY=VALUE',
                   help='config options given to every control and MonoASD '
                   'training alike (the same --cfg-options for both, so the '
                   'comparison stays at equal training), e.g. '
                   'optim_wrapper.optimizer.lr=5e-5 '
                   'param_scheduler.0.gamma=1.0; the report lists them')
    p.add_argument('--distill-options', nargs='+', default=[],
                   metavar='KEY=VALUE',
                   help='config options of the distillation itself, given '
                   'to every MonoASD training and not to the control, '
                   'which has no distillation terms (its run and the '
                   'comparison stay the same), e.g. '
                   'model.loss_align_select.loss_weight=2.5; an ablation '
                   'run\'s own option wins; the report lists them')
    p.add_argument('--epochs', type=int, default=None,
                   help='override max_epochs of every training stage')
    p.add_argument('--num-pictures', type=int, default=4,
                   help='val frames drawn for every model')
    p.add_argument('--benchmark-images', type=int, default=20,
                   help='images timed for inference ms/image')
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error('--seeds must be >= 1')
    if not 1 <= args.ablation_seeds <= args.seeds:
        p.error(f'--ablation-seeds must be between 1 and --seeds '
                f'({args.seeds}): each ablation run starts from the '
                'baseline of its seed')
    dirs = workflow.PROFILE_DIRS.get(args.profile, workflow.DEFAULT_DIRS)
    for key in ('work_dir', 'results'):
        if getattr(args, key) is None:
            setattr(args, key, dirs[key])
    if args.jobs is None:
        args.jobs = workflow.default_jobs(args.profile)
    if args.jobs < 1:
        p.error('--jobs must be >= 1')
    for flag in ('finetune_options', 'distill_options'):
        bad = [o for o in getattr(args, flag) if '=' not in o]
        if bad:
            p.error(f'--{flag.replace("_", "-")} takes KEY=VALUE pairs, '
                    f'not {bad}')
    args.seed_list = list(range(args.seeds))
    args.root = ROOT
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    stages = [s.strip() for s in args.stages.split(',') if s.strip()]
    workflow.run_stages(args, stages)


if __name__ == '__main__':
    main()
