"""mmdet3d's KittiMetric, unchanged, computes 3D/BEV/2D APs on the CPU.

``import monoasd`` routes ``rotate_iou_gpu_eval`` (used by the BEV and 3D
overlaps of mmdet3d's KITTI evaluation) to a float64 CPU implementation
when CUDA is unusable. These tests check that implementation against an
independent shapely computation (and, where numba's CUDA simulator is
available, against mmdet3d's own kernel), and run KittiMetric end to end on
synthetic KITTI annotations.
"""
import copy
import math
import os
import subprocess
import sys
import textwrap

import mmengine
import numpy as np
import pytest
import torch
from mmdet3d.evaluation.functional.kitti_utils import eval as kitti_eval_utils
from mmdet3d.evaluation.metrics import KittiMetric
from mmdet3d.structures import CameraInstance3DBoxes, points_cam2img
from shapely.geometry import Polygon

import monoasd  # noqa: F401  (installs the CPU path)
from monoasd.evaluation import kitti_iou_path, rotate_iou_cpu_eval

CPU_ONLY = not torch.cuda.is_available()


# ---------------------------------------------------------------------------
# Rotated overlap vs shapely
# ---------------------------------------------------------------------------
def _polygon(box):
    """Footprint of ``[x, y, w, h, a]`` with the CUDA kernel's convention.

    ``rbbox_to_corners``: corner = (cos a * u + sin a * v + x,
    -sin a * u + cos a * v + y) for local corners (u, v) = (+-w/2, +-h/2).
    """
    x, y, w, h, a = (float(v) for v in box)
    pts = []
    for u, v in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2),
                 (-w / 2, h / 2)):
        pts.append((math.cos(a) * u + math.sin(a) * v + x,
                    -math.sin(a) * u + math.cos(a) * v + y))
    return Polygon(pts)


def _shapely_overlaps(boxes, query_boxes, criterion):
    out = np.zeros((len(boxes), len(query_boxes)))
    for n, box in enumerate(boxes):
        poly = _polygon(box)
        for k, qbox in enumerate(query_boxes):
            qpoly = _polygon(qbox)
            inter = poly.intersection(qpoly).area
            area, qarea = box[2] * box[3], qbox[2] * qbox[3]
            if criterion == -1:
                out[n, k] = inter / (area + qarea - inter)
            elif criterion == 0:
                out[n, k] = inter / qarea
            elif criterion == 1:
                out[n, k] = inter / area
            else:
                out[n, k] = inter
    return out


def _random_boxes(rng, num, spread):
    return np.concatenate([
        rng.uniform(-spread, spread, (num, 2)),
        rng.uniform(0.3, 5.0, (num, 2)),
        rng.uniform(-np.pi, np.pi, (num, 1))
    ], axis=1)


def _special_pairs():
    """(box, query) pairs with known geometry, and their IoU if known."""
    base = np.array([1.0, -2.0, 4.0, 1.6, 0.3])
    rot90 = base.copy()
    rot90[[2, 3]] = base[[3, 2]]
    rot90[4] += np.pi / 2
    nested = base.copy()
    nested[[2, 3]] *= 0.5
    touching = base.copy()  # shares the edge u = +w/2 with base
    touching[0] += base[2] * math.cos(base[4])
    touching[1] -= base[2] * math.sin(base[4])
    disjoint = base + np.array([20.0, 0, 0, 0, 0])
    corner = np.array([0.0, 0.0, 2.0, 2.0, 0.0])
    diamond = np.array([2.0, 0.0, 2.0, 2.0, np.pi / 4])  # vertex on edge
    return [
        (base, base, 1.0),
        (base, rot90, 1.0),
        (base, base + [0, 0, 0, 0, np.pi], 1.0),
        (base, nested, 0.25),
        (nested, base, 0.25),
        (base, touching, 0.0),
        (base, disjoint, 0.0),
        (corner, diamond, None),
        (base, base + [0.3, 0.1, 0, 0, 0], None),
    ]


def test_cpu_path_installed():
    from mmdet3d.evaluation.functional.kitti_utils import rotate_iou
    if CPU_ONLY:
        assert kitti_iou_path() == 'cpu'
        assert rotate_iou.rotate_iou_gpu_eval is rotate_iou_cpu_eval
    else:  # a usable GPU keeps mmdet3d's kernel
        assert kitti_iou_path() in ('cuda', 'cpu')


@pytest.mark.parametrize('criterion', [-1, 0, 1, 2])
def test_rotated_overlap_matches_shapely(criterion):
    rng = np.random.default_rng(criterion + 10)
    # dense: most pairs overlap; sparse: a mix of overlap and disjoint
    for spread in (1.5, 6.0):
        boxes = _random_boxes(rng, 60, spread)
        query = _random_boxes(rng, 50, spread)
        ours = rotate_iou_cpu_eval(boxes, query, criterion)
        ref = _shapely_overlaps(boxes, query, criterion)
        assert ours.shape == (60, 50) and ours.dtype == np.float64
        assert (ref > 0).mean() > 0.15  # the sample does exercise overlaps
        np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)
    # asymmetric criteria really are asymmetric, as in the kernel
    if criterion in (0, 1):
        small = np.array([[0.0, 0.0, 1.0, 1.0, 0.0]])
        big = np.array([[0.0, 0.0, 2.0, 2.0, 0.0]])
        expected = 1.0 if criterion == 0 else 0.25
        assert rotate_iou_cpu_eval(big, small, criterion)[0, 0] == \
            pytest.approx(expected)


def test_rotated_overlap_special_cases():
    for box, query, iou in _special_pairs():
        ours = rotate_iou_cpu_eval(box[None], query[None], -1)[0, 0]
        ref = _shapely_overlaps([box], [query], -1)[0, 0]
        assert ours == pytest.approx(ref, abs=1e-9)
        if iou is not None:
            assert ours == pytest.approx(iou, abs=1e-9)
    assert rotate_iou_cpu_eval(np.zeros((0, 5)), np.ones((3, 5))).shape == \
        (0, 3)


def _shapely_iou_3d(box, qbox):
    """3D IoU of camera boxes [x, y, z, l, h, w, ry] (y down, bottom)."""
    inter_bev = _polygon(box[[0, 2, 3, 5, 6]]).intersection(
        _polygon(qbox[[0, 2, 3, 5, 6]])).area
    ih = max(0.0,
             min(box[1], qbox[1]) - max(box[1] - box[4], qbox[1] - qbox[4]))
    inter = inter_bev * ih
    vol, qvol = np.prod(box[3:6]), np.prod(qbox[3:6])
    return inter / (vol + qvol - inter)


def test_kitti_eval_bev_and_3d_overlaps_match_shapely():
    """eval.py's bev/d3 overlaps (now on the CPU) vs shapely."""
    rng = np.random.default_rng(3)
    num = 40

    def boxes3d(n):
        return np.concatenate([
            rng.uniform(-2, 2, (n, 1)),
            rng.uniform(1.0, 2.0, (n, 1)),
            rng.uniform(10, 14, (n, 1)),
            rng.uniform(0.5, 4.5, (n, 3)),
            rng.uniform(-np.pi, np.pi, (n, 1))
        ], axis=1)

    dt, gt = boxes3d(num), boxes3d(num - 5)
    gt[:5] = dt[:5]  # identical pairs
    d3 = kitti_eval_utils.d3_box_overlap(dt, gt)
    bev_cols = [0, 2, 3, 5, 6]  # x, z, l, w, ry as eval.py feeds them
    bev = kitti_eval_utils.bev_box_overlap(dt[:, bev_cols], gt[:, bev_cols])
    ref3d = np.array([[_shapely_iou_3d(b, q) for q in gt] for b in dt])
    refbev = _shapely_overlaps(dt[:, bev_cols], gt[:, bev_cols], -1)
    assert (ref3d > 0).mean() > 0.2
    np.testing.assert_allclose(d3, ref3d, atol=1e-9)
    np.testing.assert_allclose(bev, refbev, atol=1e-9)
    np.testing.assert_allclose(np.diag(d3[:5, :5]), 1.0, atol=1e-9)


_SIMULATOR_SCRIPT = textwrap.dedent('''
    import importlib.util, sys
    import numpy as np
    # load rotate_iou.py alone: it only needs numba and numpy
    spec = importlib.util.spec_from_file_location('rotate_iou', sys.argv[3])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rotate_iou_gpu_eval = module.rotate_iou_gpu_eval
    data = np.load(sys.argv[1])
    out = {f'c{c}': rotate_iou_gpu_eval(data['boxes'], data['query'], c)
           for c in (-1, 0, 1, 2)}
    np.savez(sys.argv[2], **out)
''')


def test_matches_mmdet3d_kernel_in_cuda_simulator(tmp_path):
    """Run mmdet3d's own kernel in numba's CUDA simulator (no GPU needed)."""
    rng = np.random.default_rng(7)
    boxes = _random_boxes(rng, 12, 2.0)
    query = _random_boxes(rng, 10, 2.0)
    # Near-coincident pairs. Exactly coincident boxes are left out: there
    # the kernel's float32 edge/vertex tests degenerate (the simulator
    # returns 0 or 1/3 for identical boxes), while the CPU version gives 1.
    query[:3] = boxes[:3] + [0.05, -0.03, 0.02, 0.01, 0.02]
    np.savez(tmp_path / 'in.npz', boxes=boxes, query=query)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM='1')
    proc = subprocess.run(
        [
            sys.executable, '-c', _SIMULATOR_SCRIPT,
            str(tmp_path / 'in.npz'),
            str(tmp_path / 'out.npz'),
            os.path.join(os.path.dirname(kitti_eval_utils.__file__),
                         'rotate_iou.py')
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300)
    if proc.returncode != 0:
        pytest.skip('numba CUDA simulator unavailable: ' +
                    (proc.stderr.strip().splitlines() or [''])[-1])
    kernel = np.load(tmp_path / 'out.npz')
    for criterion in (-1, 0, 1, 2):
        ours = rotate_iou_cpu_eval(boxes, query, criterion)
        # the kernel computes in float32
        np.testing.assert_allclose(
            ours, kernel[f'c{criterion}'], rtol=1e-4, atol=2e-5)


_BRANCH_SCRIPT = textwrap.dedent('''
    import sys
    import torch
    from numba import cuda
    # pretend to have a GPU; numba's CUDA simulator stands in for the kernel
    torch.cuda.is_available = lambda: True
    cuda.is_available = lambda: True
    from monoasd.evaluation import kitti_cpu_iou as k
    name = k.ROTATE_IOU_MODULE
    cpu = k.rotate_iou_cpu_eval
    print('gpu', k.kitti_iou_path(), sys.modules[name].rotate_iou_gpu_eval
          is cpu)
    # the kernel module fails to import although a GPU is visible
    k._ACTIVE_PATH = None
    sys.modules[name] = None
    print('broken', k.apply_kitti_cpu_iou_patch(),
          sys.modules[name].rotate_iou_gpu_eval is cpu)
''')


def test_gpu_branches_with_simulator():
    """A usable kernel is left alone; a failing one falls back to the CPU."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM='1', CUDA_VISIBLE_DEVICES='0')
    proc = subprocess.run([sys.executable, '-c', _BRANCH_SCRIPT],
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    if 'gpu ' not in proc.stdout:
        pytest.skip('numba CUDA simulator unavailable: ' +
                    (proc.stderr.strip().splitlines() or [''])[-1])
    assert 'gpu cuda False' in proc.stdout, proc.stdout + proc.stderr
    assert 'broken cpu True' in proc.stdout, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------
# KittiMetric end to end
# ---------------------------------------------------------------------------
CLASSES = ['Pedestrian', 'Cyclist', 'Car']
DIMS = {  # l, h, w
    'Car': (3.9, 1.56, 1.6),
    'Pedestrian': (0.8, 1.75, 0.6),
    'Cyclist': (1.76, 1.74, 0.6),
}
WIDTH, HEIGHT = 1242, 375
P2 = np.array([[721.5377, 0.0, 609.5593, 44.85728],
               [0.0, 721.5377, 172.854, 0.2163791],
               [0.0, 0.0, 1.0, 0.002745884], [0.0, 0.0, 0.0, 1.0]])
LIDAR2CAM = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, -0.08],
                      [1.0, 0.0, 0.0, -0.27], [0.0, 0.0, 0.0, 1.0]])
# KITTI's AP interpolates 41 recall points and only reaches 100 with more
# than 40 valid objects per class and difficulty, so every class gets ~60
# easy objects: 48 frames x 6 objects.
NUM_FRAMES = 48
SLOTS_X = (-7.5, -5.0, -2.5, 0.0, 2.5, 5.0, 7.5)  # lateral positions
# (depth range, occluded, truncated): easy, moderate, hard, ignored (too
# small in the image for any difficulty)
LEVELS = [((8.0, 15.0), 0, 0.0), ((16.0, 24.0), 1, 0.2),
          ((26.0, 33.0), 2, 0.4), ((60.0, 65.0), 0, 0.0)]
LEVEL_CYCLE = (0, 1, 0, 2, 0, 0, 3, 0)


def _image_box(bboxes_3d):
    """2D boxes exactly as KittiMetric derives them from 3D predictions."""
    corners = points_cam2img(bboxes_3d.corners,
                             bboxes_3d.tensor.new_tensor(P2))
    box = torch.cat([corners.min(dim=1)[0], corners.max(dim=1)[0]], dim=1)
    box = box.numpy().astype(np.float64)
    box[:, 2:] = np.minimum(box[:, 2:], [WIDTH, HEIGHT])
    box[:, :2] = np.maximum(box[:, :2], 0)
    return box


def _make_frames():
    """Synthetic frames; one slot of each frame is kept free of objects."""
    rng = np.random.default_rng(0)
    frames = []
    obj_id = 0
    for idx in range(NUM_FRAMES):
        free = idx % len(SLOTS_X)
        objects = []
        for slot, x in enumerate(SLOTS_X):
            if slot == free:
                continue
            name = CLASSES[obj_id % 3]
            level = LEVEL_CYCLE[(obj_id // 3) % len(LEVEL_CYCLE)]
            (zmin, zmax), occluded, truncated = LEVELS[level]
            z = rng.uniform(zmin, zmax)
            ry = rng.uniform(-np.pi, np.pi)
            l, h, w = DIMS[name]
            # x * z / 12: every slot projects to the same image column
            box = [x * z / 12.0, 1.65, z, l, h, w, ry]
            objects.append(
                dict(
                    name=name,
                    box=box,
                    occluded=occluded,
                    truncated=truncated,
                    score=float(rng.uniform(0.3, 0.9)),
                    id=obj_id))
            obj_id += 1
        frames.append(dict(objects=objects, free_x=SLOTS_X[free]))
    return frames


def _write_infos(frames, path):
    data_list = []
    for idx, frame in enumerate(frames):
        boxes = CameraInstance3DBoxes(
            torch.tensor([o['box'] for o in frame['objects']]))
        bboxes_2d = _image_box(boxes)
        instances = []
        for obj, bbox in zip(frame['objects'], bboxes_2d):
            x, _, z = obj['box'][:3]
            instances.append(
                dict(
                    bbox=bbox.tolist(),
                    bbox_label=CLASSES.index(obj['name']),
                    bbox_3d=list(obj['box']),
                    bbox_label_3d=CLASSES.index(obj['name']),
                    truncated=obj['truncated'],
                    occluded=obj['occluded'],
                    alpha=-np.arctan2(x, z) + obj['box'][6],
                    score=0.0,
                    difficulty=0))
        data_list.append(
            dict(
                sample_idx=idx,
                images=dict(
                    CAM2=dict(
                        img_path=f'{idx:06d}.png',
                        height=HEIGHT,
                        width=WIDTH,
                        cam2img=P2.tolist(),
                        lidar2cam=LIDAR2CAM.tolist(),
                        lidar2img=(P2 @ LIDAR2CAM).tolist())),
                instances=instances,
                cam_instances=dict(CAM2=[])))
    mmengine.dump(
        dict(
            metainfo=dict(
                categories={name: i
                            for i, name in enumerate(CLASSES)},
                dataset='kitti',
                info_version='1.1'),
            data_list=data_list), path)


def _predictions(frames, shift_z=0.0, keep=None, fp_score=None,
                 with_2d=True):
    """Det3DDataSample-like dicts whose boxes equal the ground truth.

    Args:
        shift_z: Added to the depth of every 3D box (2D boxes unchanged).
        keep: Predicate on an object; objects failing it are not predicted.
        fp_score: If set, one Car false positive per frame, in the free
            slot, with this score.
        with_2d: Also give 2D predictions (``pred_instances``), which
            KittiMetric evaluates separately; without them it skips that.
    """
    samples = []
    for idx, frame in enumerate(frames):
        objs = [o for o in frame['objects'] if keep is None or keep(o)]
        boxes = [list(o['box']) for o in objs]
        labels = [CLASSES.index(o['name']) for o in objs]
        scores = [o['score'] for o in objs]
        gt_2d = _image_box(
            CameraInstance3DBoxes(
                torch.tensor([list(o['box']) for o in objs]).reshape(-1, 7)))
        boxes_2d = gt_2d.tolist()
        for box in boxes:
            box[2] += shift_z
        if fp_score is not None:
            z = 12.0
            fp = [frame['free_x'] * z / 12.0, 1.65, z, *DIMS['Car'], 0.3]
            boxes.append(fp)
            labels.append(CLASSES.index('Car'))
            scores.append(fp_score)
            boxes_2d.append(
                _image_box(CameraInstance3DBoxes(torch.tensor([fp])))[0])
        samples.append(
            dict(
                sample_idx=idx,
                pred_instances_3d=dict(
                    bboxes_3d=CameraInstance3DBoxes(
                        torch.tensor(boxes, dtype=torch.float32).reshape(
                            -1, 7)),
                    scores_3d=torch.tensor(scores, dtype=torch.float32),
                    labels_3d=torch.tensor(labels, dtype=torch.long)),
                pred_instances=dict(
                    bboxes=torch.tensor(
                        np.array(boxes_2d), dtype=torch.float32).reshape(
                            -1, 4),
                    scores=torch.tensor(scores, dtype=torch.float32),
                    labels=torch.tensor(labels, dtype=torch.long))
                if with_2d else dict()))
    return samples


def _evaluate(ann_file, samples):
    metric = KittiMetric(ann_file=str(ann_file), metric='bbox')
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, copy.deepcopy(samples))
    results = metric.evaluate(len(samples))
    prefix = metric.prefix + '/'
    return {k[len(prefix):]: v for k, v in results.items()}


def _ap(results, cls, kind, ap='AP40', diff='moderate', strict='strict',
        source='pred_instances_3d'):
    return results[f'{source}/KITTI/{cls}_{kind}_{ap}_{diff}_{strict}']


@pytest.fixture(scope='module')
def kitti_setup(tmp_path_factory):
    frames = _make_frames()
    ann_file = tmp_path_factory.mktemp('kitti') / 'kitti_infos_val.pkl'
    _write_infos(frames, ann_file)
    return frames, ann_file


def test_frames_cover_all_classes_and_difficulties(kitti_setup):
    frames, _ = kitti_setup
    seen = set()
    for frame in frames:
        for obj in frame['objects']:
            seen.add((obj['name'], obj['occluded']))
    assert {(c, o) for c in CLASSES for o in (0, 1, 2)} <= seen


def test_kitti_metric_perfect_predictions(kitti_setup):
    frames, ann_file = kitti_setup
    results = _evaluate(ann_file, _predictions(frames))
    for cls in CLASSES:
        for kind in ('3D', 'BEV', '2D'):
            for ap in ('AP40', 'AP11'):
                for diff in ('easy', 'moderate', 'hard'):
                    for strict in ('strict', 'loose'):
                        assert _ap(results, cls, kind, ap, diff,
                                   strict) == pytest.approx(100.0), \
                            (cls, kind, ap, diff, strict)
                        if kind == '2D':
                            assert _ap(results, cls, kind, ap, diff, strict,
                                       'pred_instances') == pytest.approx(
                                           100.0)


def test_kitti_metric_depth_shift(kitti_setup):
    """1 m deeper: 3D/BEV IoU < 0.7 for every car, 2D boxes untouched."""
    frames, ann_file = kitti_setup
    results = _evaluate(ann_file, _predictions(frames, shift_z=1.0))
    for diff in ('easy', 'moderate', 'hard'):
        for ap in ('AP40', 'AP11'):
            assert _ap(results, 'Car', '3D', ap, diff) < 1.0
            assert _ap(results, 'Car', 'BEV', ap, diff) < 1.0
            assert _ap(results, 'Pedestrian', '3D', ap, diff) < 1.0
            assert _ap(results, 'Car', '2D', ap, diff, 'strict',
                       'pred_instances') == pytest.approx(100.0)


def test_kitti_metric_half_missing(kitti_setup):
    frames, ann_file = kitti_setup
    samples = _predictions(
        frames, keep=lambda o: (o['id'] // 24) % 2 == 0, with_2d=False)
    results = _evaluate(ann_file, samples)
    for cls in CLASSES:
        for kind in ('3D', 'BEV', '2D'):
            value = _ap(results, cls, kind, 'AP40', 'moderate')
            assert 45.0 < value < 55.0, (cls, kind, value)  # recall 1/2


def test_kitti_metric_false_positive_scores(kitti_setup):
    frames, ann_file = kitti_setup
    low = _evaluate(ann_file,
                    _predictions(frames, fp_score=0.05, with_2d=False))
    high = _evaluate(ann_file,
                     _predictions(frames, fp_score=0.99, with_2d=False))
    for kind in ('3D', 'BEV', '2D'):
        for diff in ('easy', 'moderate', 'hard'):
            low_ap = _ap(low, 'Car', kind, 'AP40', diff)
            high_ap = _ap(high, 'Car', kind, 'AP40', diff)
            assert low_ap == pytest.approx(100.0)
            assert high_ap < low_ap - 10.0, (kind, diff, high_ap)
    # other classes are not affected by Car false positives
    assert _ap(high, 'Pedestrian', '3D', 'AP40') == pytest.approx(100.0)
