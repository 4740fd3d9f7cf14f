"""Tests of the selective scan: exactness, gradients, speed and dispatch."""
import itertools
import time

import pytest
import torch

from monoasd.models.layers import selective_scan as scan_mod
from monoasd.models.layers import (selective_scan_fn, selective_scan_ref,
                                   selective_scan_torch)


def _inputs(form, batch=2, dim=4, dstate=3, seqlen=37, groups=2,
            dtype=torch.float32, seed=0, delta_scale=0.5, a_scale=2.0):
    """Random scan inputs; B and C in the 'shared', 'const' or 'group'
    form."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    def rand(*shape):
        return torch.rand(*shape, generator=gen, dtype=dtype)

    bc_shape = {
        'shared': (batch, dstate, seqlen),
        'const': (dim, dstate),
        'group': (batch, groups, dstate, seqlen),
    }[form]
    return dict(
        u=randn(batch, dim, seqlen),
        delta=delta_scale * rand(batch, dim, seqlen),
        A=-a_scale * rand(dim, dstate),
        B=randn(*bc_shape),
        C=randn(*bc_shape),
        D=randn(dim),
        z=randn(batch, dim, seqlen),
        delta_bias=0.5 * rand(dim))


def _options(inputs, use_d, use_z, use_bias, softplus):
    """Keyword arguments for one option combination."""
    return dict(
        D=inputs['D'] if use_d else None,
        z=inputs['z'] if use_z else None,
        delta_bias=inputs['delta_bias'] if use_bias else None,
        delta_softplus=softplus,
        return_last_state=True)


@pytest.mark.parametrize('form', ['shared', 'const', 'group'])
def test_matches_reference_all_options(form):
    inputs = _inputs(form)
    args = [inputs[k] for k in 'u delta A B C'.split()]
    for flags in itertools.product([False, True], repeat=4):
        kwargs = _options(inputs, *flags)
        ref, ref_last = selective_scan_ref(*args, **kwargs)
        for chunk in (None, 1, 5, 37, 64):
            out, last = selective_scan_torch(
                *args, chunk_size=chunk, **kwargs)
            assert out.shape == (2, 4, 37) and last.shape == (2, 4, 3)
            torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
            torch.testing.assert_close(last, ref_last, atol=1e-4, rtol=0)
        # The dispatcher on CPU gives the same and honours the flag.
        only_out = selective_scan_fn(
            *args, **dict(kwargs, return_last_state=False))
        torch.testing.assert_close(only_out, ref, atol=1e-4, rtol=0)


def test_strong_and_weak_decay_stay_exact():
    # exp(-cumsum) factorisations overflow here; the chunked scan must not.
    for delta_scale, a_scale in ((5.0, 16.0), (1e-3, 1.0)):
        inputs = _inputs(
            'shared', dim=8, dstate=16, seqlen=500,
            delta_scale=delta_scale, a_scale=a_scale)
        args = [inputs[k] for k in 'u delta A B C'.split()]
        ref, ref_last = selective_scan_ref(*args, return_last_state=True)
        out, last = selective_scan_torch(*args, return_last_state=True)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(last, ref_last, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize('form', ['shared', 'const', 'group'])
def test_gradcheck_float64(form):
    inputs = _inputs(form, dim=4, dstate=2, seqlen=7, dtype=torch.float64)
    names = ['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias']
    tensors = [inputs[k].requires_grad_() for k in names]

    def func(u, delta, A, B, C, D, z, delta_bias):
        return selective_scan_torch(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus=True,
            return_last_state=True, chunk_size=3)

    assert torch.autograd.gradcheck(func, tensors)


@pytest.mark.parametrize('form', ['shared', 'const', 'group'])
def test_gradients_match_reference(form):
    inputs = _inputs(form, seqlen=29)
    names = ['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias']

    def grads(func, **kwargs):
        tensors = [inputs[k].clone().requires_grad_() for k in names]
        out, last = func(
            *tensors, delta_softplus=True, return_last_state=True, **kwargs)
        loss = (out * torch.linspace(-1, 1, out.shape[-1])).sum() + \
            last.square().sum()
        return torch.autograd.grad(loss, tensors)

    for got, want in zip(
            grads(selective_scan_torch, chunk_size=4),
            grads(selective_scan_ref)):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_fast_path_beats_reference_and_matches():
    inputs = _inputs('shared', batch=1, dim=16, dstate=16, seqlen=4096)
    args = [inputs[k] for k in 'u delta A B C'.split()]
    kwargs = dict(
        D=inputs['D'], delta_bias=inputs['delta_bias'], delta_softplus=True)

    def best_time(func):
        times, out = [], None
        for _ in range(2):
            start = time.perf_counter()
            out = func(*args, **kwargs)
            times.append(time.perf_counter() - start)
        return min(times), out

    t_ref, ref = best_time(selective_scan_ref)
    t_fast, out = best_time(selective_scan_torch)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
    assert t_fast < t_ref, (t_fast, t_ref)


def test_output_dtype_follows_u():
    inputs = _inputs('shared')
    u = inputs['u'].to(torch.bfloat16)
    out, last = selective_scan_torch(
        u, inputs['delta'], inputs['A'], inputs['B'], inputs['C'],
        return_last_state=True)
    assert out.dtype == torch.bfloat16 and last.dtype == torch.float32


def test_bad_shapes_raise_clear_errors():
    inputs = _inputs('shared')
    u, delta, A, B, C = [inputs[k] for k in 'u delta A B C'.split()]
    with pytest.raises(ValueError, match='B must be'):
        selective_scan_torch(u, delta, A, B[:, :, :5], C)
    with pytest.raises(ValueError, match='C must be'):
        selective_scan_torch(u, delta, A, B, C.unsqueeze(1).expand(
            -1, 3, -1, -1))  # 3 groups do not divide D = 4
    with pytest.raises(ValueError, match='A must be'):
        selective_scan_torch(u, delta, A[:2], B, C)
    with pytest.raises(NotImplementedError, match='complex'):
        selective_scan_torch(u, delta, A.to(torch.complex64), B, C)


def test_dispatcher_logs_the_path_once(monkeypatch):
    messages = []
    monkeypatch.setattr(scan_mod, 'print_log',
                        lambda msg, **kwargs: messages.append(msg))
    monkeypatch.setattr(scan_mod, '_LOGGED_PATHS', set())
    inputs = _inputs('shared', seqlen=8)
    args = [inputs[k] for k in 'u delta A B C'.split()]
    selective_scan_fn(*args)
    selective_scan_fn(*args)
    assert len(messages) == 1
    assert 'PyTorch' in messages[0] and 'cpu' in messages[0]


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_dispatch_matches_reference():
    inputs = _inputs('shared', seqlen=300)
    args = [inputs[k] for k in 'u delta A B C'.split()]
    kwargs = _options(inputs, True, True, True, True)
    ref, ref_last = selective_scan_ref(*args, **kwargs)
    out, last = selective_scan_fn(*[a.cuda() for a in args], **{
        k: v.cuda() if torch.is_tensor(v) else v
        for k, v in kwargs.items()
    })
    torch.testing.assert_close(out.cpu(), ref, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(last.cpu(), ref_last, atol=1e-3, rtol=1e-3)
