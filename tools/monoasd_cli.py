# Copyright (c) MonoASD contributors. All rights reserved.
"""Command-line pieces shared by ``tools/train.py`` and ``tools/test.py``."""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options``, ``--launcher`` and ``--local-rank``."""
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse and export ``LOCAL_RANK`` for torch.distributed launchers."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_cfg(args) -> Config:
    """Config with launcher, ``--cfg-options`` and the work dir applied."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if cfg.launcher != 'none':
        use_gloo_without_cuda(cfg)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def use_gloo_without_cuda(cfg: Config) -> None:
    """Distributed runs on a machine without CUDA: gloo, CPU DDP.

    The config's backend (nccl needs GPUs) becomes gloo, DDP gets
    ``device_ids=None`` (a CPU module), and for ``--launcher pytorch`` the
    process group is created here from torchrun's environment, because
    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` first (the
    Runner keeps an existing group).
    """
    import torch
    import torch.distributed as dist
    from mmengine.logging import print_log
    if torch.cuda.is_available():
        return
    dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    if dist_cfg.get('backend') != 'gloo':
        print_log(f'no CUDA device: distributed backend '
                  f'{dist_cfg.get("backend")!r} -> \'gloo\'', 'current')
        dist_cfg['backend'] = 'gloo'
    wrapper = dict(cfg.get('model_wrapper_cfg') or
                   dict(type='MMDistributedDataParallel'))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    if cfg.launcher == 'pytorch' and not dist.is_initialized():
        kwargs = {k: v for k, v in dist_cfg.items() if k != 'backend'}
        dist.init_process_group(
            'gloo', rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']), **kwargs)
    elif cfg.launcher != 'pytorch':
        raise RuntimeError(
            f'--launcher {cfg.launcher} without a CUDA device is not '
            'supported (mmengine selects a GPU first); use '
            'tools/dist_train.sh (torchrun, --launcher pytorch) on CPUs')


def finish_distributed() -> None:
    """Wait for every rank, then close the process group (a gloo group
    left open can abort the process at exit)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def build_runner(cfg: Config) -> Runner:
    """mmengine's Runner, or the one the config names."""
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg \
        else RUNNERS.build(cfg)
