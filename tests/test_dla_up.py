"""Tests of the DID-M3D DLA-Up neck (design D2.2)."""
import math

import pytest
import torch
import torch.nn as nn

import monoasd  # noqa: F401  (registers the plugin)
from monoasd.models.necks.dla_up import DLAUp, IDAUp, bilinear_fill_

#: 1-D bilinear kernel of a factor-2 up-sampling (design D2.2).
BILINEAR_1D = torch.tensor([0.25, 0.75, 0.75, 0.25])


@pytest.fixture(scope='module')
def backbone_feats():
    """mmdet3d DLA-34 outputs for a (2, 3, 96, 320) input."""
    from mmdet3d.models.backbones import DLANet
    torch.manual_seed(0)
    backbone = DLANet(34, in_channels=3, norm_cfg=dict(type='BN'),
                      init_cfg=None).eval()
    with torch.no_grad():
        feats = backbone(torch.randn(2, 3, 96, 320))
    return feats


def _deconvs(neck):
    return [m for m in neck.modules() if isinstance(m, nn.ConvTranspose2d)]


def test_dla_up_output_shapes(backbone_feats):
    torch.manual_seed(0)
    neck = DLAUp().eval()
    assert [tuple(f.shape[1:]) for f in backbone_feats[2:]] == [
        (64, 24, 80), (128, 12, 40), (256, 6, 20), (512, 3, 10)]
    with torch.no_grad():
        outs = neck(backbone_feats)
    assert [tuple(o.shape) for o in outs] == [
        (2, 64, 24, 80), (2, 128, 12, 40), (2, 256, 6, 20), (2, 512, 3, 10)]
    # the stride-32 map is the raw backbone level 5, not a DLA-Up product
    assert torch.equal(outs[3], backbone_feats[5])
    assert all(torch.isfinite(o).all() for o in outs)


def test_dla_up_structure():
    neck = DLAUp()
    # three IDAUps with 1, 2 and 3 up-sampling stages (design D2.2)
    assert [len(ida.projs) for ida in (neck.ida_0, neck.ida_1,
                                       neck.ida_2)] == [1, 2, 3]
    assert [ida.projs[0][0].in_channels
            for ida in (neck.ida_0, neck.ida_1, neck.ida_2)] == [512, 256,
                                                                 128]
    deconvs = _deconvs(neck)
    assert len(deconvs) == 6
    for m in deconvs:
        assert m.kernel_size == (4, 4) and m.stride == (2, 2)
        assert m.padding == (1, 1) and m.bias is None
        assert m.groups == m.in_channels == m.out_channels
        assert m.weight.requires_grad  # trainable (design D2.2)
    for m in neck.modules():
        if isinstance(m, nn.Conv2d):
            assert m.bias is None


def test_dla_up_bilinear_deconv_weights():
    expected = BILINEAR_1D[:, None] * BILINEAR_1D[None, :]
    neck = DLAUp()
    neck.init_weights()  # must keep the bilinear fill
    for m in _deconvs(neck):
        assert m.weight.shape[1:] == (1, 4, 4)
        for w in m.weight:
            torch.testing.assert_close(w[0], expected)
    # the helper on its own
    deconv = nn.ConvTranspose2d(3, 3, 4, stride=2, padding=1, groups=3,
                                bias=False)
    bilinear_fill_(deconv)
    torch.testing.assert_close(deconv.weight[1, 0], expected)


def test_dla_up_bilinear_upsamples_constant():
    """A constant map stays constant in the interior after the deconv."""
    ida = IDAUp([4, 4], [1, 2], 4)
    up = ida.ups[0]
    bilinear_fill_(up)  # DLAUp's init fills every deconv like this
    with torch.no_grad():
        y = up(torch.full((1, 4, 5, 6), 2.0))
    assert y.shape == (1, 4, 10, 12)
    torch.testing.assert_close(y[..., 1:-1, 1:-1],
                               torch.full((1, 4, 8, 10), 2.0))


def test_dla_up_init():
    torch.manual_seed(0)
    neck = DLAUp()
    for m in neck.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    node = neck.ida_2.nodes[0][0]  # 3x3, 128 -> 64: 73728 weights
    expected_std = math.sqrt(2.0 / (3 * 3 * 64))
    assert abs(node.weight.std().item() / expected_std - 1) < 0.03
    assert abs(node.weight.mean().item()) < 0.05 * expected_std


def test_dla_up_in_indices():
    neck = DLAUp(in_channels=(8, 16, 32, 64), in_indices=(0, 1, 2, 3))
    feats = [torch.randn(1, c, 32 // s, 64 // s)
             for c, s in zip((8, 16, 32, 64), (1, 2, 4, 8))]
    outs = neck(feats)
    assert [tuple(o.shape) for o in outs] == [
        (1, 8, 32, 64), (1, 16, 16, 32), (1, 32, 8, 16), (1, 64, 4, 8)]
    with pytest.raises(ValueError):
        DLAUp(in_channels=(8, 16, 32))


def test_dla_up_group_norm_makes_samples_independent_in_training():
    """``norm_cfg=GN``: every norm layer is a GroupNorm (built as DLANet
    builds its own), and in train mode a sample's output no longer depends
    on the other samples of its batch, as it does with BN."""
    chans = (8, 16, 32, 64)
    feats = [torch.randn(3, c, 32 // s, 64 // s)
             for c, s in zip(chans, (1, 2, 4, 8))]
    for norm, independent in ((dict(type='GN', num_groups=4), True),
                              (dict(type='BN'), False)):
        torch.manual_seed(0)
        neck = DLAUp(in_channels=chans, in_indices=(0, 1, 2, 3),
                     norm_cfg=norm).train()
        norms = [m for m in neck.modules()
                 if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d))]
        assert len(norms) == 12  # 1 + 2 + 3 projections, as many nodes
        assert all(isinstance(m, nn.GroupNorm) == independent
                   for m in norms)
        with torch.no_grad():
            batch = neck(feats)[0][:1]
            alone = neck([f[:1] for f in feats])[0]
        assert torch.allclose(batch, alone, atol=1e-5) == independent
