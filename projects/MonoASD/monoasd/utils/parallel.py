# Copyright (c) MonoASD contributors. All rights reserved.
"""Per-frame work over a process pool, with an optional progress bar."""
import multiprocessing
from typing import Any, Callable, Iterator, Optional, Sequence

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover - tqdm is an optional nicety
    tqdm = None


def imap_frames(func: Callable[[Any], Any],
                tasks: Sequence,
                workers: int = 1,
                desc: Optional[str] = None,
                progress: bool = True) -> Iterator:
    """Yield ``func(task)`` for every task (in any order with workers).

    One worker (or one task) runs in this process; otherwise a
    ``multiprocessing.Pool(workers)`` runs ``imap_unordered`` and is closed
    and joined when the iteration ends. ``progress`` shows a tqdm bar (unit
    'frame') when tqdm is installed.
    """
    if workers == 1 or len(tasks) <= 1:
        pool = None
        results = map(func, tasks)
    else:
        pool = multiprocessing.Pool(workers)
        results = pool.imap_unordered(func, tasks)
    if progress and tqdm is not None:
        results = tqdm(results, total=len(tasks), desc=desc, unit='frame')
    try:
        yield from results
    finally:
        if pool is not None:
            pool.close()
            pool.join()
