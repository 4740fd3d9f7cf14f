# Copyright (c) MonoASD contributors. All rights reserved.
"""Programmatic entry points (benchmarks)."""
from .benchmark import format_report, side_by_side, summarize

__all__ = ['format_report', 'side_by_side', 'summarize']
