# Copyright (c) MonoASD contributors. All rights reserved.
"""Save and restore the random number generators with every checkpoint."""
import random
from typing import Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmdet3d.registry import HOOKS


def get_rng_state() -> dict:
    """This process's Python, NumPy, torch (and CUDA) generator states."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`get_rng_state`."""
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Make ``--resume`` continue with the random draws it stopped at.

    mmengine's resume restores the weights, optimizer, schedulers, message
    hub and iteration, and re-seeds the generators from the seed. The
    augmentation of the epochs after a resume (MonoAffineAug, colour jitter
    in the main process or non-persistent workers) and the dataloader's
    base seed then differ from an uninterrupted run. This hook writes each
    rank's generator states into every checkpoint (``rng_states``, one per
    rank, gathered just before the :class:`CheckpointHook` saves) and sets
    them back before training resumes, so that a run resumed from a
    checkpoint reaches the same weights as one that never stopped.

    Limits: resuming from a checkpoint saved in the middle of an epoch of an
    ``EpochBasedTrainLoop`` restarts that epoch (mmengine); the generators
    inside persistent dataloader workers are not saved.
    """

    priority = 'LOW'  # before CheckpointHook (VERY_LOW) at the same point

    def __init__(self) -> None:
        self._states: Optional[list] = None
        self._loaded: Optional[list] = None
        self._ckpt_hook: Optional[CheckpointHook] = None

    def before_train(self, runner) -> None:
        """Find the CheckpointHook; restore the loaded states on resume."""
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook):
                self._ckpt_hook = hook
        if self._loaded is None or runner.iter == 0:
            return  # a fresh run (``load_from`` alone keeps the seed)
        rank, world = get_rank(), get_world_size()
        if len(self._loaded) != world:
            runner.logger.warning(
                f'RNGStateHook: the checkpoint holds {len(self._loaded)} '
                f'rank states, this run has {world} ranks; generators are '
                'left as seeded')
        else:
            set_rng_state(self._loaded[rank])
            runner.logger.info('RNGStateHook: random generator states '
                               'restored from the checkpoint')
        self._loaded = None

    def _gather(self) -> None:
        state = get_rng_state()
        self._states = all_gather_object(state) if get_world_size() > 1 \
            else [state]

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        """Gather the states when the CheckpointHook saves by iteration."""
        hook = self._ckpt_hook
        if hook is not None and not hook.by_epoch and hook.interval > 0 and (
                self.every_n_train_iters(runner, hook.interval)
                or self.is_last_train_iter(runner)):
            self._gather()

    def after_train_epoch(self, runner) -> None:
        """Gather the states (all ranks) before an epoch checkpoint."""
        self._gather()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Write the gathered states (rank 0 saves, for every rank)."""
        if get_world_size() == 1:
            self._gather()
        if self._states is not None:
            checkpoint['rng_states'] = self._states

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the states; :meth:`before_train` applies them on resume."""
        self._loaded = checkpoint.get('rng_states')
