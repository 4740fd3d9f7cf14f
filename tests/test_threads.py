"""numba parallel code leaves torch's thread count alone
(``monoasd/utils/threads.py``).

Each case runs in a fresh process under ``OMP_NUM_THREADS=1``: numba's
OpenMP layer raises torch's count on its *first* parallel launch, which an
already-warm pytest process would hide.
"""
import os

import pytest

from conftest import run_python_one_thread

PRELUDE = (
    'import numpy as np, torch\n'
    'from mmdet3d.evaluation.functional.kitti_utils import eval as E\n'
    'boxes = np.array([[0., 1., 10., 1.6, 1.5, 3.9, 0.1]])\n'
    'def kernel():\n'
    '    E.d3_box_overlap_kernel(boxes, boxes.copy(), np.ones((1, 1)), -1)\n'
)


def run_fresh(code: str) -> str:
    return run_python_one_thread(PRELUDE + code)


@pytest.mark.skipif((os.cpu_count() or 1) < 2,
                    reason='numba has one thread on one core')
def test_mmdet3d_kitti_kernel_raises_torch_threads_without_guard():
    """The hazard itself: mmdet3d's parallel IoU kernel, unguarded."""
    assert 'threads 2' in run_fresh(
        'import numba\nnumba.set_num_threads(2)\nkernel()\n'
        'print("threads", torch.get_num_threads())\n')


def test_torch_threads_kept_around_mmdet3d_kernel():
    out = run_fresh(
        'from monoasd.utils import torch_threads_kept\n'
        'with torch_threads_kept() as n:\n'
        '    kernel()\n'
        'import numba\n'
        'print("threads", n, torch.get_num_threads(), '
        'numba.get_num_threads())\n')
    assert 'threads 1 1 1' in out, out


def test_mono_kitti_metric_keeps_torch_threads():
    """MonoKittiMetric.kitti_evaluate guards mmdet3d's evaluation (here
    replaced by the kernel alone)."""
    out = run_fresh(
        'from mmdet3d.evaluation.metrics import KittiMetric\n'
        'KittiMetric.kitti_evaluate = lambda self, *a, **k: kernel() or {}\n'
        'from monoasd.evaluation import MonoKittiMetric\n'
        'm = MonoKittiMetric(ann_file="unused.pkl")\n'
        'm.kitti_evaluate({}, [{"alpha": np.array([0.1])}])\n'
        'print("threads", torch.get_num_threads())\n')
    assert 'threads 1' in out, out
