"""Tests of the selective scan: exactness, gradients, speed and dispatch."""
import itertools

import pytest
import torch

from monoasd.models.layers import selective_scan as scan_mod
from monoasd.models.layers import (selective_scan_fn, selective_scan_fused,
                                   selective_scan_ref, selective_scan_torch)

from conftest import run_python_one_thread


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


def test_long_sequence_matches_reference():
    # (speed is the benchmark's business: tools/analysis_tools/benchmark.py)
    inputs = _inputs('shared', batch=1, dim=16, dstate=16, seqlen=4096)
    args = [inputs[k] for k in 'u delta A B C'.split()]
    kwargs = dict(
        D=inputs['D'], delta_bias=inputs['delta_bias'], delta_softplus=True)
    ref = selective_scan_ref(*args, **kwargs)
    for func in (selective_scan_torch, selective_scan_fused):
        torch.testing.assert_close(func(*args, **kwargs), ref, atol=1e-4,
                                   rtol=0)


# ------------------------------------------------------ fused numba kernels
def _fused_grads(func, inputs, **kwargs):
    names = ['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias']
    tensors = [inputs[k].clone().requires_grad_() for k in names]
    out, last = func(*tensors, delta_softplus=True, return_last_state=True,
                     **kwargs)
    weights = torch.cos(torch.arange(out.numel(), dtype=out.dtype)).view_as(
        out)
    loss = (out * weights).sum() + last.square().sum()
    return [out.detach(), last.detach()] + list(
        torch.autograd.grad(loss, tensors))


@pytest.mark.parametrize('dtype,atol', [(torch.float64, 1e-10),
                                        (torch.float32, 1e-4)])
def test_fused_scan_matches_reference_values_and_gradients(dtype, atol):
    """Outputs, last state and the gradient of every input equal the
    sequential loop's, for checkpoint blocks shorter than, equal to and
    longer than the sequence (float64: to rounding)."""
    inputs = _inputs('shared', batch=2, dim=5, dstate=4, seqlen=37,
                     dtype=dtype)
    want = _fused_grads(selective_scan_ref, inputs)
    for block in (1, 5, 37, 64):
        got = _fused_grads(selective_scan_fused, inputs, block=block)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, atol=atol, rtol=atol)


def test_fused_scan_all_options_and_decays():
    for flags in itertools.product([False, True], repeat=4):
        inputs = _inputs('shared')
        args = [inputs[k] for k in 'u delta A B C'.split()]
        kwargs = _options(inputs, *flags)
        ref, ref_last = selective_scan_ref(*args, **kwargs)
        out, last = selective_scan_fused(*args, **kwargs)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
        torch.testing.assert_close(last, ref_last, atol=1e-4, rtol=0)
    for delta_scale, a_scale in ((5.0, 16.0), (1e-3, 1.0)):
        inputs = _inputs('shared', dim=8, dstate=16, seqlen=500,
                         delta_scale=delta_scale, a_scale=a_scale)
        args = [inputs[k] for k in 'u delta A B C'.split()]
        ref = selective_scan_ref(*args)
        out = selective_scan_fused(*args)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-5)


def test_fused_scan_gradcheck_float64():
    inputs = _inputs('shared', dim=3, dstate=2, seqlen=7, dtype=torch.float64)
    names = ['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias']
    tensors = [inputs[k].requires_grad_() for k in names]

    def func(u, delta, A, B, C, D, z, delta_bias):
        return selective_scan_fused(u, delta, A, B, C, D, z, delta_bias,
                                    delta_softplus=True,
                                    return_last_state=True, block=3)

    assert torch.autograd.gradcheck(func, tensors)


def test_fused_scan_does_not_depend_on_the_thread_count():
    import numba
    inputs = _inputs('shared', batch=2, dim=9, dstate=4, seqlen=50)
    before = numba.get_num_threads()
    try:
        results = []
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            results.append(_fused_grads(selective_scan_fused, inputs))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_fused_scan_refuses_other_forms():
    for form in ('const', 'group'):
        inputs = _inputs(form)
        args = [inputs[k] for k in 'u delta A B C'.split()]
        with pytest.raises(ValueError, match='B and C of shape'):
            selective_scan_fused(*args)
    inputs = _inputs('shared')
    args = [inputs[k] for k in 'u delta A B C'.split()]
    with pytest.raises(ValueError, match='block'):
        selective_scan_fused(*args, block=0)


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
    # ConvMamba's form (B, C shared by all channels) takes the fused path
    assert len(messages) == 1 and 'fused numba' in messages[0]
    inputs = _inputs('group', seqlen=8)
    args = [inputs[k] for k in 'u delta A B C'.split()]
    selective_scan_fn(*args)
    selective_scan_fn(*args)
    assert len(messages) == 2
    assert 'PyTorch' in messages[1] and 'cpu' in messages[1]


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


def test_fused_scan_keeps_torch_thread_count():
    """numba's OpenMP layer shares the runtime with torch: its first launch
    must not change torch's thread count (a fresh process, one thread)."""
    code = (
        'import torch\n'
        'from monoasd.models.layers import selective_scan_fused\n'
        'ins = [torch.rand(1, 4, 16), torch.rand(1, 4, 16), '
        '-torch.rand(4, 2), torch.rand(1, 2, 16), torch.rand(1, 2, 16)]\n'
        'ins = [t.requires_grad_() for t in ins]\n'
        'import numba\n'
        'selective_scan_fused(*ins).sum().backward()\n'
        'print("threads", torch.get_num_threads(), numba.get_num_threads())\n')
    out = run_python_one_thread(code)
    assert 'threads 1 1' in out, out
