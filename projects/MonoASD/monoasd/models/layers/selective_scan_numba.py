# Copyright (c) MonoASD contributors. All rights reserved.
"""Fused CPU selective scan (numba), forward and exact backward.

The recurrence of :func:`~.selective_scan.selective_scan_ref` for the form
ConvMamba uses (``B`` and ``C`` of shape (B, N, L), shared by all
channels), one numba thread per (sample, channel) row::

    h_t = exp(dt_t A_d) h_{t-1} + du_t B_t      y_t = <C_t, h_t>

Forward keeps the state at the start of every block of ``block`` steps
(B, D, L / block, N). Backward walks the blocks from the end: it
recomputes the block's states and decays from its checkpoint and runs the
adjoint ``lam_t = C_t gy_t + exp(dt_{t+1} A) lam_{t+1}`` backwards in time,
which gives exactly the gradients of the sequential loop (no
``exp(-cumsum)`` factorisation, so nothing overflows). ``B``/``C``
gradients sum over channels; they are accumulated in a fixed number of
channel groups and summed in a fixed order, so the result does not depend
on the thread count.

The kernels run on as many numba threads as torch uses
(``torch.get_num_threads()``), and torch's setting is put back after each
launch: numba's OpenMP threading layer shares the OpenMP runtime with
torch and would otherwise raise torch's thread count on its first launch
(which made training depend on whether the scan had run yet in the
process, e.g. across a resume); see ``monoasd/utils/threads.py``.
"""
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ...utils.threads import torch_threads_kept

try:
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba is a requirement
    numba = None

#: Steps between two forward checkpoints (memory B*D*L/block*N).
DEFAULT_BLOCK = 64
#: Channel groups of the B/C gradient sums (fixed: thread-independent).
GRAD_GROUPS = 4
#: LLVM fast-math flags of the kernels: reassociation and contraction (FMA)
#: of the sums, but no assumption that values are finite.
FASTMATH = {'reassoc', 'contract', 'nsz', 'arcp'}


def _np(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


def _launch(kernel, *args) -> None:
    """Run a numba kernel on torch's thread count; keep torch's setting.
    """
    with torch_threads_kept():
        kernel(*args)


def _zero(t: Tensor):
    """A NumPy zero of ``t``'s dtype (the kernels' accumulators)."""
    return np.zeros((), dtype=_np(t).dtype)[()]


def numba_available() -> bool:
    """Whether the fused kernels can run (numba imports)."""
    return numba is not None


if numba is not None:

    @njit(parallel=True, cache=True, fastmath=FASTMATH)
    def _forward_kernel(dt, du, A, Bt, Ct, block, zero, y, ckpt, last):
        nb, nd, nl = dt.shape
        nn_ = A.shape[1]
        for row in prange(nb * nd):
            b = row // nd
            d = row % nd
            h = np.zeros(nn_, dt.dtype)
            a = A[d].copy()
            for t in range(nl):
                if t % block == 0:
                    ckpt[b, d, t // block, :] = h
                dtt = dt[b, d, t]
                dut = du[b, d, t]
                acc = zero  # accumulate in the inputs' precision
                for n in range(nn_):
                    h[n] = np.exp(dtt * a[n]) * h[n] + dut * Bt[b, t, n]
                    acc += Ct[b, t, n] * h[n]
                y[b, d, t] = acc
            last[b, d, :] = h

    @njit(parallel=True, cache=True, fastmath=FASTMATH)
    def _backward_kernel(dt, du, A, Bt, Ct, ckpt, gy, glast, block,
                         groups, zero, g_dt, g_du, g_A_rows, g_B_parts,
                         g_C_parts):
        nb, nd, nl = dt.shape
        nn_ = A.shape[1]
        n_blocks = ckpt.shape[2]
        per_group = (nd + groups - 1) // groups
        for task in prange(groups * nb):
            g = task // nb
            b = task % nb
            hbuf = np.empty((block + 1, nn_), dt.dtype)
            dabuf = np.empty((block, nn_), dt.dtype)
            lam = np.empty(nn_, dt.dtype)
            for d in range(g * per_group, min((g + 1) * per_group, nd)):
                for n in range(nn_):
                    lam[n] = glast[b, d, n]
                for blk in range(n_blocks - 1, -1, -1):
                    t0 = blk * block
                    t1 = min(t0 + block, nl)
                    for n in range(nn_):
                        hbuf[0, n] = ckpt[b, d, blk, n]
                    for t in range(t0, t1):
                        i = t - t0
                        dtt = dt[b, d, t]
                        dut = du[b, d, t]
                        for n in range(nn_):
                            da = np.exp(dtt * A[d, n])
                            dabuf[i, n] = da
                            hbuf[i + 1, n] = (da * hbuf[i, n] +
                                              dut * Bt[b, t, n])
                    for t in range(t1 - 1, t0 - 1, -1):
                        i = t - t0
                        dtt = dt[b, d, t]
                        dut = du[b, d, t]
                        gyt = gy[b, d, t]
                        gdt = zero
                        gdu = zero
                        for n in range(nn_):
                            lam[n] += Ct[b, t, n] * gyt
                            g_C_parts[g, b, t, n] += gyt * hbuf[i + 1, n]
                            g_B_parts[g, b, t, n] += dut * lam[n]
                            gdu += lam[n] * Bt[b, t, n]
                            glog = lam[n] * hbuf[i, n] * dabuf[i, n]
                            gdt += glog * A[d, n]
                            g_A_rows[b, d, n] += glog * dtt
                            lam[n] *= dabuf[i, n]
                        g_dt[b, d, t] = gdt
                        g_du[b, d, t] = gdu


class _FusedScan(torch.autograd.Function):
    """Core recurrence with the numba kernels (CPU, float32/float64)."""

    @staticmethod
    def forward(ctx, dt: Tensor, du: Tensor, A: Tensor, Bt: Tensor,
                Ct: Tensor, block: int) -> Tuple[Tensor, Tensor]:
        """dt, du: (B, D, L); A: (D, N); Bt, Ct: (B, L, N), contiguous.

        Returns:
            tuple[Tensor, Tensor]: y (B, D, L) and the last state (B, D, N).
        """
        nb, nd, nl = dt.shape
        nn_ = A.shape[1]
        y = dt.new_empty(nb, nd, nl)
        ckpt = dt.new_empty(nb, nd, -(-nl // block), nn_)
        last = dt.new_empty(nb, nd, nn_)
        _launch(_forward_kernel, _np(dt), _np(du), _np(A), _np(Bt),
                _np(Ct), block, _zero(dt), _np(y), _np(ckpt), _np(last))
        ctx.block = block
        ctx.save_for_backward(dt, du, A, Bt, Ct, ckpt)
        return y, last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_y: Tensor, g_last: Optional[Tensor]):
        """Gradients for dt, du, A, Bt and Ct (exact adjoint)."""
        dt, du, A, Bt, Ct, ckpt = ctx.saved_tensors
        nb, nd, nl = dt.shape
        nn_ = A.shape[1]
        dtype = dt.dtype
        g_y = (torch.zeros_like(dt) if g_y is None else
               g_y.to(dtype).contiguous())
        g_last = (dt.new_zeros(nb, nd, nn_) if g_last is None else
                  g_last.to(dtype).contiguous())
        groups = max(1, min(GRAD_GROUPS, nd))
        g_dt = torch.empty_like(dt)
        g_du = torch.empty_like(du)
        g_A_rows = dt.new_zeros(nb, nd, nn_)
        g_B_parts = dt.new_zeros(groups, nb, nl, nn_)
        g_C_parts = dt.new_zeros(groups, nb, nl, nn_)
        _launch(_backward_kernel, _np(dt), _np(du), _np(A), _np(Bt),
                _np(Ct), _np(ckpt), _np(g_y), _np(g_last), ctx.block, groups,
                _zero(dt), _np(g_dt), _np(g_du), _np(g_A_rows),
                _np(g_B_parts), _np(g_C_parts))
        return (g_dt, g_du, g_A_rows.sum(0), g_B_parts.sum(0),
                g_C_parts.sum(0), None)


def fused_scan_supported(u: Tensor, A: Tensor, B: Tensor, C: Tensor) -> bool:
    """The fused kernels take CPU tensors with B and C shared by all
    channels, (B, N, L); other forms use the chunked PyTorch scan."""
    if numba is None or u.device.type != 'cpu':
        return False
    shape = (u.shape[0], A.shape[1], u.shape[2])
    return B.dim() == 3 and C.dim() == 3 and tuple(B.shape) == shape and \
        tuple(C.shape) == shape


def fused_scan_core(dt: Tensor, du: Tensor, A: Tensor, B: Tensor, C: Tensor,
                    block: int = DEFAULT_BLOCK) -> Tuple[Tensor, Tensor]:
    """y (B, D, L) and last state (B, D, N) of the recurrence.

    Args:
        dt (Tensor): (B, D, L) step sizes after bias/softplus.
        du (Tensor): (B, D, L) products dt * u.
        A (Tensor): (D, N).
        B, C (Tensor): (B, N, L).
        block (int): Steps between checkpoints. Defaults to 64.
    """
    if block < 1:
        raise ValueError(f'block must be >= 1, got {block}')
    return _FusedScan.apply(dt.contiguous(), du.contiguous(),
                            A.contiguous(),
                            B.transpose(1, 2).contiguous(),
                            C.transpose(1, 2).contiguous(), int(block))
