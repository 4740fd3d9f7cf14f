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
Otherwise it runs :func:`selective_scan_torch`, an exact chunked scan
written with differentiable PyTorch operations. The first call of each
path is logged; there is no silent fallback.

:func:`selective_scan_ref` is the plain step-by-step loop; it is slow and
serves as the reference in tests.
"""
import logging
import math
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor

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
    if u.is_cuda:
        kernel = _mamba_kernel()
        if kernel is not None:
            _log_once(
                'cuda', 'selective_scan_fn: using the mamba_ssm CUDA kernel.')
            return kernel(
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
        _log_once(
            'torch-cuda',
            'selective_scan_fn: mamba_ssm is not available '
            f'({_MAMBA_IMPORT_ERROR}); using the chunked PyTorch scan on '
            'CUDA tensors (exact, but slower and more memory-hungry than '
            'the kernel). Install mamba-ssm to use the kernel.')
    else:
        _log_once(
            'torch', 'selective_scan_fn: using the chunked PyTorch scan '
            f'(tensors on {u.device.type}).')
    return selective_scan_torch(
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
    """float64 if any input is float64, else float32 (as mamba_ssm)."""
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def _check_inputs(u: Tensor, delta: Tensor, A: Tensor, B: Tensor,
                  C: Tensor) -> None:
    """Validate the shapes shared by both implementations."""
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError('selective_scan: u and delta must both be '
                         f'(B, D, L), got {tuple(u.shape)} and '
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
    h = u_c.new_zeros(batch, dim, dstate)
    ys = []
    for t in range(seqlen):
        dt_t = dt[:, :, t, None]  # (B, D, 1)
        b_t = B_c[:, :, min(t, B_c.shape[2] - 1)]  # (B|1, D|1, N)
        c_t = C_c[:, :, min(t, C_c.shape[2] - 1)]
        h = torch.exp(dt_t * A_c) * h + dt_t * b_t * u_c[:, :, t, None]
        ys.append((h * c_t).sum(-1))
    y = torch.stack(ys, dim=-1)
    out = _finish(y, u_c, D, z, u.dtype)
    return (out, h) if return_last_state else out


def _default_chunk_size(seqlen: int) -> int:
    """About sqrt(L): balances the in-chunk and the cross-chunk loops."""
    return max(1, min(seqlen, int(math.ceil(math.sqrt(seqlen)))))


def _reverse_exclusive_cumsum(x: Tensor, dim: int = 0) -> Tensor:
    """out[t] = sum_{s > t} x[s] along ``dim``, without cancellation."""
    inclusive = torch.flip(torch.cumsum(torch.flip(x, (dim, )), dim), (dim, ))
    zero = torch.zeros_like(inclusive.narrow(dim, 0, 1))
    rest = inclusive.narrow(dim, 1, x.shape[dim] - 1)
    return torch.cat([rest, zero], dim=dim)


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
    """Exact chunked selective scan in differentiable PyTorch.

    The sequence is cut into ``n`` chunks of ``T`` steps (zero-padded at the
    end; a padded step has ``dt = 0`` and so leaves the state unchanged):

    1. The state each chunk would reach from a zero start is computed for
       all chunks at once, ``sum_s exp(A * sum_{r>s} dt_r) * dt_s B_s u_s``.
       The decay exponents come from a reverse cumulative sum of ``dt``
       (no difference of large cumulative sums), so they never overflow
       and lose no precision.
    2. A loop over the ``n`` chunks carries the state from chunk to chunk
       (tiny (B, D, N) tensors).
    3. A loop over the ``T`` steps runs the recurrence
       ``h = exp(dt A) h + dt B u`` in all chunks in parallel, each from
       its true initial state, and reads out ``y = <C, h>``.

    Step 3 is the recurrence itself, so the result agrees with the
    sequential loop to rounding. Only ``T + n`` (about ``2 sqrt(L)``)
    Python steps are taken. Memory for autograd is a few (B, D, L, N)
    tensors.

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
    A_c = A.to(dtype)

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
        return x.permute(3, 0, 2, 1)

    def bc_to_chunks(mat: Tensor, name: str) -> Tensor:
        """B or C -> (T|1, B|1, n|1, D|1, N)."""
        mat = _canonical_bc(mat.to(dtype), name, batch, dim, dstate, seqlen)
        if mat.shape[2] == 1:  # constant in time: (1, D, 1, N)
            return mat.transpose(1, 2).unsqueeze(0)
        mat = mat.movedim(2, 3)  # (b, d, N, L): pad/reshape along L
        if pad:
            mat = F.pad(mat, [0, pad])
        mat = mat.reshape(mat.shape[0], mat.shape[1], dstate, n_chunks,
                          steps)
        return mat.permute(4, 0, 3, 1, 2)

    dt_ch = to_chunks(dt)  # (T, B, n, D)
    du_ch = to_chunks(dt * u_c)  # (T, B, n, D)
    B_ch = bc_to_chunks(B, 'B')  # (T|1, B|1, n|1, D|1, N)
    C_ch = bc_to_chunks(C, 'C')
    # Shared C (B, N, L): the read-out is a batched mat-vec product.
    c_shared = C_ch.shape[0] == steps and C_ch.shape[3] == 1 and steps > 1
    if C_ch.shape[0] == 1 and steps > 1:
        C_ch = C_ch.expand(steps, *C_ch.shape[1:])
    if B_ch.shape[0] == 1 and steps > 1:
        B_ch = B_ch.expand(steps, *B_ch.shape[1:])

    # Input of every step, dt_t * B_t * u_t: (T, B, n, D, N).
    x = du_ch.unsqueeze(-1) * B_ch

    # Steps 1 and 2: initial state of every chunk.
    if n_chunks > 1:
        decay_after = _reverse_exclusive_cumsum(dt_ch, 0)  # (T, B, n, D)
        weight = torch.exp(decay_after.unsqueeze(-1) * A_c)
        h_end_local = (weight * x).sum(0)  # (B, n, D, N)
        chunk_decay = torch.exp(dt_ch.sum(0).unsqueeze(-1) * A_c)
        h = u_c.new_zeros(batch, dim, dstate)
        h_init = [h]
        for c in range(n_chunks - 1):
            h = chunk_decay[:, c] * h + h_end_local[:, c]
            h_init.append(h)
        h = torch.stack(h_init, dim=1)  # (B, n, D, N)
    else:
        h = u_c.new_zeros(batch, 1, dim, dstate)

    # Step 3: the recurrence inside all chunks in parallel.
    ys = []
    for t in range(steps):
        h = torch.exp(dt_ch[t].unsqueeze(-1) * A_c) * h + x[t]
        if c_shared:  # (B, n, D, N) @ (B, n, N, 1)
            ys.append(torch.matmul(h, C_ch[t].transpose(-1, -2)).squeeze(-1))
        else:
            ys.append((h * C_ch[t]).sum(-1))
    y = torch.stack(ys, dim=0)  # (T, B, n, D)
    y = y.permute(1, 3, 2, 0).reshape(batch, dim, n_chunks * steps)
    y = y[:, :, :seqlen]
    out = _finish(y, u_c, D, z, u.dtype)
    if return_last_state:
        return out, h[:, -1]
    return out
