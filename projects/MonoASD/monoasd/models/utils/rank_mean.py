# Copyright (c) MonoASD contributors. All rights reserved.
"""Normalise per-rank loss means so that they do not depend on the ranks.

A term that is a mean over the objects (or cells) of one rank's batch,
``sum_r / n_r``, is not the mean over the whole batch once the batch is
split over ranks with different object counts, and DDP averages the ranks'
gradients. Rescaling each rank's mean by ``n_r / mean_r(n)`` gives
``sum_r / mean_r(n)``, whose mean over ranks is ``sum(sum_r) / sum(n_r)``:
the loss of the same samples on one process (mmdet's ``reduce_mean`` of
``avg_factor``). Without a process group nothing changes.
"""
from typing import List, Sequence

import torch
from mmengine.dist import all_reduce, get_world_size


def mean_over_ranks(counts: Sequence[float]) -> List[float]:
    """Mean of each count over the ranks, in one all-reduce.

    Every rank must call it the same number of times (it is a collective).

    Args:
        counts (Sequence[float]): This rank's counts.

    Returns:
        list[float]: The means; ``counts`` themselves on one process.
    """
    if get_world_size() == 1:
        return [float(c) for c in counts]
    t = torch.tensor([float(c) for c in counts], dtype=torch.float64)
    all_reduce(t, op='mean')
    return t.tolist()


def count_shares(counts: Sequence[float]) -> List[float]:
    """``n_r / mean_r(n)`` for each count (1.0 on one process, 0 if none).

    Multiply a mean over ``n_r`` elements by its share to make the DDP
    average of the ranks' losses the mean over all ranks' elements.

    Args:
        counts (Sequence[float]): This rank's counts.

    Returns:
        list[float]: One share per count.
    """
    if get_world_size() == 1:
        return [1.0] * len(counts)
    return [share(c, m) for c, m in zip(counts, mean_over_ranks(counts))]


def share(count: float, mean: float) -> float:
    """``count / mean``, 0 when no rank has any (``mean == 0``)."""
    return float(count) / mean if mean > 0 else 0.0
