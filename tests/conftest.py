"""Shared fixtures: a tiny synthetic KITTI with mmdet3d v2 info files."""
import importlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch.multiprocessing as mp

TOOLS_DIR = Path(__file__).resolve().parents[1] / 'tools'

#: Size and split sizes of the shared tiny dataset (half KITTI resolution).
MINI_WIDTH, MINI_HEIGHT = 621, 188
MINI_NUM_TRAIN, MINI_NUM_VAL, MINI_NUM_TEST = 4, 2, 1
#: Full-size frames memorised by the overfit test (``overfit_data``).
OVERFIT_FRAMES = 8


def run_python_one_thread(code: str) -> str:
    """Run ``code`` in a fresh Python process under ``OMP_NUM_THREADS=1``
    and return its stdout (numba's first parallel launch in a process is
    what raises torch's thread count; a warm pytest process would hide
    it)."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    out = subprocess.run([sys.executable, '-c', code], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# Workers are spawned, not forked: forking a pytest process whose torch
# (OpenMP) and numba thread pools already run can deadlock the child.
def spawn_ranks(worker, *args, tries=3, timeout=55.0):
    """Run ``worker(rank, 2, port, *args)`` on 2 spawned gloo ranks.

    A 2-rank gloo run here takes a few seconds; on a loaded CI machine it
    has (rarely) hung after connecting. Such a run is killed after
    ``timeout`` seconds and started again on a fresh port; the assertions
    are unchanged.
    """
    for attempt in range(tries):
        ctx = mp.start_processes(worker, args=(2, free_port()) + args,
                                 nprocs=2, join=False, start_method='spawn')
        deadline = time.monotonic() + timeout
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                for proc in ctx.processes:
                    proc.kill()
                break
        else:
            return
    raise TimeoutError(f'2-rank gloo run hung {tries} times')


def import_tool(name):
    """Import a script from tools/ (which is not a package).

    ``name`` is a module name in tools/ or a path below it without
    ``.py`` (``'analysis_tools/benchmark'``), loaded from its file.
    """
    if '/' in name:
        path = TOOLS_DIR / f'{name}.py'
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    if str(TOOLS_DIR) not in sys.path:
        sys.path.insert(0, str(TOOLS_DIR))
    return importlib.import_module(name)


@pytest.fixture(scope='session')
def mini_kitti(tmp_path_factory):
    """Synthetic KITTI root with ``kitti_infos_{split}.pkl`` (built once).

    The info files are written by ``create_kitti_infos`` (what
    ``tools/create_data.py`` runs); most of the time goes into numba
    compiling mmdet3d's point-in-box test (~10 s).
    """
    from monoasd.datasets.kitti_infos import create_kitti_infos
    from monoasd.synthetic import write_dataset
    root = tmp_path_factory.mktemp('mini_kitti') / 'kitti'
    write_dataset(str(root), MINI_NUM_TRAIN, MINI_NUM_VAL, MINI_NUM_TEST,
                  seed=0, width=MINI_WIDTH, height=MINI_HEIGHT, workers=1,
                  progress=False)
    summary = create_kitti_infos(str(root))
    return root, summary


@pytest.fixture(autouse=True)
def mmdet3d_default_scope():
    """Every test starts in mmdet3d's registry scope.

    A Runner built by one test (e.g. with ``default_scope='mmengine'``)
    leaves its scope as mmengine's current one; later tests that build
    mmdet3d components by name must not depend on test order.
    """
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet3d')
    yield


def read_labels(path):
    """KITTI label lines as dicts (independent parser)."""
    rows = []
    for line in open(path):
        f = line.split()
        if not f:
            continue
        v = [float(x) for x in f[1:]]
        rows.append(dict(type=f[0], truncated=v[0], occluded=int(v[1]),
                         alpha=v[2], bbox=np.array(v[3:7]),
                         hwl=np.array(v[7:10]), loc=np.array(v[10:13]),
                         ry=v[13]))
    return rows


def ap40_ceiling(root: Path) -> float:
    """Highest Car AP|R40 moderate that ``n`` moderate-or-easy cars allow.

    mmdet3d's KITTI evaluation takes one recall threshold per true
    positive (for n <= 40) and AP40 sums the precision at thresholds 1 to
    40, so perfect detections of n objects give 100 * (n - 1) / 40
    (``test_oracle.py`` checks that perfect outputs reach exactly this).
    """
    return 100.0 * (min(moderate_cars(root), 41) - 1) / 40


def moderate_cars(root: Path) -> int:
    """Cars of KITTI level Moderate or Easy in the train split."""
    n = 0
    for idx in (root / 'ImageSets' / 'train.txt').read_text().split():
        for line in (root / 'training' / 'label_2' / f'{idx}.txt').open():
            f = line.split()
            if f[0] == 'Car' and float(f[7]) - float(f[5]) + 1 >= 25 and \
                    float(f[1]) <= 0.3 and int(f[2]) <= 1:
                n += 1
    return n


@pytest.fixture(scope='session')
def overfit_data(tmp_path_factory):
    """Eight full-size synthetic frames (train split) with info files."""
    from monoasd.datasets.kitti_infos import create_kitti_infos
    from monoasd.synthetic import write_dataset
    keep = os.environ.get('MONOASD_OVERFIT_WORK_DIR')
    base = Path(keep) if keep else tmp_path_factory.mktemp('overfit')
    root = base / 'kitti'
    write_dataset(str(root), OVERFIT_FRAMES, 1, 1, seed=0, workers=1,
                  overwrite=bool(keep), progress=False)
    create_kitti_infos(str(root))
    return root
