"""KITTI's AP|R40 cannot reach 100 on a split with fewer than 41 objects.

``get_thresholds`` takes at most one recall sample per true positive, so
``r40_ceiling`` gives the highest AP a split allows, and MonoKittiMetric
warns when a split is that small (README, "Results": the 24-frame val
split of the main job has 33 moderate cars, ceiling 80).
"""
import numpy as np
import pytest
from mmdet3d.evaluation import kitti_eval

import monoasd  # noqa: F401  (installs the CPU path)
from monoasd.evaluation import (MonoKittiMetric, r40_ceiling,
                                small_split_warnings)


def _annos(num_cars, per_frame=3, score=False):
    """Moderate-or-easier cars side by side, ``per_frame`` per frame."""
    annos = []
    for start in range(0, num_cars, per_frame):
        n = min(per_frame, num_cars - start)
        x = np.arange(n) * 6.0 - 6.0
        z = np.full(n, 15.0) + start * 0.01
        left = 600.0 + x * 40
        anno = dict(
            name=np.array(['Car'] * n), truncated=np.zeros(n),
            occluded=np.zeros(n, dtype=np.int64), alpha=np.zeros(n),
            bbox=np.stack([left, np.full(n, 150.0), left + 80,
                           np.full(n, 210.0)], 1),
            dimensions=np.tile([[4.0, 1.5, 1.6]], (n, 1)),
            location=np.stack([x, np.full(n, 1.6), z], 1),
            rotation_y=np.zeros(n))
        if score:
            anno['score'] = np.linspace(0.9, 0.8, n)
        annos.append(anno)
    return annos


def test_ceiling_values_by_hand():
    # one recall sample per object below 41: (n - 1) / 40
    assert r40_ceiling(0) == 0.0
    assert r40_ceiling(1) == 0.0
    assert r40_ceiling(33) == pytest.approx(80.0)
    assert r40_ceiling(21) == pytest.approx(50.0)
    assert r40_ceiling(41) == pytest.approx(100.0)
    assert r40_ceiling(500) == pytest.approx(100.0)


@pytest.mark.parametrize('num_cars', [10, 33, 40, 41, 90])
def test_perfect_detections_reach_exactly_the_ceiling(num_cars):
    gt = _annos(num_cars)
    dt = _annos(num_cars, score=True)
    _, ap = kitti_eval(gt, dt, ['Car'], eval_types=['bbox', 'bev', '3d'])
    for kind in ('3D', 'BEV', '2D'):
        for diff in ('easy', 'moderate', 'hard'):
            assert ap[f'KITTI/Car_{kind}_AP40_{diff}_strict'] == \
                pytest.approx(r40_ceiling(num_cars)), (kind, diff)
    assert (r40_ceiling(num_cars) < 100.0) == (num_cars < 41)


def test_small_split_warnings_name_class_difficulty_and_ceiling():
    lines = small_split_warnings(_annos(33), ['Car', 'Pedestrian'])
    assert lines == [
        f'Car {d}: 33 objects, AP|R40 cannot exceed 80.00'
        for d in ('easy', 'moderate', 'hard')]
    assert small_split_warnings(_annos(90), ['Car']) == []
    # classes KITTI's evaluation does not know are left out
    assert small_split_warnings(_annos(5), ['Van']) == []
    # annotations without the difficulty fields: no check, no error
    assert small_split_warnings([dict(alpha=np.zeros(1))], ['Car']) == []


def test_metric_logs_the_warning(capsys):
    metric = MonoKittiMetric(ann_file='val_infos.pkl')
    gt = _annos(12)
    metric.kitti_evaluate(dict(pred_instances_3d=_annos(12, score=True)),
                          gt, classes=['Car'])
    out = capsys.readouterr().out
    assert 'val_infos.pkl: too few objects for AP|R40 to reach 100' in out
    assert 'Car moderate: 12 objects, AP|R40 cannot exceed 27.50' in out
