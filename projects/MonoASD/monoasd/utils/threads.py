# Copyright (c) MonoASD contributors. All rights reserved.
"""Keep torch's intra-op thread count across numba parallel code.

numba's default ``omp`` threading layer shares the OpenMP runtime with
torch, and its first parallel launch raises ``torch.get_num_threads()`` to
numba's own count (the number of cores): under ``OMP_NUM_THREADS=1`` (what
``torchrun`` sets, or two jobs side by side on one machine) a process then
trains with 2 threads from its first evaluation on. Measured here: two
1-thread trainings side by side went from 2.1 to 8 s/iter after their
first validation, because mmdet3d's ``kitti_eval`` runs the numba
``parallel=True`` kernel ``d3_box_overlap_kernel``.
"""
from contextlib import contextmanager
from typing import Iterator

import torch

try:
    import numba
except ImportError:  # numba is optional here; nothing to guard then
    numba = None


@contextmanager
def torch_threads_kept() -> Iterator[int]:
    """Run numba parallel code on torch's thread count, then restore it.

    Inside the block numba uses at most ``torch.get_num_threads()``
    threads; on exit torch's setting is put back if numba changed it.

    Yields:
        int: Torch's intra-op thread count when the block was entered.
    """
    threads = torch.get_num_threads()
    if numba is not None:
        numba.set_num_threads(
            max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield threads
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
