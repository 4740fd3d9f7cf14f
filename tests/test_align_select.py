"""Tests of the align/select/fusion layers and the MonoASD KD losses."""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS

from monoasd.models.layers import (ConvMamba, FeatureAlign, FeatureFusion,
                                   LargeKernelAttention, selective_scan_ref)
from monoasd.models.losses import (AffinityLoss, AlignSelectLoss,
                                   channel_standardize)


def _tokens(x):
    """(B, C, H, W) -> (B, H*W, C) in raster order."""
    return x.flatten(2).transpose(1, 2)


def test_large_kernel_attention_layout_and_shape():
    lka = LargeKernelAttention(8)
    assert lka.conv0.kernel_size == (5, 5) and lka.conv0.padding == (2, 2)
    assert lka.conv0.groups == 8
    assert lka.conv_spatial.kernel_size == (7, 7)
    assert lka.conv_spatial.dilation == (3, 3)
    assert lka.conv_spatial.padding == (9, 9)
    assert lka.conv1.out_channels == lka.conv2.out_channels == 4
    assert lka.conv_squeeze.in_channels == lka.conv_squeeze.out_channels == 2
    assert lka.conv.in_channels == 4 and lka.conv.out_channels == 8
    assert all(m.bias is not None for m in lka.modules()
               if isinstance(m, torch.nn.Conv2d))
    x = torch.randn(2, 8, 6, 10)
    out = lka(x)
    assert out.shape == x.shape
    # attn = conv(a1' * s0 + a2' * s1), no sigmoid and no x multiply.
    a1 = lka.conv0(x)
    a2 = lka.conv_spatial(a1)
    a1, a2 = lka.conv1(a1), lka.conv2(a2)
    both = torch.cat([a1, a2], 1)
    sel = torch.sigmoid(
        lka.conv_squeeze(
            torch.cat([both.mean(1, keepdim=True),
                       both.max(1, keepdim=True)[0]], 1)))
    want = lka.conv(a1 * sel[:, :1] + a2 * sel[:, 1:])
    torch.testing.assert_close(out, want)


def test_feature_align_crosses_the_attention():
    align = MODELS.build(dict(type='FeatureAlign', dim=4))
    s, t = torch.randn(2, 4, 5, 7), torch.randn(2, 4, 5, 7)
    a_s, a_t = align(s, t)
    torch.testing.assert_close(a_s, s * align.tea_attn(t))
    torch.testing.assert_close(a_t, t * align.stu_attn(s))


def test_conv_mamba_layout_and_init():
    mixer = ConvMamba(64)
    assert mixer.dt_rank == 4 and ConvMamba(512).dt_rank == 32
    assert mixer.in_proj.weight.shape == (128, 64)
    assert mixer.in_proj.bias is None and mixer.out_proj.bias is None
    assert mixer.x_proj.weight.shape == (4 + 32, 64)
    assert mixer.dt_proj.weight.shape == (64, 4)
    assert mixer.out_proj.weight.shape == (64, 128)
    assert mixer.conv1d_x.bias is None and mixer.conv1d_z.bias is None
    assert mixer.conv1d_x.weight.shape == (64, 1, 4)
    torch.testing.assert_close(
        mixer.A_log, torch.log(torch.arange(1., 17.)).repeat(64, 1))
    torch.testing.assert_close(mixer.D, torch.ones(64))
    bound = 4**-0.5
    assert mixer.dt_proj.weight.abs().max() <= bound
    dt0 = F.softplus(mixer.dt_proj.bias)
    assert dt0.min() >= 1e-3 * (1 - 1e-4) and dt0.max() <= 0.1 * (1 + 1e-4)
    tokens = torch.randn(2, 15, 64)
    assert mixer(tokens).shape == (2, 15, 64)


def test_conv_mamba_same_padding_is_asymmetric():
    torch.manual_seed(0)
    mixer = ConvMamba(8)
    x = torch.randn(2, 8, 11)
    w = mixer.conv1d_x.weight
    got = mixer._conv(x, mixer.conv1d_x)
    torch.testing.assert_close(got, F.conv1d(F.pad(x, (1, 2)), w, groups=8))
    with warnings.catch_warnings():  # PyTorch warns about even kernels
        warnings.simplefilter('ignore')
        torch.testing.assert_close(
            got, F.conv1d(x, w, padding='same', groups=8))
    assert not torch.allclose(got, F.conv1d(F.pad(x, (2, 1)), w, groups=8))
    causal = ConvMamba(8, causal_conv=True, conv_bias=True)
    got = causal._conv(x, causal.conv1d_x)
    want = F.conv1d(
        F.pad(x, (3, 0)), causal.conv1d_x.weight, causal.conv1d_x.bias,
        groups=8)
    torch.testing.assert_close(got, want)


def _conv_mamba_by_hand(mixer, tokens, bias_times):
    """ConvMamba's forward written out with the sequential scan."""
    xz = tokens @ mixer.in_proj.weight.T
    x, z = xz.transpose(1, 2).chunk(2, dim=1)
    c = mixer.d_branch
    x = F.silu(F.conv1d(F.pad(x, (1, 2)), mixer.conv1d_x.weight, groups=c))
    z = F.silu(F.conv1d(F.pad(z, (1, 2)), mixer.conv1d_z.weight, groups=c))
    x_dbl = x.transpose(1, 2) @ mixer.x_proj.weight.T
    r, n = mixer.dt_rank, mixer.d_state
    dt_low, b_mat, c_mat = x_dbl.split([r, n, n], dim=-1)
    delta = dt_low @ mixer.dt_proj.weight.T + bias_times * mixer.dt_proj.bias
    y = selective_scan_ref(
        x, F.softplus(delta.transpose(1, 2)), -torch.exp(mixer.A_log),
        b_mat.transpose(1, 2), c_mat.transpose(1, 2), mixer.D)
    return torch.cat([y, z], 1).transpose(1, 2) @ mixer.out_proj.weight.T


def test_conv_mamba_matches_hand_computation_and_bias_option():
    torch.manual_seed(0)
    twice = ConvMamba(16)
    tokens = torch.randn(2, 40, 16)
    with torch.no_grad():
        out_twice = twice(tokens)
        torch.testing.assert_close(
            out_twice, _conv_mamba_by_hand(twice, tokens, 2),
            atol=1e-5, rtol=1e-4)
        once = ConvMamba(16, dt_bias_twice=False)
        once.load_state_dict(twice.state_dict())
        out_once = once(tokens)
        torch.testing.assert_close(
            out_once, _conv_mamba_by_hand(twice, tokens, 1),
            atol=1e-5, rtol=1e-4)
        assert not torch.allclose(out_once, out_twice, atol=1e-5)
        # Adding the bias once with a doubled bias equals adding it twice.
        once.dt_proj.bias.mul_(2)
        torch.testing.assert_close(once(tokens), out_twice)


def test_feature_fusion():
    fusion = FeatureFusion(4)
    conv, bn, act = fusion.sq
    assert conv.in_channels == 12 and conv.out_channels == 4
    assert conv.kernel_size == (3, 3) and conv.padding == (1, 1)
    assert conv.bias is not None and isinstance(bn, torch.nn.BatchNorm2d)
    assert isinstance(act, torch.nn.GELU) and act.approximate == 'none'
    x, a, sel = (torch.randn(2, 4, 3, 5) for _ in range(3))
    out = fusion(x, a, sel)
    torch.testing.assert_close(out, fusion.sq(torch.cat([x, a, sel], 1)) + x)
    # The select module's channel-first (B, C, L) output is accepted too.
    torch.testing.assert_close(fusion(x, a, sel.flatten(2)), out)
    with pytest.raises(ValueError):
        fusion(x, a, _tokens(sel))


def test_channel_standardize_by_hand():
    x = torch.tensor([[[1., 2., 3., 4.], [2., 2., 2., 6.]]])
    std0 = math.sqrt((1.5**2 * 2 + 0.5**2 * 2) / 3)  # unbiased
    std1 = math.sqrt((1**2 * 3 + 3**2) / 3)
    want = torch.tensor([[[-1.5 / std0, -0.5 / std0, 0.5 / std0, 1.5 / std0],
                          [-1 / std1, -1 / std1, -1 / std1, 3 / std1]]])
    torch.testing.assert_close(channel_standardize(x), want)
    # (B, C, H, W) is flattened over H, W.
    torch.testing.assert_close(
        channel_standardize(x.reshape(1, 2, 2, 2)), want)


def _level_maps(batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(8, 6, 10), (16, 3, 5), (32, 2, 3), (64, 1, 2)]
    return [[torch.randn(batch, *shape, generator=gen) for shape in shapes]
            for _ in range(4)]


def test_align_select_loss_reproduces_the_running_sum():
    a_s, a_t, sel_s, sel_t = _level_maps()
    batch = a_s[0].shape[0]

    def norm(x):
        x = x.flatten(2)
        std = x.std(-1, keepdim=True)
        return (x - x.mean(-1, keepdim=True)) / (1e-7 + std)

    # The reference loop: running sums re-added at every level.
    align_sum, select_sum, want = 0.0, 0.0, 0.0
    for i in range(4):
        align_sum += F.l1_loss(norm(a_s[i]), norm(a_t[i])) / batch
        select_sum += F.l1_loss(norm(sel_s[i]), norm(sel_t[i])) / batch
        want += align_sum + select_sum
    exact = AlignSelectLoss(batch_divisor='batch', loss_weight=1.0)
    torch.testing.assert_close(exact(a_s, a_t, sel_s, sel_t), want)
    # Default: weight 10 and a fixed divisor of 4 instead of the batch.
    default = MODELS.build(dict(type='AlignSelectLoss'))
    torch.testing.assert_close(
        default(a_s, a_t, sel_s, sel_t), 10 * want * batch / 4)
    # Corrected weighting: the plain sum of the level terms.
    plain = AlignSelectLoss(
        level_weights=(1, 1, 1, 1), batch_divisor=1, loss_weight=1.0)
    loss, terms = plain(a_s, a_t, sel_s, sel_t, return_terms=True)
    torch.testing.assert_close(
        loss, sum(terms['align']) + sum(terms['select']))
    torch.testing.assert_close(terms['align'][3],
                               F.l1_loss(norm(a_s[3]), norm(a_t[3])))
    with pytest.raises(ValueError):
        plain(a_s[:3], a_t[:3], sel_s[:3], sel_t[:3])
    with pytest.raises(ValueError):
        AlignSelectLoss(batch_divisor='gpus')


def test_affinity_loss_by_hand():
    student = torch.tensor([[[[1., 2.]], [[3., 4.]]]])  # (1, 2, 1, 2)
    teacher = torch.zeros(1, 2, 1, 2)
    # G = X^T X with X = [[1, 2], [3, 4]]: [[10, 14], [14, 20]].
    loss = AffinityLoss(batch_divisor=1)([student], [teacher])
    torch.testing.assert_close(loss, torch.tensor(58 / 4))
    default = MODELS.build(dict(type='AffinityLoss'))
    torch.testing.assert_close(default([student], [teacher]),
                               torch.tensor(58 / 16))
    # A 2x4 level is resized to the last level's 1x2: bilinear with
    # align_corners=False halves exactly, i.e. it averages 2x2 blocks.
    fine = torch.tensor([[[[0., 2., 4., 4.], [2., 4., 6., 8.]]]])  # C = 1
    fine_t = torch.zeros_like(fine)
    last_s = torch.tensor([[[[1., 1.]]]])
    last_t = torch.tensor([[[[1., 0.]]]])
    loss, terms = AffinityLoss(batch_divisor='batch', loss_weight=2.0)(
        [fine, last_s], [fine_t, last_t], return_terms=True)
    # Level 0: X = [2, 5.5]; G = [[4, 11], [11, 30.25]], mean = 14.0625.
    # Level 1: G_s = all ones, G_t = [[1, 0], [0, 0]]: mean = 3 / 4.
    torch.testing.assert_close(terms[0], torch.tensor(14.0625))
    torch.testing.assert_close(terms[1], torch.tensor(0.75))
    torch.testing.assert_close(loss, torch.tensor(2 * (14.0625 + 0.75)))


def test_affinity_loss_gives_no_gradient_to_the_teacher():
    student = [torch.randn(2, 4, 6, 8, requires_grad=True),
               torch.randn(2, 8, 3, 4, requires_grad=True)]
    teacher = [torch.randn(2, 4, 6, 8, requires_grad=True),
               torch.randn(2, 8, 3, 4, requires_grad=True)]
    AffinityLoss()(student, teacher).backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0
               for s in student)
    assert all(t.grad is None for t in teacher)


def test_align_select_gradients_reach_all_four_modules():
    torch.manual_seed(0)
    dim, batch, height, width = 8, 2, 4, 6
    align = FeatureAlign(dim)
    mamba_s, mamba_t = ConvMamba(dim), ConvMamba(dim)
    s = torch.randn(batch, dim, height, width)
    t = torch.randn(batch, dim, height, width)
    a_s, a_t = align(s, t)
    sel_s = mamba_s(_tokens(s)).transpose(1, 2)
    sel_t = mamba_t(_tokens(t)).transpose(1, 2)
    loss = AlignSelectLoss(level_weights=(1, ))([a_s], [a_t], [sel_s],
                                                [sel_t])
    loss.backward()
    for name, module in (('LKA_s', align.stu_attn),
                         ('LKA_t', align.tea_attn), ('ConvMamba_s', mamba_s),
                         ('ConvMamba_t', mamba_t)):
        for pname, param in module.named_parameters():
            assert param.grad is not None, (name, pname)
            assert param.grad.abs().sum() > 0, (name, pname)
