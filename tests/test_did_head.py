"""Tests of the DID-M3D head: targets, losses, decoding, gradients.

Spec Part B sections 1.5, 1.6, 2.4, 2.5 and 3. Everything runs on tiny
inputs: a 96x320 input frame and 24x80 stride-4 features.
"""
import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmdet3d.structures import CameraInstance3DBoxes, Det3DDataSample
from mmengine.structures import InstanceData, PixelData

import monoasd  # noqa: F401  (registers the plugin)
from monoasd.models.dense_heads.did_m3d_head import (KITTI_MEAN_SIZES, TERMS,
                                                     DIDM3DHead)
from monoasd.models.task_modules import (DIDM3DCoder, decode_heading,
                                         encode_heading)
from monoasd.models.utils import centernet_gaussian_radius
from monoasd.models.losses import HeadingBinLoss, LaplacianAleatoricLoss
from monoasd.models.utils import scale_grad

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ('Pedestrian', 'Car', 'Cyclist')
FEAT_HW = (24, 80)
IN_HW = (96, 320)
#: KITTI-like P2 (original frame, about 1242x375).
KITTI_P2 = np.array([[721.5377, 0.0, 609.5593, 44.85728],
                     [0.0, 721.5377, 172.854, 0.2163791],
                     [0.0, 0.0, 1.0, 0.002745884]])
KITTI_W = 1242


# --------------------------------------------------------------- helpers
def hand_radius(w, h, o=0.7):
    """CenterNet gaussian_radius, written out independently (design D1.5)."""
    b1 = h + w
    c1 = w * h * (1 - o) / (1 + o)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (h + w)
    c2 = (1 - o) * w * h
    r2 = (b2 + math.sqrt(b2 ** 2 - 16 * c2)) / 2
    b3 = -2 * o * (h + w)
    c3 = (o - 1) * w * h
    r3 = (b3 + math.sqrt(b3 ** 2 - 16 * o * c3)) / 2
    return max(0, int(min(r1, r2, r3)))


def hand_heading(alpha, num_bins=12):
    """Spec B1.5 multi-bin encoding in float64."""
    step = 2 * math.pi / num_bins
    a = alpha % (2 * math.pi)
    shifted = (a + step / 2) % (2 * math.pi)
    b = int(math.floor(shifted / step))
    return b, shifted - (b * step + step / 2)


def wrap(a):
    return (a + math.pi) % (2 * math.pi) - math.pi


def angle_diff(a, b):
    d = (np.asarray(a) - np.asarray(b)) % (2 * math.pi)
    return np.minimum(d, 2 * math.pi - d)


def project(cam, pts):
    """(N, 3) camera points -> (N, 2) pixels with a 3x4 matrix."""
    pts = np.asarray(pts, dtype=np.float64)
    uvw = np.concatenate([pts, np.ones((len(pts), 1))], 1) @ cam.T
    return uvw[:, :2] / uvw[:, 2:]


def apply_affine(trans, pts):
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ trans[:2, :2].T + trans[:2, 2]


def flip_cam(cam, width):
    """Analytic flipped P2 of design D1.4 (cu' = W - cu)."""
    out = cam.copy()
    out[0, 2] = width - cam[0, 2]
    out[0, 3] = width * cam[2, 3] - cam[0, 3]
    return out


def to_4x4(cam):
    out = np.eye(4)
    out[:3] = cam
    return out.tolist()


def make_sample(trans, cam, boxes_orig, labels, bottoms, hwl, ry,
                centers_in=None):
    """Det3DDataSample with input-frame 2D boxes and projected centres.

    ``boxes_orig`` are original-frame 2D boxes; ``bottoms`` are KITTI
    bottom centres (x, y, z). ``centers_in`` overrides the input-frame
    projected gravity centres.
    """
    n = len(labels)
    bottoms = np.asarray(bottoms, dtype=np.float64).reshape(n, 3)
    hwl = np.asarray(hwl, dtype=np.float64).reshape(n, 3)
    grav = bottoms.copy()
    grav[:, 1] -= hwl[:, 0] / 2
    if centers_in is None:
        centers_in = apply_affine(trans, project(cam, grav)) if n else \
            np.zeros((0, 2))
    boxes_orig = np.asarray(boxes_orig, dtype=np.float64).reshape(n, 4)
    boxes_in = np.concatenate([
        apply_affine(trans, boxes_orig[:, :2]),
        apply_affine(trans, boxes_orig[:, 2:])
    ], 1) if n else np.zeros((0, 4))
    box3d = np.concatenate(
        [bottoms, hwl[:, [2, 0, 1]], np.asarray(ry).reshape(n, 1)], 1)
    sample = Det3DDataSample()
    sample.set_metainfo(
        dict(trans_mat=np.asarray(trans, dtype=np.float32),
             cam2img=to_4x4(cam), img_shape=IN_HW, pad_shape=IN_HW))
    gt = InstanceData()
    gt.bboxes = torch.tensor(boxes_in, dtype=torch.float32)
    gt.labels = torch.tensor(labels, dtype=torch.long)
    gt3 = InstanceData()
    gt3.bboxes_3d = CameraInstance3DBoxes(
        torch.tensor(box3d, dtype=torch.float32).reshape(n, 7))
    gt3.labels_3d = torch.tensor(labels, dtype=torch.long)
    gt3.centers_2d = torch.tensor(centers_in,
                                  dtype=torch.float32).reshape(n, 2)
    gt3.depths = torch.tensor(bottoms[:, 2], dtype=torch.float32)
    sample.gt_instances = gt
    sample.gt_instances_3d = gt3
    sample.box3d = box3d  # float64 GT for the tests
    sample.boxes_orig = boxes_orig
    return sample


def make_head(**kwargs):
    cfg = dict(in_channels=8, class_names=CLASSES, head_conv=16)
    cfg.update(kwargs)
    return DIDM3DHead(**cfg)


# ---------------------------------------------------- a hand-made sample
#: Identity affine (input = original frame) and a simple camera.
CAM = np.array([[100.0, 0.0, 160.0, 4.5], [0.0, 100.0, 48.0, 0.3],
                [0.0, 0.0, 1.0, 0.005]])
#: Observation angles of objects A, B, C, E (D is dropped).
ALPHAS = (math.pi / 3 + 0.05, -2.5, 3.1, 0.0)


def _x_for_u(u, z):
    """Camera x whose projection (with CAM) has input-frame column u."""
    return (u * (z + CAM[2, 3]) - CAM[0, 2] * z - CAM[0, 3]) / CAM[0, 0]


def hand_sample():
    """Five objects; D's centre is off the map, E's is in (-1, 0) cells.

    Depth map (input frame): 10 m in columns < 108, 15 m up to 272 and 0
    (no depth) from 272 on.
    """
    boxes = [[80, 16, 136, 72],    # A, Car, z 10: half in the 10 m region
             [200, 16, 256, 72],   # B, Cyclist, z 15: all 15 m
             [0, 0, 12, 8],        # D, Car: dropped
             [280, 16, 312, 48],   # C, Pedestrian, z 2.5: no depth
             [0, 40, 24, 80]]      # E, Car, z 10, centre u = -2 (kept)
    labels = [1, 2, 1, 0, 1]
    hwl = [[1.5, 1.6, 3.9], [1.7, 0.6, 1.8], [1.5, 1.6, 3.9],
           [1.75, 0.65, 0.85], [1.45, 1.55, 4.1]]
    zs = [10.0, 15.0, 10.0, 2.5, 10.0]
    xs = [-0.4, 1.5, -20.0, 0.5, _x_for_u(-2.0, 10.0)]
    ys = [1.2, 1.6, 1.5, 1.0, 1.4]
    bottoms = list(zip(xs, ys, zs))
    # ry from the wanted alpha: alpha = ry - atan2(u_c - cu, fu)
    alphas = [ALPHAS[0], ALPHAS[1], 0.0, ALPHAS[2], ALPHAS[3]]
    ry = [a + math.atan2((b[0] + b[2]) / 2 - CAM[0, 2], CAM[0, 0])
          for a, b in zip(alphas, boxes)]
    sample = make_sample(np.eye(3), CAM, boxes, labels, bottoms, hwl, ry)
    depth = torch.full((1, 1) + IN_HW, 15.0)
    depth[..., :108] = 10.0
    depth[..., 272:] = 0.0
    return sample, depth


@pytest.fixture(scope='module')
def hand_targets():
    sample, depth = hand_sample()
    empty = make_sample(np.eye(3), CAM, [], [], [], [], [])
    head = make_head()
    targets = head.get_targets([sample, empty], FEAT_HW,
                               torch.cat([depth, depth]))
    return head, sample, targets


# ------------------------------------------------------------ primitives
@pytest.mark.parametrize('w,h', [(10.0, 7.5), (14.0, 14.0), (6.0, 10.0),
                                 (35.2, 12.9), (0.5, 0.5)])
def test_gaussian_radius_matches_formula(w, h):
    assert centernet_gaussian_radius(w, h) == hand_radius(w, h)
    assert centernet_gaussian_radius(h, w) == hand_radius(w, h)


def test_gaussian_radius_literal_values():
    # r3 = (-19.6 + sqrt(19.6^2 + 16 * 0.7 * 0.3 * 49)) / 2 = 1.91
    assert centernet_gaussian_radius(7.0, 7.0) == 1
    # 14x14: r3 = (-39.2 + sqrt(1536.64 + 658.56)) / 2 = 3.83
    assert centernet_gaussian_radius(14.0, 14.0) == 3
    assert centernet_gaussian_radius(0.0, 0.0) == 0


@pytest.mark.parametrize('alpha,bin_,res', [
    (0.0, 0, 0.0),
    (math.pi / 6 + 0.01, 1, 0.01),
    (-math.pi / 12 - 1e-3, 11, math.pi / 12 - 1e-3),
    (-math.pi / 12 + 1e-3, 0, -math.pi / 12 + 1e-3),
    (math.pi, 6, 0.0),
    (-2.5, 7, 5 * math.pi / 6 - 2.5),
    (3.1, 6, 3.1 - math.pi),
])
def test_encode_heading_hand_cases(alpha, bin_, res):
    bins, resid = encode_heading(torch.tensor([alpha], dtype=torch.float64))
    assert bins.item() == bin_
    assert resid.item() == pytest.approx(res, abs=1e-9)
    assert hand_heading(alpha) == (bin_, pytest.approx(res, abs=1e-9))
    # decoding the one-hot bin and residual gives alpha in (-pi, pi]
    heading = torch.zeros(1, 24, dtype=torch.float64)
    heading[0, bin_] = 5.0
    heading[0, 12 + bin_] = res
    assert decode_heading(heading).item() == pytest.approx(
        wrap(alpha) if alpha != math.pi else math.pi, abs=1e-9)


def test_heading_round_trip_random():
    torch.manual_seed(0)
    alpha = (torch.rand(1000, dtype=torch.float64) * 2 - 1) * 3 * math.pi
    bins, res = encode_heading(alpha)
    assert bins.min() >= 0 and bins.max() <= 11
    assert (res >= -math.pi / 12 - 1e-9).all()
    assert (res < math.pi / 12 + 1e-9).all()
    heading = torch.zeros(1000, 24, dtype=torch.float64)
    heading.scatter_(1, bins[:, None], 3.0)
    heading.scatter_(1, bins[:, None] + 12, res[:, None])
    dec = decode_heading(heading)
    assert (dec > -math.pi - 1e-9).all() and (dec <= math.pi + 1e-9).all()
    assert angle_diff(dec.numpy(), alpha.numpy()).max() < 1e-9


# --------------------------------------------------------------- targets
def test_targets_per_object(hand_targets):
    _, sample, t = hand_targets
    keep = [0, 1, 3, 4]  # D (index 2) has its centre off the map
    box3d = sample.box3d[keep]
    centers = sample.gt_instances_3d.centers_2d.numpy()[keep] / 4.0
    boxes = sample.gt_instances.bboxes.numpy()[keep] / 4.0
    labels = [1, 2, 0, 1]
    assert t['labels'].tolist() == labels
    assert t['batch_idx'].tolist() == [0, 0, 0, 0]
    # centre E at u = -2 (cell -0.5) survives with cell 0 (truncation)
    assert centers[3, 0] == pytest.approx(-0.5, abs=1e-4)
    cells = np.trunc(centers).astype(np.int64)
    assert t['cells'].tolist() == cells.tolist()
    assert cells[0].tolist() == [39, 13]
    np.testing.assert_allclose(t['offset_3d'].numpy(), centers - cells,
                               atol=1e-5)
    c2 = (boxes[:, :2] + boxes[:, 2:]) / 2
    np.testing.assert_allclose(t['offset_2d'].numpy(), c2 - cells,
                               atol=1e-5)
    np.testing.assert_allclose(t['size_2d'].numpy(),
                               [[14, 14], [14, 14], [8, 8], [6, 10]],
                               atol=1e-5)
    np.testing.assert_allclose(t['depth'].numpy(), [10, 15, 2.5, 10],
                               atol=1e-6)
    mean = np.array([KITTI_MEAN_SIZES[CLASSES[c]] for c in labels])
    hwl = box3d[:, [4, 5, 3]]
    np.testing.assert_allclose(t['size_3d'].numpy(), hwl - mean, atol=1e-5)
    np.testing.assert_allclose(t['boxes_2d'].numpy(), boxes * 4, atol=1e-4)
    # heading from alpha = ry - atan2(u_c - cu, fu)
    assert t['heading_bin'].tolist() == [2, 7, 6, 0]
    np.testing.assert_allclose(
        t['heading_res'].numpy(),
        [0.05, 5 * math.pi / 6 - 2.5, 3.1 - math.pi, 0.0], atol=1e-5)
    for a, b, r in zip(ALPHAS, t['heading_bin'], t['heading_res']):
        hb, hr = hand_heading(a)
        assert hb == int(b) and hr == pytest.approx(float(r), abs=1e-5)


def test_targets_heatmap(hand_targets):
    _, sample, t = hand_targets
    heat = t['heatmap']
    assert heat.shape == (2, 3) + FEAT_HW
    assert not heat[1].any()  # the empty sample
    assert int((heat == 1).sum()) == 4
    expected = torch.zeros(3, *FEAT_HW)
    boxes = sample.gt_instances.bboxes / 4
    centers = sample.gt_instances_3d.centers_2d / 4
    for j in (0, 1, 3, 4):
        w, h = (boxes[j, 2:] - boxes[j, :2]).tolist()
        r = hand_radius(w, h)
        cx, cy = [int(math.trunc(v)) for v in centers[j].tolist()]
        sigma = (2 * r + 1) / 6
        cls = int(sample.gt_instances_3d.labels_3d[j])
        assert heat[0, cls, cy, cx] == 1
        for y in range(cy - r, cy + r + 1):
            for x in range(cx - r, cx + r + 1):
                if 0 <= y < FEAT_HW[0] and 0 <= x < FEAT_HW[1]:
                    g = math.exp(-((x - cx)**2 + (y - cy)**2) /
                                 (2 * sigma**2))
                    expected[cls, y, x] = max(expected[cls, y, x], g)
    torch.testing.assert_close(heat[0], expected, atol=1e-6, rtol=1e-5)
    # radii used: A, B: 14x14 -> 3; C: 8x8 -> 2; E: 6x10 -> 2
    row = heat[0, 1, 13]
    assert torch.nonzero(row[30:50]).flatten().add(30).tolist() == list(
        range(36, 43))
    assert torch.nonzero(row[:10]).flatten().tolist() == [0, 1, 2]


def test_targets_depth_pm3_rule(hand_targets):
    _, _, t = hand_targets
    vis, att, mask = t['vis_depth'], t['att_depth'], t['depth_mask']
    assert vis.shape == att.shape == mask.shape == (4, 7, 7)
    assert mask.dtype == torch.bool
    # A (z 10), GT box [20, 34] x [4, 18] in feature cells: the depth map is
    # 10 m up to cell 26 and 15 m from 27. Column bins 0-2 sample 10 m;
    # bin 3 samples x = 26.5 (12.5 m) and 27.5 (15 m) -> 13.75 > 10 + 3;
    # bins 4-6 sample 15 m.
    mask_a = torch.zeros(7, 7, dtype=torch.bool)
    mask_a[:, :3] = True
    assert torch.equal(mask[0], mask_a)
    vis_a = torch.zeros(7, 7)
    vis_a[:, :3] = 10.0
    torch.testing.assert_close(vis[0], vis_a)
    torch.testing.assert_close(att[0], 10.0 - vis_a)
    # B (z 15): all cells 15 m
    assert mask[1].all()
    torch.testing.assert_close(vis[1], torch.full((7, 7), 15.0))
    torch.testing.assert_close(att[1], torch.zeros(7, 7))
    # C (z 2.5) on zero depth: |0 - 2.5| < 3 but depth must be > 0
    assert not mask[2].any()
    torch.testing.assert_close(vis[2], torch.zeros(7, 7))
    torch.testing.assert_close(att[2], torch.full((7, 7), 2.5))
    # E (z 10) on 10 m
    assert mask[3].all()
    torch.testing.assert_close(vis[3], torch.full((7, 7), 10.0))


def test_targets_depth_margin_option():
    sample, depth = hand_sample()
    head = make_head(depth_valid_margin=4.0)
    t = head.get_targets([sample], FEAT_HW, depth)
    # with +-4 m the mixed 13.75 m column of A becomes valid
    assert t['depth_mask'][0, :, :4].all()
    assert not t['depth_mask'][0, :, 4:].any()
    torch.testing.assert_close(t['vis_depth'][0, :, 3],
                               torch.full((7, ), 13.75))


def test_targets_empty_batch():
    head = make_head()
    empty = make_sample(np.eye(3), CAM, [], [], [], [], [])
    t = head.get_targets([empty], FEAT_HW, torch.zeros((1, 1) + IN_HW))
    assert t['labels'].shape == (0, )
    assert t['cells'].shape == (0, 2) and t['cells'].dtype == torch.long
    assert t['vis_depth'].shape == (0, 7, 7)
    assert t['depth_mask'].dtype == torch.bool
    assert not t['heatmap'].any()


# ---------------------------------------------------------------- losses
def test_laplacian_aleatoric_loss_hand():
    torch.manual_seed(0)
    x, tgt, u = torch.randn(3, 5, 7, 7, dtype=torch.float64).unbind(0)
    loss = LaplacianAleatoricLoss()(x, tgt, u)
    hand = (math.sqrt(2) * torch.exp(-u / 2) * (x - tgt).abs() +
            u / 2).mean()
    torch.testing.assert_close(loss, hand)
    # one element by hand: |1 - 3| = 2, u = 2 ln 2 -> sqrt(2) * 2 / 2 + ln 2
    one = LaplacianAleatoricLoss()(
        torch.tensor([1.0]), torch.tensor([3.0]),
        torch.tensor([2 * math.log(2.0)]))
    assert one.item() == pytest.approx(math.sqrt(2) + math.log(2), rel=1e-6)
    # masked mean
    mask = torch.rand(5, 7, 7) > 0.5
    hand_m = (math.sqrt(2) * torch.exp(-u[mask] / 2) *
              (x[mask] - tgt[mask]).abs() + u[mask] / 2).mean()
    torch.testing.assert_close(
        LaplacianAleatoricLoss()(x, tgt, u, mask), hand_m)


def test_laplacian_aleatoric_loss_empty_mask():
    x = torch.randn(2, 7, 7, requires_grad=True)
    u = torch.randn(2, 7, 7, requires_grad=True)
    loss = LaplacianAleatoricLoss()(x, torch.randn(2, 7, 7), u,
                                    torch.zeros(2, 7, 7, dtype=torch.bool))
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(x.grad).all() and not x.grad.any()
    empty = LaplacianAleatoricLoss()(torch.zeros(0, 7, 7),
                                     torch.zeros(0, 7, 7),
                                     torch.zeros(0, 7, 7))
    assert empty.item() == 0.0


def test_heading_bin_loss_hand():
    pred = torch.zeros(2, 24, dtype=torch.float64)
    pred[0, 3] = 2.0             # logits: 2 at bin 3, 0 elsewhere
    pred[0, 12 + 3] = 0.1        # residual of bin 3
    pred[1, 12 + 5] = -0.2       # uniform logits, residual of bin 5
    pred[1, 12 + 6] = 7.0        # a residual at a non-GT bin is ignored
    bins = torch.tensor([3, 5])
    res = torch.tensor([0.05, 0.1], dtype=torch.float64)
    ce0 = -(2.0 - math.log(math.exp(2.0) + 11))
    ce1 = math.log(12.0)
    l1 = (abs(0.1 - 0.05) + abs(-0.2 - 0.1)) / 2
    loss = HeadingBinLoss()(pred, bins, res)
    assert loss.item() == pytest.approx((ce0 + ce1) / 2 + l1, rel=1e-9)
    assert HeadingBinLoss()(torch.zeros(0, 24), bins[:0],
                            res[:0]).item() == 0.0


def _random_outputs(targets, num_classes=3, seed=0):
    """Random dense and ROI outputs shaped like the head's."""
    g = torch.Generator().manual_seed(seed)
    b = targets['heatmap'].shape[0]
    n = targets['labels'].numel()

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).requires_grad_()

    rois = dict(offset_3d=r(n, 2), size_3d=r(n, 3), heading=r(n, 24),
                vis_depth=r(n, 7, 7).abs().add(5).detach().requires_grad_(),
                att_depth=r(n, 7, 7), vis_depth_uncer=r(n, 7, 7),
                att_depth_uncer=r(n, 7, 7))
    rois['ins_depth'] = rois['vis_depth'] + rois['att_depth']
    rois['ins_depth_uncer'] = torch.logsumexp(
        torch.stack([rois['vis_depth_uncer'], rois['att_depth_uncer']]), 0)
    return dict(heatmap=r(b, num_classes, *FEAT_HW, scale=2.0),
                offset_2d=r(b, 2, *FEAT_HW), size_2d=r(b, 2, *FEAT_HW),
                rois=rois)


def hand_focal(logits, target):
    p = logits.sigmoid().clamp(1e-4, 1 - 1e-4).double()
    y = target.double()
    pos = y == 1
    pos_l = (torch.log(p) * (1 - p)**2)[pos].sum()
    neg_l = (torch.log(1 - p) * p**2 * (1 - y)**4)[~pos].sum()
    return -(pos_l + neg_l) / max(int(pos.sum()), 1)


def laplace(x, t, u):
    return (math.sqrt(2) * torch.exp(-u / 2) * (x - t).abs() + u / 2).mean()


def test_loss_by_feat_hand(hand_targets):
    head, _, t = hand_targets
    head = make_head()
    head.train()
    head.htl.weights.fill_(1.0)
    out = _random_outputs(t)
    losses = head.loss_by_feat(out, t)
    assert set(losses) == {f'loss_{k}' for k in TERMS}
    rois = out['rois']
    b, cells = t['batch_idx'], t['cells']
    off2d = out['offset_2d'][b, :, cells[:, 1], cells[:, 0]]
    size2d = out['size_2d'][b, :, cells[:, 1], cells[:, 0]]
    m = t['depth_mask']
    z = t['depth'][:, None, None].expand(-1, 7, 7)
    nb = torch.arange(len(b))
    logits, bins = rois['heading'][:, :12], t['heading_bin']
    ce = (torch.logsumexp(logits, 1) - logits[nb, bins]).mean()
    hand = dict(
        heatmap=hand_focal(out['heatmap'], t['heatmap']),
        offset_2d=(off2d - t['offset_2d']).abs().mean(),
        size_2d=(size2d - t['size_2d']).abs().mean(),
        depth=laplace(rois['vis_depth'][m], t['vis_depth'][m],
                      rois['vis_depth_uncer'][m]) +
        laplace(rois['att_depth'][m], t['att_depth'][m],
                rois['att_depth_uncer'][m]) +
        laplace(rois['ins_depth'], z, rois['ins_depth_uncer']),
        offset_3d=(rois['offset_3d'] - t['offset_3d']).abs().mean(),
        size_3d=(rois['size_3d'] - t['size_3d']).abs().mean(),
        heading=ce + (rois['heading'][nb, 12 + bins] -
                      t['heading_res']).abs().mean())
    for k in TERMS:
        assert losses[f'loss_{k}'].item() == pytest.approx(
            hand[k].item(), rel=1e-5, abs=1e-6), k
    # the HTL statistics saw the unweighted terms once
    assert head.htl.counts.tolist() == [1.0] * 7
    i = head.htl.terms.index('depth')
    assert head.htl.sums[i].item() == pytest.approx(hand['depth'].item(),
                                                    rel=1e-5)


def test_loss_by_feat_default_htl_weights(hand_targets):
    _, _, t = hand_targets
    head = make_head()
    head.train()
    losses = head.loss_by_feat(_random_outputs(t), t)
    for k in ('heatmap', 'offset_2d', 'size_2d'):
        assert losses[f'loss_{k}'].item() > 0
    for k in ('depth', 'offset_3d', 'size_3d', 'heading'):
        assert losses[f'loss_{k}'].item() == 0.0
    head.eval()  # no statistics outside training
    before = head.htl.counts.clone()
    head.loss_by_feat(_random_outputs(t), t)
    assert torch.equal(head.htl.counts, before)
    no_htl = make_head(htl=None)
    losses = no_htl.loss_by_feat(_random_outputs(t), t)
    assert losses['loss_depth'].item() > 0


def test_loss_by_feat_no_objects():
    torch.manual_seed(0)
    head = make_head().train()
    head.htl.weights.fill_(1.0)
    empty = make_sample(np.eye(3), CAM, [], [], [], [], [])
    off_map = make_sample(np.eye(3), CAM, [[0, 0, 8, 8]], [1],
                          [[-20.0, 1.5, 10.0]], [[1.5, 1.6, 3.9]], [0.0])
    t = head.get_targets([empty, off_map], FEAT_HW,
                         torch.zeros((2, 1) + IN_HW))
    assert t['labels'].numel() == 0
    feat = torch.randn(2, 8, *FEAT_HW, requires_grad=True)
    out = head.forward_train(feat, t)
    losses = head.loss_by_feat(out, t)
    for k in TERMS[1:]:
        v = losses[f'loss_{k}']
        assert torch.is_tensor(v) and torch.isfinite(v) and v.item() == 0.0
    heat = losses['loss_heatmap']
    assert torch.isfinite(heat) and heat.item() > 0
    assert heat.item() == pytest.approx(
        hand_focal(out['heatmap'], t['heatmap']).item(), rel=1e-5)
    sum(losses.values()).backward()
    assert torch.isfinite(feat.grad).all()


# -------------------------------------------------------------- decoding
def decode_samples():
    """Two images: a scaled+shifted affine, and a crop of a flipped view."""
    trans0 = np.array([[0.26, 0.0, -3.0], [0.0, 0.26, 5.0], [0, 0, 1.0]])
    trans1 = np.array([[0.3, 0.0, -50.0], [0.0, 0.3, -10.0], [0, 0, 1.0]])
    cam1 = flip_cam(KITTI_P2, KITTI_W)
    s0 = make_sample(
        trans0, KITTI_P2,
        boxes_orig=[[420, 180, 520, 240], [700, 160, 745, 230],
                    [600, 160, 640, 215]],
        labels=[1, 2, 0],
        bottoms=[[-3.0, 1.6, 15.0], [4.0, 1.7, 25.0], [0.5, 1.5, 40.0]],
        hwl=[[1.5, 1.6, 3.9], [1.7, 0.6, 1.8], [1.75, 0.65, 0.85]],
        ry=[0.4, -2.0, 3.0])
    s1 = make_sample(
        trans1, cam1,
        boxes_orig=[[700, 190, 820, 260], [450, 170, 520, 215]],
        labels=[1, 1],
        bottoms=[[2.0, 1.65, 12.0], [-6.0, 1.7, 30.0]],
        hwl=[[1.52, 1.62, 3.85], [1.4, 1.7, 4.3]],
        ry=[-0.7, 1.2])
    return [s0, s1]


def test_decode_inverts_encode(monkeypatch):
    samples = decode_samples()
    head = make_head().eval()
    bsz = len(samples)
    t = head.get_targets(samples, FEAT_HW, torch.zeros((bsz, 1) + IN_HW))
    n = t['labels'].numel()
    assert n == 5  # all centres on the map, distinct cells
    assert len({(int(b), *c) for b, c in zip(t['batch_idx'],
                                             t['cells'].tolist())}) == 5

    heat = torch.full((bsz, 3) + FEAT_HW, -10.0)
    off2d = torch.zeros(bsz, 2, *FEAT_HW)
    size2d = torch.zeros(bsz, 2, *FEAT_HW)
    lookup = {}
    for i in range(n):
        b, (cx, cy) = int(t['batch_idx'][i]), t['cells'][i].tolist()
        heat[b, t['labels'][i], cy, cx] = 10.0
        off2d[b, :, cy, cx] = t['offset_2d'][i]
        size2d[b, :, cy, cx] = t['size_2d'][i]
        lookup[(b, cx, cy)] = i
    dense = dict(heatmap=heat, offset_2d=off2d, size_2d=size2d)

    def fake_forward_rois(feat, batch_idx, centers, labels, dense_, trans,
                          cams):
        m = len(batch_idx)
        out = dict(offset_3d=torch.zeros(m, 2), size_3d=torch.zeros(m, 3),
                   heading=torch.zeros(m, 24),
                   ins_depth=torch.ones(m, 7, 7),
                   ins_depth_uncer=torch.full((m, 7, 7), -20.0))
        for j in range(m):
            i = lookup.get((int(batch_idx[j]), *centers[j].tolist()))
            if i is None:
                continue
            assert int(labels[j]) == int(t['labels'][i])
            out['offset_3d'][j] = t['offset_3d'][i]
            out['size_3d'][j] = t['size_3d'][i]
            hb = int(t['heading_bin'][i])
            out['heading'][j, hb] = 10.0
            out['heading'][j, 12 + hb] = t['heading_res'][i]
            out['ins_depth'][j] = t['depth'][i]
        return out

    monkeypatch.setattr(head, 'forward_rois', fake_forward_rois)
    res3d, res2d = head.predict_by_feat(torch.zeros(bsz, 8, *FEAT_HW),
                                        dense, samples)
    for sample, r3, r2 in zip(samples, res3d, res2d):
        gt = sample.box3d
        assert len(r3.bboxes_3d) == len(gt)
        assert isinstance(r3.bboxes_3d, CameraInstance3DBoxes)
        order = np.argsort(r3.bboxes_3d.tensor[:, 2].numpy())
        gt_order = np.argsort(gt[:, 2])
        pred = r3.bboxes_3d.tensor.numpy()[order].astype(np.float64)
        gt = gt[gt_order]
        np.testing.assert_allclose(pred[:, :6], gt[:, :6], rtol=1e-3,
                                   atol=1e-3)
        assert angle_diff(pred[:, 6], gt[:, 6]).max() < 1e-3
        assert r3.labels_3d[order].tolist() == \
            sample.gt_instances_3d.labels_3d[gt_order].tolist()
        assert (r3.scores_3d > 0.99).all()
        np.testing.assert_allclose(
            r2.bboxes.numpy()[order], sample.boxes_orig[gt_order],
            rtol=1e-4, atol=2e-2)
        assert torch.equal(r2.labels, r3.labels_3d)


# ------------------------------------------------------------- gradients
def _detector(config, model_type=None):
    from mmdet3d.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(str(ROOT / 'configs/monoasd' / config))
    if model_type is not None:
        cfg.model.type = model_type
    cfg.model.backbone.init_cfg = None
    cfg.model.bbox_head.head_conv = 16
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet3d'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return model.train()


def _grad_batch(samples):
    torch.manual_seed(1)
    bsz = len(samples)
    depth = torch.full((bsz, 1) + IN_HW, 60.0)
    for b, s in enumerate(samples):
        for box, z in zip(s.gt_instances.bboxes.tolist(), s.box3d[:, 2]):
            x1, y1, x2, y2 = [int(round(v)) for v in box]
            depth[b, :, max(y1, 0):y2, max(x1, 0):x2] = float(z)
    for s, d in zip(samples, depth):
        s.gt_depth_map = PixelData(data=d)
    inputs = dict(imgs=torch.randn(bsz, 3, *IN_HW),
                  depth_imgs=depth.expand(-1, 3, -1, -1) / 80.0)
    return inputs


def _dla_dead_params(model):
    """Parameters that legitimately get no gradient.

    In DLA-34 (mmdet3d ``DLANet`` as in the original CenterNet DLA) a Tree
    with ``levels > 1`` computes ``identity = project(bottom)`` and passes
    it to ``tree1``, itself a Tree, whose forward overwrites its
    ``identity`` argument. The outer ``project`` (levels 3 and 4 of
    DLA-34) therefore never reaches the loss; the detector freezes it
    (``freeze_dead_dla_projections``), so DDP runs with
    ``find_unused_parameters=False``.
    """
    from mmdet3d.models.backbones.dla import Tree
    dead = set()
    for name, m in model.named_modules():
        if isinstance(m, Tree) and m.levels > 1 and m.project is not None:
            dead |= {f'{name}.project.{n}'
                     for n, _ in m.project.named_parameters()}
    assert sorted({n.split('.project')[0] for n in dead}) == [
        'backbone.level3', 'backbone.level4']
    assert len(dead) == 6
    return dead


@pytest.mark.parametrize('config', [
    'did-m3d_dla34_tiny_mini-kitti-car_student.py',
    'did-m3d_dla34_tiny_mini-kitti-car_teacher.py'
])
def test_gradients_reach_every_parameter(config):
    model = _detector(config)
    expected = 'TeacherDetector' if 'teacher' in config else \
        'StudentDetector'
    assert type(model).__name__ == expected
    samples = decode_samples()
    # the tiny configs train Car only: relabel every object as class 0
    for s in samples:
        s.gt_instances.labels[:] = 0
        s.gt_instances_3d.labels_3d[:] = 0
    inputs = _grad_batch(samples)
    model.bbox_head.htl.weights.fill_(1.0)
    losses = model.loss(inputs, samples)
    assert set(losses) == {f'loss_{k}' for k in TERMS}
    for k, v in losses.items():
        assert torch.isfinite(v) and v.item() != 0.0, k
    sum(losses.values()).backward()
    frozen = {name for name, p in model.named_parameters()
              if not p.requires_grad}
    assert frozen == _dla_dead_params(model)
    assert all(p.grad is None for n, p in model.named_parameters()
               if n in frozen)
    # what DDP with find_unused_parameters=False needs
    missing = {name for name, p in model.named_parameters()
               if p.requires_grad and p.grad is None}
    assert not missing, f'parameters without a gradient: {sorted(missing)}'
    bad = [name for name, p in model.named_parameters()
           if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f'non-finite gradients: {bad}'
    zero = [name for name, p in model.named_parameters()
            if p.grad is not None and not p.grad.any()]
    assert not zero, f'all-zero gradients: {zero}'


def test_coder_encode_decode_round_trip():
    """DIDM3DCoder: decode(encode(box)) is the box, through a scaled and
    shifted affine and a camera with a translation column."""
    coder = DIDM3DCoder()
    cam = torch.tensor(CAM, dtype=torch.float32)
    trans = torch.tensor([[0.5, 0.0, -3.0], [0.0, 0.5, 2.0], [0, 0, 1.0]])
    # bottom centre (x, y, z), (l, h, w), yaw
    boxes_3d = torch.tensor([[2.0, 1.6, 20.0, 3.9, 1.5, 1.6, 0.3],
                             [-4.0, 1.7, 35.0, 4.2, 1.4, 1.7, -2.9]])
    grav = boxes_3d[:, :3] - torch.tensor([0.0, 1.0, 0.0]) * \
        boxes_3d[:, 4:5] / 2
    uvw = torch.cat([grav, torch.ones(2, 1)], 1) @ cam.T
    uv = uvw[:, :2] / uvw[:, 2:]
    centre_in = torch.cat([uv, torch.ones(2, 1)], 1) @ trans.T
    c3 = centre_in[:, :2] / coder.down_ratio
    cells = torch.trunc(c3).long()
    b4 = torch.cat([c3 - torch.tensor([3.0, 2.0]),
                    c3 + torch.tensor([2.0, 1.5])], 1)
    mean = torch.tensor([[1.5, 1.6, 3.9], [1.5, 1.6, 3.9]])
    enc = coder.encode(b4, c3, cells, boxes_3d, mean, trans, cam)
    torch.testing.assert_close(enc['size_3d'],
                               boxes_3d[:, [4, 5, 3]] - mean)
    torch.testing.assert_close(enc['offset_3d'], c3 - cells.float())
    # heading outputs: a one-hot bin and the residual
    heading = torch.zeros(2, 2 * coder.num_heading_bins)
    heading[torch.arange(2), enc['heading_bin']] = 10.0
    heading[torch.arange(2), coder.num_heading_bins + enc['heading_bin']] = \
        enc['heading_res']
    out_3d, out_2d = coder.decode(cells, enc['offset_2d'], enc['size_2d'],
                                  enc['offset_3d'], enc['size_3d'], heading,
                                  enc['depth'], mean, trans.expand(2, 3, 3),
                                  cam.expand(2, 3, 4))
    torch.testing.assert_close(out_3d, boxes_3d, atol=1e-4, rtol=1e-5)
    # the 2D boxes come back in the original frame
    inv = torch.linalg.inv(trans)
    corners = torch.cat([b4[:, :2] * 4, torch.ones(2, 1)], 1) @ inv.T
    torch.testing.assert_close(out_2d[:, :2], corners[:, :2], atol=1e-3,
                               rtol=1e-5)
    # back_project inverts P @ [X, Y, Z, 1] exactly, translation included
    x, y = coder.back_project(uv[:, 0], uv[:, 1], grav[:, 2],
                              cam.expand(2, 3, 4))
    torch.testing.assert_close(torch.stack([x, y], 1), grav[:, :2],
                               atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError):
        DIDM3DCoder(num_heading_bins=0)


def test_head_drops_into_mmdet3d_fcos_mono3d():
    """The head follows mmdet3d's monocular dense-head interface: inside
    mmdet3d's own ``FCOSMono3D`` (mmdet's ``loss`` and mmdet3d's 3D + 2D
    ``predict``) it gives the same losses and detections as in DIDM3D."""
    config = 'did-m3d_dla34_tiny_mini-kitti-car_student.py'
    ours = _detector(config)
    theirs = _detector(config, model_type='FCOSMono3D')
    assert type(theirs).__name__ == 'FCOSMono3D'
    theirs.load_state_dict(ours.state_dict())
    samples = decode_samples()
    for s in samples:
        s.gt_instances.labels[:] = 0
        s.gt_instances_3d.labels_3d[:] = 0
    inputs = _grad_batch(samples)
    for m in (ours, theirs):
        # batch statistics in BatchNorm (train mode) keep the random-init
        # outputs finite, so there are detections to compare
        m.train()
        m.bbox_head.htl.weights.fill_(1.0)
    with torch.no_grad():
        want = ours.loss(inputs, samples)
        got = theirs.loss(inputs, samples)
        assert set(got) == set(want) == {f'loss_{k}' for k in TERMS}
        for k in want:
            torch.testing.assert_close(got[k], want[k], msg=k)
        ours.bbox_head.score_thr = theirs.bbox_head.score_thr = 0.0
        pred_ours = ours.predict(inputs, copy.deepcopy(samples))
        pred_theirs = theirs.predict(inputs, copy.deepcopy(samples))
    for a, b in zip(pred_ours, pred_theirs):
        assert len(b.pred_instances_3d.scores_3d) > 0
        torch.testing.assert_close(b.pred_instances_3d.bboxes_3d.tensor,
                                   a.pred_instances_3d.bboxes_3d.tensor)
        torch.testing.assert_close(b.pred_instances.bboxes,
                                   a.pred_instances.bboxes)


def test_head_loss_without_depth_map_names_the_frame():
    head = make_head()
    sample, _ = hand_sample()
    sample.set_metainfo(dict(img_path='training/image_2/000042.png'))
    feat = torch.zeros(1, 8, *FEAT_HW)
    with pytest.raises(KeyError, match='000042.png has no gt_depth_map'):
        head.loss(feat, [sample])


def test_scale_grad_identity_forward_scaled_backward():
    x = torch.randn(3, 4, requires_grad=True)
    for s in (0.0, 0.25, 1.0):
        y = scale_grad(x, s)
        assert torch.equal(y, x)
        if s == 0:
            assert not y.requires_grad
            continue
        (g, ) = torch.autograd.grad((y * 3).sum(), x)
        assert torch.allclose(g, torch.full_like(x, 3 * s))
    with pytest.raises(ValueError, match='>= 0'):
        scale_grad(x, -1.0)
    with pytest.raises(ValueError, match='roi_grad_scale'):
        make_head(roi_grad_scale=-0.5)


def test_roi_grad_scale_scales_only_the_roi_terms_on_the_feature_map():
    """3D terms move ``feat`` by ``roi_grad_scale`` times as much; the
    2D terms and the ROI heads' own gradients are unchanged."""
    sample, depth = hand_sample()
    grads = {}
    for s in (1.0, 0.1):
        torch.manual_seed(0)
        head = make_head(htl=None, roi_grad_scale=s)
        head.train()
        feat = torch.randn(1, 8, *FEAT_HW, generator=torch.Generator(
        ).manual_seed(1)).requires_grad_()
        sample.gt_depth_map = PixelData(data=depth[0])
        losses = head.loss(feat, [sample])
        for k in ('loss_heatmap', 'loss_depth', 'loss_heading'):
            g_feat, g_head = torch.autograd.grad(
                losses[k], [feat, head.heading[0].weight],
                retain_graph=True, allow_unused=True)
            grads[s, k] = (g_feat, g_head)
    g1, g01 = grads[1.0, 'loss_heatmap'][0], grads[0.1, 'loss_heatmap'][0]
    assert torch.allclose(g1, g01)
    for k in ('loss_depth', 'loss_heading'):
        g1, g01 = grads[1.0, k][0], grads[0.1, k][0]
        assert g1.norm() > 0
        # the coordinate channels still pass the 2D box's (tiny) share
        assert torch.allclose(g01, 0.1 * g1, rtol=1e-3, atol=1e-3 *
                              float(g1.abs().max()))
    assert torch.allclose(grads[1.0, 'loss_heading'][1],
                          grads[0.1, 'loss_heading'][1])


def test_depth_output_init_zero_starts_every_roi_at_the_prior():
    """``depth_output_init='zero'``: whatever the seed, every visual depth
    starts at ``depth_prior x scale_depth`` and every log-variance at 0;
    the output convs still get gradients. The reference init does not."""
    sample, depth = hand_sample()
    sample.gt_depth_map = PixelData(data=depth[0])
    targets = None
    for seed in (0, 1):
        torch.manual_seed(seed)
        head = make_head(htl=None, depth_prior=20.0, depth_output_init='zero')
        head.train()
        feat = torch.randn(1, 8, *FEAT_HW, generator=torch.Generator(
        ).manual_seed(seed))
        targets = head.get_targets([sample], FEAT_HW)
        out = head.forward_train(feat, targets)
        rois = out['rois']
        # scale_depth is 1 here: the sample's affine is the identity
        assert torch.allclose(rois['vis_depth'],
                              torch.full_like(rois['vis_depth'], 20.0))
        assert torch.all(rois['vis_depth_uncer'] == 0)
        assert torch.all(rois['att_depth_uncer'] == 0)
        loss = head.loss_by_feat(out, targets)['loss_depth']
        grads = torch.autograd.grad(
            loss, [head.vis_depth[-1].weight, head.vis_depth_uncer[-1].weight,
                   head.att_depth_uncer[-1].weight])
        assert all(g.abs().sum() > 0 for g in grads)
    torch.manual_seed(0)
    ref = make_head(htl=None, depth_prior=20.0)
    out = ref.forward_train(torch.randn(1, 8, *FEAT_HW), targets)
    assert out['rois']['vis_depth_uncer'].std() > 0
    with pytest.raises(ValueError, match='depth_output_init'):
        make_head(depth_output_init='ones')


def test_norm_cfg_group_norm_normalises_each_roi_on_its_own():
    """``norm_cfg=GN``: the three ROI heads with a norm layer use
    GroupNorm, so in train mode one ROI's outputs do not depend on the
    other ROIs of the batch; with BN (the reference) they do."""
    sample, depth = hand_sample()
    sample.gt_depth_map = PixelData(data=depth[0])
    feat = torch.randn(1, 8, *FEAT_HW,
                       generator=torch.Generator().manual_seed(0))
    for norm, independent in ((dict(type='GN', num_groups=8), True),
                              (dict(type='BN'), False)):
        torch.manual_seed(0)
        head = make_head(htl=None, norm_cfg=norm).train()
        for branch in (head.offset_3d, head.size_3d, head.heading):
            assert isinstance(branch[1], nn.GroupNorm) == independent
        t = head.get_targets([sample], FEAT_HW)
        assert t['batch_idx'].numel() >= 2  # several ROIs in the batch
        dense = head.forward(feat)

        def rois(n):  # the first n ROIs, forwarded together
            return head.forward_rois(feat, t['batch_idx'][:n],
                                     t['cells'][:n], t['labels'][:n], dense,
                                     t['trans'], t['cams'])

        together, alone = rois(None), rois(1)
        for key in ('offset_3d', 'size_3d', 'heading'):
            same = torch.allclose(together[key][:1], alone[key], atol=1e-5)
            assert same == independent, key
