"""Tests of WidthDLANet, mmdet3d's DLA with every level's channels scaled."""
import pytest
import torch

import monoasd  # noqa: F401  (registers the plugin)
from mmdet3d.models.backbones import DLANet
from mmdet3d.registry import MODELS
from monoasd.models.backbones import WidthDLANet
from monoasd.models.necks import DLAUp

DLA34_CHANNELS = (16, 32, 64, 128, 256, 512)
BN = dict(type='BN')


def _shapes(model):
    return [(n, tuple(p.shape)) for n, p in model.state_dict().items()]


def test_widen_factor_one_is_mmdet3d_dla():
    torch.manual_seed(0)
    ours = WidthDLANet(depth=34, widen_factor=1.0, norm_cfg=BN,
                       init_cfg=None)
    torch.manual_seed(0)
    theirs = DLANet(34, norm_cfg=BN, init_cfg=None)
    # the same modules, names and shapes: a DLA-34 checkpoint loads as is
    assert _shapes(ours) == _shapes(theirs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval(), theirs.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x)):
            assert torch.equal(a, b)


def test_half_width_channels_and_shapes():
    model = MODELS.build(dict(type='WidthDLANet', depth=34, widen_factor=0.5,
                              norm_cfg=BN, init_cfg=None)).eval()
    assert model.channels == (8, 16, 32, 64, 128, 256)
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 96, 320))
    # six levels at strides 1..32, half of DLA-34's channels
    assert [tuple(o.shape) for o in outs] == [
        (2, 8, 96, 320), (2, 16, 48, 160), (2, 32, 24, 80),
        (2, 64, 12, 40), (2, 128, 6, 20), (2, 256, 3, 10)]
    dla34 = DLANet(34, norm_cfg=BN, init_cfg=None)
    full = sum(p.numel() for p in dla34.parameters())
    half = sum(p.numel() for p in model.parameters())
    # convolutions hold almost all weights: about a quarter at half width
    assert 0.2 < half / full < 0.3
    # the class table mmdet3d's DLANet reads is untouched
    assert DLANet.arch_settings[34][2] == DLA34_CHANNELS


def test_scaled_channels_rounding_and_floor():
    assert WidthDLANet.scaled_channels(DLA34_CHANNELS, 0.25) == (
        8, 8, 16, 32, 64, 128)
    assert WidthDLANet.scaled_channels(DLA34_CHANNELS, 0.75) == (
        12, 24, 48, 96, 192, 384)
    assert WidthDLANet.scaled_channels((10, ), 0.35, min_channels=2) == (4, )


def test_half_width_feeds_a_scaled_neck_with_gradients():
    torch.manual_seed(0)
    backbone = WidthDLANet(depth=34, widen_factor=0.5, norm_cfg=BN,
                           init_cfg=None)
    neck = DLAUp(in_channels=(32, 64, 128, 256))
    x = torch.randn(2, 3, 96, 320)
    out = neck(backbone(x))[0]
    assert tuple(out.shape) == (2, 32, 24, 80)
    out.square().mean().backward()
    first = backbone.base_layer[0].weight.grad
    assert first is not None and first.abs().sum() > 0


@pytest.mark.parametrize('kwargs, error', [
    (dict(depth=50), KeyError),
    (dict(depth=34, widen_factor=0.0), ValueError),
    (dict(depth=34, widen_factor=-1.0), ValueError),
])
def test_bad_arguments_are_errors(kwargs, error):
    with pytest.raises(error):
        WidthDLANet(norm_cfg=BN, init_cfg=None, **kwargs)


def test_half_width_profile_configs_build():
    """The tiny-half profile's student builds with half-width features, and
    its distiller matches the adapters to them (the teacher is the same
    architecture)."""
    from pathlib import Path

    from mmengine.config import Config
    cfg_dir = Path(__file__).resolve().parents[1] / 'configs' / 'monoasd'
    cfg = Config.fromfile(
        str(cfg_dir / 'did-m3d_dla34-half_tiny_mini-kitti-car_student.py'))
    assert cfg.train_dataloader.dataset.type == 'RepeatDataset'
    assert cfg.train_dataloader.dataset.times == 3
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        feats = model.extract_feat(
            dict(imgs=torch.randn(1, 3, 96, 320)))
    first = feats[0] if isinstance(feats, (list, tuple)) else feats
    assert tuple(first.shape) == (1, 32, 24, 80)
    distill = Config.fromfile(
        str(cfg_dir / 'monoasd_dla34-half_tiny_mini-kitti-car.py')).model
    assert tuple(distill.feature_channels) == tuple(
        cfg.model.neck.in_channels) == (32, 64, 128, 256)
    assert distill.student.backbone == cfg.model.backbone
