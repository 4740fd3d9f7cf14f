"""Selective scan (Mamba S6) with mamba_ssm's interface.

:func:`selective_scan_fn` has the signature and the semantics of
``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``. For every
batch ``b``, channel ``d`` and step ``t`` it runs, from a zero state
``h in R^N``::

    dt      = softplus(delta + delta_bias)   (softplus only if asked)
    h_t     = exp(dt_t * A_d) * h_{t-1} + dt_t * B_t * u_t
    y_t     = <C_t, h_t> + D_d * u_t
    out_t   = y_t * silu(z_t)                (only if ``z`` is given)

On CUDA tensors it calls mamba_ssm's kernel when that package imports.
On the CPU, for ``B``/``C`` shared by all channels (ConvMamba's form), it
runs :func:`selective_scan_fused`, numba kernels with an exact adjoint
backward (``selective_scan_numba.py``). Otherwise it runs
:func:`selective_scan_torch`, an exact chunked scan written with
differentiable PyTorch operations. The first call of each path is logged;
there is no silent fallback.

:func:`selective_scan_ref` is the plain step-by-step loop; it is slow and
serves as the reference in tests.
"""
import logging
import math
from typing import Callable, Iterator, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..utils.float32 import float32_region
from .selective_scan_numba import (DEFAULT_BLOCK, fused_scan_core,
                                   fused_scan_supported)

ScanOutput = Union[Tensor, Tuple[Tensor, Tensor]]

_MAMBA_FN: Optional[Callable] = None
_MAMBA_IMPORT_ERROR: Optional[str] = None
_MAMBA_IMPORT_TRIED = False
_LOGGED_PATHS = set()


def _log_once(key: str, msg: str) -> None:
    """Log ``msg`` the first time ``key`` is seen in this process."""
    if key in _LOGGED_PATHS:
        return
    _LOGGED_PATHS.add(key)
    print_log(msg, logger='current', level=logging.INFO)


def _mamba_kernel() -> Optional[Callable]:
    """Import mamba_ssm's ``selective_scan_fn`` once.

    Returns:
        Callable or None: The CUDA implementation, or None when mamba_ssm is
        not installed or fails to import (the reason is kept for the log).
    """
    global _MAMBA_FN, _MAMBA_IMPORT_ERROR, _MAMBA_IMPORT_TRIED
    if not _MAMBA_IMPORT_TRIED:
        _MAMBA_IMPORT_TRIED = True
        try:
            from mamba_ssm.ops.selective_scan_interface import \
                selective_scan_fn as mamba_selective_scan_fn
            _MAMBA_FN = mamba_selective_scan_fn
        except Exception as err:  # ImportError, or a broken CUDA build.
            _MAMBA_IMPORT_ERROR = f'{type(err).__name__}: {err}'
    return _MAMBA_FN


@float32_region
def selective_scan_fn(u: Tensor,
                      delta: Tensor,
                      A: Tensor,
                      B: Tensor,
                      C: Tensor,
                      D: Optional[Tensor] = None,
                      z: Optional[Tensor] = None,
                      delta_bias: Optional[Tensor] = None,
                      delta_softplus: bool = False,
                      return_last_state: bool = False) -> ScanOutput:
    """Selective scan with mamba_ssm's signature, dispatching by device.

    CUDA tensors go to mamba_ssm's kernel if ``mamba_ssm`` imports, all
    other cases to :func:`selective_scan_torch`. Which path runs is logged
    once per path (through ``print_log(logger='current')``).

    Args:
        u (Tensor): Input, shape (B, D, L).
        delta (Tensor): Step sizes before bias/softplus, shape (B, D, L).
        A (Tensor): Real state matrix (diagonal per channel), shape (D, N).
        B (Tensor): Input projection, shape (B, N, L) (shared by all
            channels), (B, G, N, L) (channel groups, G divides D) or (D, N)
            (constant in time).
        C (Tensor): Output projection, same forms as ``B``.
        D (Tensor, optional): Skip weight, shape (D,). Defaults to None.
        z (Tensor, optional): Gate, shape (B, D, L); the output is
            multiplied by ``silu(z)``. Defaults to None.
        delta_bias (Tensor, optional): Added to ``delta`` before the
            softplus, shape (D,). Defaults to None.
        delta_softplus (bool): Apply softplus to ``delta``. Defaults to
            False.
        return_last_state (bool): Also return the final state. Defaults to
            False.

    Returns:
        Tensor | tuple[Tensor, Tensor]: Output (B, D, L) with the dtype of
        ``u``, and with ``return_last_state`` the final state (B, D, N) in
        float32 (float64 for float64 inputs on the PyTorch path).
    """
    impl = selective_scan_torch
    if u.is_cuda:
        kernel = _mamba_kernel()
        if kernel is not None:
            _log_once(
                'cuda', 'selective_scan_fn: using the mamba_ssm CUDA kernel.')
            impl = kernel
        else:
            _log_once(
                'torch-cuda',
                'selective_scan_fn: mamba_ssm is not available '
                f'({_MAMBA_IMPORT_ERROR}); using the chunked PyTorch scan on '
                'CUDA tensors (exact, but slower and more memory-hungry than '
                'the kernel). Install mamba-ssm to use the kernel.')
    elif fused_scan_supported(u, A, B, C):
        _log_once('fused', 'selective_scan_fn: using the fused numba CPU '
                  'scan.')
        impl = selective_scan_fused
    else:
        _log_once(
            'torch', 'selective_scan_fn: using the chunked PyTorch scan '
            f'(tensors on {u.device.type}; B/C of shape {tuple(B.shape)}).')
    return impl(
        u,
        delta,
        A,
        B,
        C,
        D=D,
        z=z,
        delta_bias=delta_bias,
        delta_softplus=delta_softplus,
        return_last_state=return_last_state)


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float32 as in mamba_ssm, but float64 inputs stay float64."""
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def _check_inputs(u: Tensor, delta: Tensor, A: Tensor, B: Tensor,
                  C: Tensor) -> None:
    """Validate the shapes shared by both implementations."""
    if u.dim() != 3 or delta.shape != u.shape or u.shape[2] < 1:
        raise ValueError('selective_scan: u and delta must both be '
                         f'(B, D, L) with L >= 1, got {tuple(u.shape)} and '
                         f'{tuple(delta.shape)}.')
    if A.is_complex():
        raise NotImplementedError(
            'selective_scan: complex A is not supported; A must be a real '
            '(D, N) tensor.')
    if A.dim() != 2 or A.shape[0] != u.shape[1]:
        raise ValueError('selective_scan: A must be (D, N) with D = '
                         f'{u.shape[1]}, got {tuple(A.shape)}.')
    for name, mat in (('B', B), ('C', C)):
        _canonical_bc(mat, name, u.shape[0], u.shape[1], A.shape[1],
                      u.shape[2], check_only=True)


def _canonical_bc(mat: Tensor,
                  name: str,
                  batch: int,
                  dim: int,
                  dstate: int,
                  seqlen: int,
                  check_only: bool = False) -> Optional[Tensor]:
    """Bring B or C into a (Bb, Db, Lb, N) form that broadcasts.

    Args:
        mat (Tensor): (D, N), (B, N, L) or (B, G, N, L).
        name (str): 'B' or 'C', for error messages.
        batch, dim, dstate, seqlen (int): B, D, N and L of the scan.
        check_only (bool): Only validate.

    Returns:
        Tensor | None: (1, D, 1, N) for the constant form, (B, 1, L, N)
        for the shared form, (B, D, L, N) for the grouped form.
    """
    if mat.is_complex():
        raise NotImplementedError(
            f'selective_scan: complex {name} is not supported.')
    shape = tuple(mat.shape)
    if mat.dim() == 2 and shape == (dim, dstate):
        return None if check_only else mat[None, :, None, :]
    if mat.dim() == 3 and shape == (batch, dstate, seqlen):
        return None if check_only else mat.transpose(1, 2).unsqueeze(1)
    if (mat.dim() == 4 and shape[0] == batch and shape[2:] ==
            (dstate, seqlen) and shape[1] > 0 and dim % shape[1] == 0):
        if check_only:
            return None
        mat = mat.repeat_interleave(dim // shape[1], dim=1)
        return mat.transpose(2, 3)
    raise ValueError(
        f'selective_scan: {name} must be (D, N) = {(dim, dstate)}, '
        f'(B, N, L) = {(batch, dstate, seqlen)} or (B, G, N, L) with G '
        f'dividing D = {dim}; got {shape}.')


def _prepare(u: Tensor, delta: Tensor, delta_bias: Optional[Tensor],
             delta_softplus: bool,
             dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    """Cast u and delta, add the bias and apply the softplus."""
    u = u.to(dtype)
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return u, delta


def _finish(y: Tensor, u: Tensor, D: Optional[Tensor], z: Optional[Tensor],
            out_dtype: torch.dtype) -> Tensor:
    """Add the skip term, gate with silu(z) and cast to the input dtype."""
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(out_dtype)


def selective_scan_ref(u: Tensor,
                       delta: Tensor,
                       A: Tensor,
                       B: Tensor,
                       C: Tensor,
                       D: Optional[Tensor] = None,
                       z: Optional[Tensor] = None,
                       delta_bias: Optional[Tensor] = None,
                       delta_softplus: bool = False,
                       return_last_state: bool = False) -> ScanOutput:
    """Reference selective scan: one Python step per position.

    Same arguments and returns as :func:`selective_scan_fn`. It is exact
    and differentiable but O(L) Python steps, so use it for tests only.
    """
    _check_inputs(u, delta, A, B, C)
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    dtype = _compute_dtype(u, delta, A, B, C)
    u_c, dt = _prepare(u, delta, delta_bias, delta_softplus, dtype)
    A_c = A.to(dtype)
    B_c = _canonical_bc(B.to(dtype), 'B', batch, dim, dstate, seqlen)
    C_c = _canonical_bc(C.to(dtype), 'C', batch, dim, dstate, seqlen)
    # unbind: indexing step by step would make the backward O(L^2).
    dt_steps = dt.unsqueeze(-1).unbind(2)  # L x (B, D, 1)
    u_steps = u_c.unsqueeze(-1).unbind(2)
    b_steps = B_c.unbind(2) if B_c.shape[2] > 1 else B_c.unbind(2) * seqlen
    c_steps = C_c.unbind(2) if C_c.shape[2] > 1 else C_c.unbind(2) * seqlen
    h = u_c.new_zeros(batch, dim, dstate)
    ys = []
    for dt_t, u_t, b_t, c_t in zip(dt_steps, u_steps, b_steps, c_steps):
        h = torch.exp(dt_t * A_c) * h + dt_t * b_t * u_t
        ys.append((h * c_t).sum(-1))
    y = torch.stack(ys, dim=-1)
    out = _finish(y, u_c, D, z, u.dtype)
    return (out, h) if return_last_state else out


def _default_chunk_size(seqlen: int) -> int:
    """About sqrt(L): balances the in-chunk and the cross-chunk loops."""
    return max(1, min(seqlen, int(math.ceil(math.sqrt(seqlen)))))


def _at(mat: Tensor, t: int) -> Tensor:
    """Step ``t`` of a (T|1, ...) tensor (time-constant if its T is 1)."""
    return mat[t] if mat.shape[0] > 1 else mat[0]


def _sum_to(x: Tensor, shape: Tuple[int, ...]) -> Tensor:
    """Sum ``x`` over the dimensions that ``shape`` broadcasts (size 1)."""
    dims = [
        i for i, (have, want) in enumerate(zip(x.shape, shape))
        if want == 1 and have != 1
    ]
    return x.sum(dims, keepdim=True) if dims else x


def _decay(dt: Tensor, A: Tensor) -> Tensor:
    """exp(dt * A): (..., D) x (D, N) -> (..., D, N)."""
    return torch.exp(dt.unsqueeze(-1) * A)


#: Elements per ``exp`` call when decays are computed for several steps at
#: once: small calls pay threading overhead, huge ones cost memory.
_DECAY_BLOCK_ELEMS = 1 << 21


def _iter_decays(dt: Tensor, A: Tensor,
                 reverse: bool = False) -> Iterator[Tuple[int, Tensor]]:
    """Yield ``(t, exp(dt[t] A))`` for every step, in blocks of steps.

    Args:
        dt (Tensor): (T, B, n, D).
        A (Tensor): (D, N).
        reverse (bool): Go from the last step to the first.

    Yields:
        tuple[int, Tensor]: The step and its decay (B, n, D, N).
    """
    steps = dt.shape[0]
    per_step = max(1, dt[0].numel() * A.shape[1])
    block = max(1, min(steps, _DECAY_BLOCK_ELEMS // per_step))
    firsts = range(0, steps, block)
    for first in (reversed(firsts) if reverse else firsts):
        last = min(first + block, steps)
        decays = _decay(dt[first:last], A)
        order = range(last - 1, first - 1, -1) if reverse else range(
            first, last)
        for t in order:
            yield t, decays[t - first]


def _outer(vec: Tensor, mat: Tensor) -> Tensor:
    """vec[..., d] * mat[..., d|1, N] -> (B, n, D, N)."""
    return vec.unsqueeze(-1) * mat


def _contract_state(state: Tensor, mat: Tensor) -> Tensor:
    """sum_N state * mat: (B, n, D, N), (B|1, n|1, D|1, N) -> (B, n, D)."""
    if mat.shape[-2] == 1 and mat.dim() == 4 and mat.shape[:2] == \
            state.shape[:2]:
        return torch.matmul(state, mat.transpose(-1, -2)).squeeze(-1)
    return (state * mat).sum(-1)


def _contract_channels(vec: Tensor, state: Tensor,
                       shape: Tuple[int, ...]) -> Tensor:
    """sum_D vec * state, kept in the broadcast ``shape`` of B or C.

    Args:
        vec (Tensor): (B, n, D).
        state (Tensor): (B, n, D, N).
        shape (tuple): (B|1, n|1, D|1, N).

    Returns:
        Tensor: Shape ``shape``.
    """
    if shape[2] == 1 and tuple(shape[:2]) == tuple(state.shape[:2]):
        return torch.matmul(vec.unsqueeze(-2), state)  # (B, n, 1, N)
    return _sum_to(_outer(vec, state), shape)


def _chunk_start_states(dt: Tensor, du: Tensor, A: Tensor,
                        B: Tensor) -> Tensor:
    """State at the start of every chunk (no autograd).

    Args:
        dt (Tensor): Step sizes, (T, B, n, D).
        du (Tensor): dt * u, (T, B, n, D).
        A (Tensor): (D, N).
        B (Tensor): (T|1, B|1, n|1, D|1, N).

    Returns:
        Tensor: (B, n, D, N); chunk 0 starts from zero.
    """
    steps, batch, n_chunks, dim = dt.shape
    starts = dt.new_zeros(batch, n_chunks, dim, A.shape[1])
    if n_chunks == 1:
        return starts
    # The state each chunk reaches from a zero start.
    local = torch.zeros_like(starts)
    for t, decay in _iter_decays(dt, A):
        local.mul_(decay).add_(_outer(du[t], _at(B, t)))
    # Carry across chunks with the decay of a whole chunk.
    chunk_decay = _decay(dt.sum(0), A)
    for c in range(1, n_chunks):
        torch.addcmul(local[:, c - 1], chunk_decay[:, c - 1],
                      starts[:, c - 1], out=starts[:, c])
    return starts


class _ChunkedScan(torch.autograd.Function):
    """Core recurrence on chunked inputs, with a recomputing backward.

    Forward keeps only the inputs and the (B, n, D, N) chunk start states;
    backward recomputes the states and runs the adjoint recurrence
    ``lam_t = C_t gy_t + exp(dt_{t+1} A) lam_{t+1}`` backwards in time, in
    the same chunked way as the forward.
    """

    @staticmethod
    def forward(ctx, dt: Tensor, du: Tensor, A: Tensor, B: Tensor,
                C: Tensor) -> Tuple[Tensor, Tensor]:
        """Run the scan.

        Args:
            dt (Tensor): (T, B, n, D) step sizes after bias/softplus.
            du (Tensor): (T, B, n, D) products dt * u.
            A (Tensor): (D, N).
            B (Tensor): (T|1, B|1, n|1, D|1, N).
            C (Tensor): (T|1, B|1, n|1, D|1, N).

        Returns:
            tuple[Tensor, Tensor]: y (T, B, n, D) and the state after the
            last step of the last chunk (B, D, N).
        """
        # The core stays in the inputs' precision under autocast.
        with torch.autocast(dt.device.type, enabled=False):
            starts = _chunk_start_states(dt, du, A, B)
            state = starts.clone()
            ys = dt.new_empty(dt.shape)
            for t, decay in _iter_decays(dt, A):
                state.mul_(decay).add_(_outer(du[t], _at(B, t)))
                ys[t] = _contract_state(state, _at(C, t))
        ctx.save_for_backward(dt, du, A, B, C, starts)
        return ys, state[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, g_y: Tensor, g_last: Tensor) -> Tuple[Tensor, ...]:
        """Gradients for dt, du, A, B and C."""
        dt, du, A, B, C, starts = ctx.saved_tensors
        with torch.autocast(dt.device.type, enabled=False):
            return _ChunkedScan._backward(dt, du, A, B, C, starts,
                                          g_y.to(dt.dtype), g_last)

    @staticmethod
    def _backward(dt: Tensor, du: Tensor, A: Tensor, B: Tensor, C: Tensor,
                  starts: Tensor, g_y: Tensor,
                  g_last: Optional[Tensor]) -> Tuple[Tensor, ...]:
        """Backward pass proper (arguments as saved by ``forward``)."""
        steps, batch, n_chunks, dim = dt.shape
        # Recompute the states of every step (decays are recomputed where
        # needed: storing them too would double the transient memory).
        states = []
        state = starts
        for t, decay in _iter_decays(dt, A):
            state = torch.addcmul(_outer(du[t], _at(B, t)), decay, state)
            states.append(state)

        # Adjoint entering each chunk from its right end.
        incoming = torch.zeros_like(starts)
        if g_last is not None:
            incoming[:, -1] = g_last.to(dt.dtype)
        if n_chunks > 1:
            # Sum over t of C_t gy_t * exp(A * sum_{r<=t} dt_r), i.e. the
            # adjoint leaving each chunk on its left, from a zero start.
            local = torch.zeros_like(starts)
            for t, decay in _iter_decays(dt, A, reverse=True):
                local.add_(_outer(g_y[t], _at(C, t))).mul_(decay)
            chunk_decay = _decay(dt.sum(0), A)
            for c in range(n_chunks - 1, 0, -1):
                torch.addcmul(local[:, c], chunk_decay[:, c],
                              incoming[:, c], out=incoming[:, c - 1])

        g_dt = torch.empty_like(dt)
        g_du = torch.empty_like(du)
        g_A = torch.zeros_like(starts)  # summed over (B, n) at the end
        g_B = torch.zeros_like(B) if B.shape[0] == 1 else torch.empty_like(B)
        g_C = torch.zeros_like(C) if C.shape[0] == 1 else torch.empty_like(C)
        b_shape, c_shape = tuple(B.shape[1:]), tuple(C.shape[1:])
        lam = incoming
        for t, decay in _iter_decays(dt, A, reverse=True):
            lam.add_(_outer(g_y[t], _at(C, t)))  # dL/dh_t
            prev = states[t - 1] if t > 0 else starts
            g_log_decay = lam * prev * decay  # dL/d(dt_t A)
            g_dt[t] = (g_log_decay * A).sum(-1)
            g_A.addcmul_(g_log_decay, dt[t].unsqueeze(-1))
            g_du[t] = _contract_state(lam, _at(B, t))
            gb = _contract_channels(du[t], lam, b_shape)
            gc = _contract_channels(g_y[t], states[t], c_shape)
            if B.shape[0] == 1:
                g_B[0] += gb
            else:
                g_B[t] = gb
            if C.shape[0] == 1:
                g_C[0] += gc
            else:
                g_C[t] = gc
            states[t] = None  # free as we go
            lam.mul_(decay)
        return g_dt, g_du, g_A.sum((0, 1)), g_B, g_C


def selective_scan_torch(u: Tensor,
                         delta: Tensor,
                         A: Tensor,
                         B: Tensor,
                         C: Tensor,
                         D: Optional[Tensor] = None,
                         z: Optional[Tensor] = None,
                         delta_bias: Optional[Tensor] = None,
                         delta_softplus: bool = False,
                         return_last_state: bool = False,
                         chunk_size: Optional[int] = None) -> ScanOutput:
    """Exact chunked selective scan in PyTorch (CPU or CUDA).

    The sequence is cut into ``n`` chunks of ``T`` steps, zero-padded at
    the end (a padded step has ``dt = 0`` and leaves the state unchanged).

    1. A loop over the ``T`` steps, run in all chunks at once, gives the
       state each chunk reaches from a zero start.
    2. A loop over the ``n`` chunks carries the state from chunk to chunk
       with the decay of a whole chunk, ``exp(A * sum dt)``.
    3. A second loop over the ``T`` steps runs the recurrence
       ``h = exp(dt A) h + dt B u`` in all chunks at once, each from its
       true start state, and reads out ``y = <C, h>``.

    Every operation is the recurrence itself (no ``exp(-cumsum)``
    factorisation), so nothing overflows and the result matches the
    sequential loop to rounding. Only about ``3 sqrt(L)`` Python steps are
    taken. The core is a ``torch.autograd.Function`` whose backward
    recomputes the states and runs the adjoint recurrence in the same
    chunked way, so autograd keeps only the inputs (no (B, D, L, N)
    tensors) between forward and backward. Bias, softplus, ``D`` and
    ``z`` use ordinary autograd. Double backward is not supported.

    Args:
        u, delta, A, B, C, D, z, delta_bias, delta_softplus,
            return_last_state: As in :func:`selective_scan_fn`.
        chunk_size (int, optional): Chunk length T. Defaults to
            ``ceil(sqrt(L))``.

    Returns:
        Tensor | tuple[Tensor, Tensor]: As in :func:`selective_scan_fn`.
    """
    _check_inputs(u, delta, A, B, C)
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    dtype = _compute_dtype(u, delta, A, B, C)
    u_c, dt = _prepare(u, delta, delta_bias, delta_softplus, dtype)

    steps = chunk_size if chunk_size is not None else _default_chunk_size(
        seqlen)
    if steps < 1:
        raise ValueError(f'chunk_size must be >= 1, got {steps}.')
    steps = min(steps, seqlen)
    n_chunks = -(-seqlen // steps)
    pad = n_chunks * steps - seqlen

    def to_chunks(x: Tensor) -> Tensor:
        """(B, D, L) -> (T, B, n, D), zero-padded at the end."""
        if pad:
            x = F.pad(x, [0, pad])
        x = x.reshape(batch, dim, n_chunks, steps)
        return x.permute(3, 0, 2, 1).contiguous()

    def bc_to_chunks(mat: Tensor, name: str) -> Tensor:
        """B or C -> (T|1, B|1, n|1, D|1, N)."""
        mat = _canonical_bc(mat.to(dtype), name, batch, dim, dstate, seqlen)
        if mat.shape[2] == 1:  # constant in time: (1, D, 1, N)
            return mat.transpose(1, 2).unsqueeze(0).contiguous()
        mat = mat.movedim(2, 3)  # (B, D|1, N, L): pad/reshape along L
        if pad:
            mat = F.pad(mat, [0, pad])
        mat = mat.reshape(mat.shape[0], mat.shape[1], dstate, n_chunks,
                          steps)
        return mat.permute(4, 0, 3, 1, 2).contiguous()

    y, last = _ChunkedScan.apply(
        to_chunks(dt), to_chunks(dt * u_c), A.to(dtype), bc_to_chunks(B, 'B'),
        bc_to_chunks(C, 'C'))
    y = y.permute(1, 3, 2, 0).reshape(batch, dim, n_chunks * steps)
    out = _finish(y[:, :, :seqlen], u_c, D, z, u.dtype)
    return (out, last) if return_last_state else out


def selective_scan_fused(u: Tensor,
                         delta: Tensor,
                         A: Tensor,
                         B: Tensor,
                         C: Tensor,
                         D: Optional[Tensor] = None,
                         z: Optional[Tensor] = None,
                         delta_bias: Optional[Tensor] = None,
                         delta_softplus: bool = False,
                         return_last_state: bool = False,
                         block: int = DEFAULT_BLOCK) -> ScanOutput:
    """Selective scan with the fused numba CPU kernels.

    Same arguments and returns as :func:`selective_scan_fn`, for CPU
    tensors with ``B`` and ``C`` of shape (B, N, L). The core recurrence
    and its exact adjoint run in numba (``selective_scan_numba.py``); bias,
    softplus, ``D`` and ``z`` use ordinary autograd. Double backward is not
    supported.

    Args:
        block (int): Steps between the forward's state checkpoints, which
            the backward recomputes from. Defaults to 64.
    """
    _check_inputs(u, delta, A, B, C)
    if not fused_scan_supported(u, A, B, C):
        raise ValueError(
            'selective_scan_fused needs CPU tensors with B and C of shape '
            f'(B, N, L) = {(u.shape[0], A.shape[1], u.shape[2])}, got '
            f'{tuple(B.shape)} and {tuple(C.shape)} on {u.device}')
    dtype = _compute_dtype(u, delta, A, B, C)
    u_c, dt = _prepare(u, delta, delta_bias, delta_softplus, dtype)
    with torch.autocast('cpu', enabled=False):
        y, last = fused_scan_core(dt, dt * u_c, A.to(dtype), B.to(dtype),
                                  C.to(dtype), block)
    out = _finish(y, u_c, D, z, u.dtype)
    return (out, last) if return_last_state else out
