"""Select module: a MambaVision-style selective-scan token mixer."""
import math
from typing import Union

import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from torch import Tensor, nn

from .selective_scan import selective_scan_fn


@MODELS.register_module()
class ConvMamba(nn.Module):
    """MambaVision-style mixer used as MonoASD's select module.

    ``in_proj`` maps the C input channels to ``d_inner = expand * C`` and
    splits them into the scan branch ``x`` and the gate branch ``z``, each
    ``d_inner / 2`` channels (C for ``expand=2``). Both branches go through
    their own depthwise conv1d and SiLU. ``x`` is projected per token to
    ``(dt_low, B, C)`` (B and C are shared across channels), ``dt_proj``
    lifts ``dt_low`` to one step size per channel, and the selective scan
    (``A = -exp(A_log)``, skip ``D``, softplus on the step size) runs over
    the L tokens. No gating happens inside the scan: the output is
    ``out_proj(cat[y, z])``, with no norm and no residual.

    The defaults reproduce the reference (quirk Q8, inherited from
    MambaVision):

    * ``dt_bias_twice=True``: ``dt_proj`` already adds its bias and the
      scan adds it again, so ``dt = softplus(W dt_low + 2 b)``. With False
      the bias is added once (``softplus(W dt_low + b)``), as in Mamba.
    * ``conv_bias=False``: the reference passes ``conv_bias // 2 == 0``.
    * ``causal_conv=False``: ``padding='same'`` with an even kernel, which
      PyTorch pads asymmetrically (``(k - 1) // 2`` left, the rest right;
      1 and 2 for ``k=4``), so each token also sees 2 later tokens. With
      True the conv pads ``k - 1`` on the left only (causal, as in Mamba).

    The corrected form is ``dt_bias_twice=False, conv_bias=True,
    causal_conv=True``. Parameter names follow the reference, so its
    weights load by name.

    Args:
        d_model (int): Channels C of the tokens.
        d_state (int): State size N. Defaults to 16.
        d_conv (int): Kernel size of the depthwise conv1d. Defaults to 4.
        expand (int): ``d_inner = expand * d_model``. Defaults to 2.
        dt_rank (int | str): Rank of the step-size projection; 'auto'
            means ``ceil(d_model / 16)``. Defaults to 'auto'.
        dt_min (float): Smallest initial step size. Defaults to 1e-3.
        dt_max (float): Largest initial step size. Defaults to 0.1.
        dt_init (str): 'random' (uniform in +-dt_rank**-0.5 * dt_scale) or
            'constant' init of the ``dt_proj`` weight. Defaults to 'random'.
        dt_scale (float): Scale of the ``dt_proj`` weight init. Defaults to
            1.0.
        dt_init_floor (float): Lower clamp of the initial step sizes.
            Defaults to 1e-4.
        bias (bool): Bias in ``in_proj`` and ``out_proj``. Defaults to
            False.
        dt_bias_twice (bool): Add the ``dt_proj`` bias twice (reference).
            Defaults to True.
        conv_bias (bool): Bias in the two conv1d. Defaults to False
            (reference).
        causal_conv (bool): Causal (left) padding instead of 'same'.
            Defaults to False (reference).
    """

    def __init__(self,
                 d_model: int,
                 d_state: int = 16,
                 d_conv: int = 4,
                 expand: int = 2,
                 dt_rank: Union[int, str] = 'auto',
                 dt_min: float = 1e-3,
                 dt_max: float = 0.1,
                 dt_init: str = 'random',
                 dt_scale: float = 1.0,
                 dt_init_floor: float = 1e-4,
                 bias: bool = False,
                 dt_bias_twice: bool = True,
                 conv_bias: bool = False,
                 causal_conv: bool = False) -> None:
        super().__init__()
        d_inner = int(expand * d_model)
        if d_inner % 2:
            raise ValueError(f'expand * d_model must be even, got {d_inner}.')
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = d_inner
        self.d_branch = d_inner // 2
        self.dt_rank = (
            math.ceil(d_model / 16) if dt_rank == 'auto' else int(dt_rank))
        self.dt_bias_twice = dt_bias_twice
        self.causal_conv = causal_conv

        self.in_proj = nn.Linear(d_model, d_inner, bias=bias)
        self.conv1d_x = nn.Conv1d(
            self.d_branch,
            self.d_branch,
            d_conv,
            groups=self.d_branch,
            bias=conv_bias)
        self.conv1d_z = nn.Conv1d(
            self.d_branch,
            self.d_branch,
            d_conv,
            groups=self.d_branch,
            bias=conv_bias)
        self.x_proj = nn.Linear(
            self.d_branch, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_branch, bias=True)
        self._init_dt_proj(dt_init, dt_scale, dt_min, dt_max, dt_init_floor)

        a_init = torch.arange(1, d_state + 1, dtype=torch.float32)
        self.A_log = nn.Parameter(
            torch.log(a_init).repeat(self.d_branch, 1).contiguous())
        self.D = nn.Parameter(torch.ones(self.d_branch))
        # Kept for parity with Mamba; the reference optimizer ignores them.
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)

    def _init_dt_proj(self, dt_init: str, dt_scale: float, dt_min: float,
                      dt_max: float, dt_init_floor: float) -> None:
        """Mamba's step-size init.

        The weight is U(-r**-0.5, r**-0.5) * dt_scale (r = dt_rank), or that
        bound as a constant. The bias is softplus^-1(dt) with
        ``dt = exp(U(ln dt_min, ln dt_max))`` clamped to ``dt_init_floor``,
        so that softplus(bias) starts in [dt_min, dt_max].
        """
        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == 'constant':
            nn.init.constant_(self.dt_proj.weight, std)
        elif dt_init == 'random':
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        else:
            raise ValueError(f"dt_init must be 'random' or 'constant', got "
                             f'{dt_init!r}.')
        log_min, log_max = math.log(dt_min), math.log(dt_max)
        dt = torch.exp(
            torch.rand(self.d_branch) * (log_max - log_min) + log_min)
        dt = dt.clamp(min=dt_init_floor)
        inv_softplus_dt = dt + torch.log(-torch.expm1(-dt))
        with torch.no_grad():
            self.dt_proj.bias.copy_(inv_softplus_dt)

    def _conv(self, x: Tensor, conv: nn.Conv1d) -> Tensor:
        """Depthwise conv1d with 'same' (reference) or causal padding.

        Args:
            x (Tensor): (B, C', L).
            conv (nn.Conv1d): ``conv1d_x`` or ``conv1d_z``.

        Returns:
            Tensor: (B, C', L).
        """
        total = self.d_conv - 1
        # 'same' pads total // 2 on the left, as PyTorch's padding='same'
        # (written out: PyTorch warns about even kernels).
        left = total if self.causal_conv else total // 2
        x = F.pad(x, (left, total - left))
        return F.conv1d(x, conv.weight, conv.bias, groups=self.d_branch)

    def forward(self, tokens: Tensor) -> Tensor:
        """Mix the tokens.

        Args:
            tokens (Tensor): Tokens in raster order, shape (B, L, C).

        Returns:
            Tensor: Mixed tokens, shape (B, L, C).
        """
        xz = self.in_proj(tokens).transpose(1, 2)  # (B, d_inner, L)
        x, z = xz.chunk(2, dim=1)
        x = F.silu(self._conv(x, self.conv1d_x))
        z = F.silu(self._conv(z, self.conv1d_z))

        x_dbl = self.x_proj(x.transpose(1, 2))  # (B, L, R + 2N)
        dt_low, b_mat, c_mat = torch.split(
            x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        if self.dt_bias_twice:
            dt = self.dt_proj(dt_low)  # bias added here and in the scan
        else:
            dt = F.linear(dt_low, self.dt_proj.weight)
        y = selective_scan_fn(
            x,
            dt.transpose(1, 2),
            -torch.exp(self.A_log.float()),
            b_mat.transpose(1, 2).contiguous(),
            c_mat.transpose(1, 2).contiguous(),
            self.D.float(),
            z=None,
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True)
        y = torch.cat([y, z], dim=1).transpose(1, 2)  # (B, L, d_inner)
        return self.out_proj(y)
