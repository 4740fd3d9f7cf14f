"""Box errors of the detections nearest to KITTI's moderate objects
(monoasd.evaluation.box_errors, MonoKittiMetric(box_errors=True))."""
import numpy as np
import pytest

import monoasd  # noqa: F401  (installs the CPU path)
from monoasd.evaluation import MonoKittiMetric
from monoasd.evaluation.box_errors import (ERROR_KEYS, box_errors,
                                           match_nearest)


def _frame(locs, dims=(4.0, 1.5, 2.0), yaws=None, names=None, heights=None,
           score=False):
    """A frame of objects at ``locs`` (x, y, z); l, h, w ``dims``."""
    n = len(locs)
    locs = np.asarray(locs, dtype=np.float64).reshape(n, 3)
    heights = np.full(n, 60.0) if heights is None else np.asarray(heights)
    anno = dict(
        name=np.array(names or ['Car'] * n), truncated=np.zeros(n),
        occluded=np.zeros(n, dtype=np.int64), alpha=np.zeros(n),
        bbox=np.stack([np.full(n, 100.0), np.full(n, 150.0),
                       np.full(n, 180.0), 150.0 + heights], 1),
        dimensions=np.tile(np.asarray(dims, dtype=np.float64), (n, 1)),
        location=locs,
        rotation_y=np.zeros(n) if yaws is None else np.asarray(yaws))
    if score:
        anno['score'] = np.full(n, 0.9)
    return anno


def test_perfect_boxes_have_no_error():
    gt = [_frame([[0, 1.6, 10], [5, 1.6, 30]]), _frame([[-3, 1.6, 20]])]
    err = box_errors(gt, gt)
    assert err['num_objects'] == err['num_matched'] == 3
    for k in ERROR_KEYS:
        expected = {'recall': 1.0, 'iou': 1.0, 'hit70': 1.0}.get(k, 0.0)
        assert err[k] == pytest.approx(expected, abs=1e-9), k


def test_errors_by_hand():
    gt = [_frame([[0, 1.6, 10], [6, 1.6, 20], [-6, 1.6, 40]])]
    # ry = 0: length (4 m) along x, width (2 m) along z.
    # car 0: 1 m along x: overlap 3 x 2, IoU 6 / (8 + 8 - 6) = 0.6;
    # car 1: 0.5 m nearer (overlap 4 x 1.5: IoU 0.6) and turned by pi;
    # car 2: 1 m further (overlap below half the width), 0.3 m longer, yaw
    # + 0.1: IoU under 0.6
    dt = [_frame([[1, 1.6, 10], [6, 1.6, 19.5], [-6, 1.6, 41]],
                 yaws=[0.0, np.pi, 0.1], score=True)]
    dt[0]['dimensions'][2] = [4.3, 1.5, 2.0]
    err = box_errors(gt, dt)
    assert err['recall'] == 1.0
    assert err['dx'] == pytest.approx(0.0)  # median of 1, 0, 0
    assert err['dz'] == pytest.approx(0.5)  # median of 0, 0.5, 1
    assert err['dz_bias'] == pytest.approx(0.5 / 3)
    assert err['dz_rel'] == pytest.approx(0.025)  # 0, 0.5/20, 1/40
    assert err['dl'] == pytest.approx(0.0)
    assert err['dyaw'] == pytest.approx(0.0, abs=1e-9)  # 0, pi -> 0, 0.1
    assert err['flip'] == pytest.approx(1 / 3)
    assert err['iou'] == pytest.approx(0.6, abs=1e-6)
    assert err['hit70'] == 0.0  # no pair reaches IoU 0.7
    lone = box_errors([_frame([[0, 1.6, 10]])], [_frame([[1, 1.6, 10]])])
    assert lone['iou'] == pytest.approx(0.6, abs=1e-6)
    flipped = box_errors([_frame([[0, 1.6, 10]])],
                         [_frame([[0, 1.6, 10]], yaws=[np.pi])])
    assert flipped['iou'] == pytest.approx(1.0, abs=1e-6)
    assert flipped['dyaw'] == pytest.approx(0.0, abs=1e-9)
    assert flipped['flip'] == 1.0
    # one of two objects paired at IoU 1, the other not paired at all
    half = box_errors([_frame([[0, 1.6, 10], [9, 1.6, 30]])],
                      [_frame([[0, 1.6, 10]], yaws=[np.pi])])
    assert half['hit70'] == 0.5 and half['recall'] == 0.5


def test_pairs_are_one_to_one_nearest_first_and_within_reach():
    gt_xz = np.array([[0.0, 10.0], [0.5, 10.0], [20.0, 10.0]])
    dt_xz = np.array([[0.6, 10.0], [30.0, 10.0]])
    # dt 0 is nearest to gt 1 (0.1 m); gt 0 stays unpaired; dt 1 is 10 m
    # from gt 2, beyond reach
    assert match_nearest(gt_xz, dt_xz, 2.0) == [(1, 0)]
    assert match_nearest(gt_xz, dt_xz, 11.0) == [(1, 0), (2, 1)]
    assert match_nearest(gt_xz, dt_xz[:0], 2.0) == []


def test_only_counted_objects_and_same_class_detections():
    # car 1 is 20 px high: not a moderate object (KITTI: > 25 px); the
    # pedestrian detection on car 0 does not pair with it
    gt = [_frame([[0, 1.6, 10], [8, 1.6, 50]], heights=[60, 20])]
    dt = [_frame([[0, 1.6, 10], [8, 1.6, 50]], names=['Pedestrian', 'Car'])]
    err = box_errors(gt, dt)
    assert err['num_objects'] == 1 and err['num_matched'] == 0
    assert err['recall'] == 0.0 and np.isnan(err['dz'])
    assert err['hit70'] == 0.0
    # at hard (> 25 px too) it is still not counted; easy needs > 40 px
    assert box_errors(gt, gt, difficulty=0)['num_objects'] == 1
    # frames without objects or detections
    empty = _frame(np.zeros((0, 3)))
    err = box_errors([empty, gt[0]], [empty, empty])
    assert err['num_objects'] == 1 and err['num_matched'] == 0


def test_bad_arguments_are_named():
    gt = [_frame([[0, 1.6, 10]])]
    with pytest.raises(ValueError, match="'Van'"):
        box_errors(gt, gt, class_name='Van')
    with pytest.raises(ValueError, match='1 annotated frames but 2'):
        box_errors(gt, gt * 2)


def test_metric_reports_box_errors_when_asked(capsys):
    gt = [_frame([[0, 1.6, 10], [6, 1.6, 20]])]
    dt = [_frame([[0, 1.6, 10.4], [6, 1.6, 20.4]], score=True)]
    on = MonoKittiMetric(ann_file='val_infos.pkl', box_errors=True)
    res = on.kitti_evaluate(dict(pred_instances_3d=dt), gt, classes=['Car'])
    assert res['pred_instances_3d/KITTI/Car_moderate_err_dz'] == \
        pytest.approx(0.4)
    assert res['pred_instances_3d/KITTI/Car_moderate_err_recall'] == 1.0
    assert 'Car moderate box errors (m, rad): 2 of 2 objects paired' in \
        capsys.readouterr().out
    off = MonoKittiMetric(ann_file='val_infos.pkl')
    res = off.kitti_evaluate(dict(pred_instances_3d=dt), gt, classes=['Car'])
    assert not any('_err_' in k for k in res)
