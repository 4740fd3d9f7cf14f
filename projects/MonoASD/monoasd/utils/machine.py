# Copyright (c) MonoASD contributors. All rights reserved.
"""Which machine a timing (or a training) came from.

Wall times and training speed move by machine: the same tiny training ran
at 0.87 s/iter on one 2-core CPU machine and at 2.0 s/iter on another of
the same kind (docs/profile_search.md, "Eighth round"). The benchmark and
the main job's report record :func:`machine_info` next to their figures,
so that two figures can be compared only where the machine is the same.
"""
import os
import platform

import torch


def cpu_model(cpuinfo: str = '/proc/cpuinfo') -> str:
    """The CPU's model name (``cpuinfo`` on Linux, else
    :func:`platform.processor`), or ``'unknown'``."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.lower().startswith('model name'):
                    return line.split(':', 1)[1].strip() or 'unknown'
    except OSError:
        pass
    return platform.processor() or 'unknown'


def machine_info() -> dict:
    """What decides the speed of a CPU run on this machine.

    Returns:
        dict: ``cpu`` (model name), ``logical_cpus`` (``os.cpu_count()``),
        ``cpu_capability`` (the SIMD level torch's CPU kernels use, e.g.
        ``AVX2``), ``torch`` (version), ``cuda`` (GPU name or ``None``)
        and ``host`` (``platform.node()``).
    """
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):  # older torch
        capability = 'unknown'
    cuda = (torch.cuda.get_device_name(0)
            if torch.cuda.is_available() else None)
    return dict(cpu=cpu_model(), logical_cpus=os.cpu_count() or 0,
                cpu_capability=capability, torch=torch.__version__,
                cuda=cuda, host=platform.node())


def machine_line(info: dict) -> str:
    """One line for a report, e.g. ``AMD EPYC, 2 logical CPUs, AVX2,
    torch 2.13.0+cpu``."""
    text = (f'{info.get("cpu", "unknown")}, '
            f'{info.get("logical_cpus", "?")} logical CPUs, '
            f'{info.get("cpu_capability", "unknown")}, '
            f'torch {info.get("torch", "?")}')
    if info.get('cuda'):
        text += f', GPU {info["cuda"]}'
    return text
