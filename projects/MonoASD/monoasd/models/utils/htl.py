# Copyright (c) MonoASD contributors. All rights reserved.
"""Hierarchical Task Learning (HTL) loss weighting of DID-M3D (design D3)."""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
from mmengine import dist
from mmdet3d.registry import MODELS
from torch import Tensor

#: DID-M3D's terms and the terms each one waits for.
DID_PREREQUISITES = {
    'heatmap': (),
    'offset_2d': (),
    'size_2d': (),
    'offset_3d': ('size_2d', 'offset_2d'),
    'size_3d': ('size_2d', 'offset_2d'),
    'heading': ('size_2d', 'offset_2d'),
    'depth': ('size_2d', 'size_3d', 'offset_2d'),
}


@MODELS.register_module()
class HierarchicalTaskLearning(nn.Module):
    """Per-epoch loss weights that switch 3D terms on as 2D terms converge.

    Terms are addressed by name (corrected quirk Q5). During training the
    head calls :meth:`accumulate` with the unweighted term values; at the
    start of every epoch :class:`HTLHook` calls :meth:`update`, which reduces
    the sums across ranks, appends the previous epoch's means to the history
    and recomputes the weights. All state lives in buffers, so it is saved in
    checkpoints and an interrupted run resumes exactly.

    At the start of epoch ``e`` (completed epochs), when the history holds
    ``stat_epochs`` vectors: ``diff = mean_j(hist[j] - hist[j + 2])``;
    ``init_diff`` is the first such ``diff``; ``c = 1 - relu(diff /
    init_diff)``; ``t = min((e - stat_epochs) / (max_epoch - stat_epochs),
    1)``; each dependent term gets ``t ** (1 - prod(c[prerequisites]))``.
    Like MonoASD/MonoSKD, nothing is appended at ``e = 0``, so the first
    weighting happens at ``e = stat_epochs + 1`` (the original DID-M3D
    appends a statistics pass at ``e = 0``, one epoch earlier).

    Args:
        prerequisites (dict): Term name -> names it waits for. Defaults to
            DID-M3D's :data:`DID_PREREQUISITES`.
        stat_epochs (int): History length. Defaults to 5.
        max_epoch (int): Epoch at which ``t`` reaches 1. Defaults to 140.
        clamp_weights (bool): Clamp weights to [0, 1]. Defaults to False
            (reference).
    """

    def __init__(self,
                 prerequisites: Optional[Dict[str, Sequence[str]]] = None,
                 stat_epochs: int = 5,
                 max_epoch: int = 140,
                 clamp_weights: bool = False) -> None:
        super().__init__()
        prerequisites = prerequisites or DID_PREREQUISITES
        self.terms = list(prerequisites)
        for name, pre in prerequisites.items():
            for p in pre:
                if p not in prerequisites:
                    raise KeyError(f'HTL term "{name}" waits for unknown '
                                   f'term "{p}"')
        if stat_epochs < 3:
            raise ValueError('stat_epochs must be >= 3')
        if max_epoch <= stat_epochs:
            raise ValueError('max_epoch must be > stat_epochs')
        self.prerequisites = {k: tuple(v) for k, v in prerequisites.items()}
        self.stat_epochs = stat_epochs
        self.max_epoch = max_epoch
        self.clamp_weights = clamp_weights
        n = len(self.terms)
        self.register_buffer('weights', self._default_weights())
        # Running per-epoch sums are rank-local until update() reduces them,
        # so they must not be buffers: DDP with broadcast_buffers=True (the
        # torch default, used whenever model_wrapper_cfg omits it) copies
        # rank 0's buffers to every rank at each forward, which would drop
        # the other ranks' statistics. They are still saved in state_dict
        # (see _save_to_state_dict / _load_from_state_dict).
        self.sums = torch.zeros(n, dtype=torch.float64)
        self.counts = torch.zeros(n, dtype=torch.float64)
        self.register_buffer('history',
                             torch.zeros(stat_epochs, n, dtype=torch.float64))
        self.register_buffer('num_history', torch.zeros((),
                                                        dtype=torch.long))
        self.register_buffer('init_diff', torch.zeros(n,
                                                      dtype=torch.float64))
        self.register_buffer('has_init_diff', torch.zeros((),
                                                          dtype=torch.bool))

    _STAT_KEYS = ('sums', 'counts')

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for key in self._STAT_KEYS:
            destination[prefix + key] = getattr(self, key).detach()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        for key in self._STAT_KEYS:
            value = state_dict.pop(prefix + key, None)
            if value is None:
                if strict:
                    missing_keys.append(prefix + key)
            else:
                getattr(self, key).copy_(value)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _default_weights(self) -> Tensor:
        return torch.tensor([0.0 if self.prerequisites[t] else 1.0
                             for t in self.terms])

    def weight(self, term: str) -> Tensor:
        """Current weight of ``term`` (a detached scalar tensor)."""
        return self.weights[self.terms.index(term)]

    @torch.no_grad()
    def accumulate(self, values: Dict[str, Tensor]) -> None:
        """Add one iteration's unweighted term values (detached)."""
        for name, value in values.items():
            if name in self.terms:
                i = self.terms.index(name)
                self.sums[i] += float(value.detach())
                self.counts[i] += 1

    @torch.no_grad()
    def update(self, epoch: int) -> Dict[str, float]:
        """Recompute the weights at the start of ``epoch``.

        Args:
            epoch (int): Number of completed epochs (0-based current epoch).

        Returns:
            dict: Term name -> new weight.
        """
        sums, counts = self.sums.clone(), self.counts.clone()
        if dist.get_world_size() > 1:
            dist.all_reduce(sums, op='sum')
            dist.all_reduce(counts, op='sum')
        weights = self._default_weights().to(self.weights)
        if int(self.num_history) == self.stat_epochs:
            hist = self.history
            diff = (hist[:-2] - hist[2:]).mean(dim=0)
            if not bool(self.has_init_diff):
                self.init_diff.copy_(diff)
                self.has_init_diff.fill_(True)
            eps = torch.full_like(diff, 1e-12)
            init = torch.where(self.init_diff.abs() < 1e-12,
                               torch.copysign(eps, self.init_diff),
                               self.init_diff)
            c = 1 - torch.relu(diff / init)
            t = min((epoch - self.stat_epochs) /
                    (self.max_epoch - self.stat_epochs), 1.0)
            t = max(t, 0.0)
            for i, term in enumerate(self.terms):
                pre = self.prerequisites[term]
                if not pre:
                    continue
                prod = torch.prod(
                    torch.stack([c[self.terms.index(p)] for p in pre]))
                weights[i] = float(t**float(1 - prod)) if t > 0 else 0.0
            self.history[:-1] = self.history[1:].clone()
            self.num_history -= 1
        if epoch != 0 and bool((counts > 0).all()):
            self.history[int(self.num_history)] = (sums / counts).to(
                self.history)
            self.num_history += 1
        if self.clamp_weights:
            weights = weights.clamp(0, 1)
        self.weights.copy_(weights)
        self.sums.zero_()
        self.counts.zero_()
        return {t: float(w) for t, w in zip(self.terms, self.weights)}
