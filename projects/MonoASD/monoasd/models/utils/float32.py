# Copyright (c) MonoASD contributors. All rights reserved.
"""Run a function in float32 under mixed precision (``AmpOptimWrapper``)."""
import functools
from typing import Any, Callable

import torch

_LOW = (torch.float16, torch.bfloat16)


def _to32(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.float() if x.dtype in _LOW else x
    if isinstance(x, (list, tuple)):
        return type(x)(_to32(v) for v in x)
    if isinstance(x, dict):
        return {k: _to32(v) for k, v in x.items()}
    return x


def _device_type(args, kwargs) -> str:
    for x in list(args) + list(kwargs.values()):
        if isinstance(x, torch.Tensor):
            return x.device.type
        if isinstance(x, (list, tuple)) and x and isinstance(
                x[0], torch.Tensor):
            return x[0].device.type
        if isinstance(x, dict):
            for v in x.values():
                if isinstance(v, torch.Tensor):
                    return v.device.type
    return 'cpu'


def float32_region(fn: Callable) -> Callable:
    """Decorator: autocast off and float16/bfloat16 tensor arguments
    (also inside lists, tuples and dicts) cast to float32.

    Used for what loses too much in half precision: the selective scan
    (a long product of decays), the affinity Gram matrices (sums over all
    positions) and every loss. Outside autocast it changes nothing for
    float32 inputs.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = _device_type(args, kwargs)
        with torch.autocast(device_type=device, enabled=False):
            return fn(*_to32(args), **_to32(kwargs))

    return wrapper
