# Copyright (c) MonoASD contributors. All rights reserved.
from . import (backbones, data_preprocessors, dense_heads, detectors,
               distillers, layers, losses, necks, task_modules, utils)
from .backbones import *  # noqa: F401,F403
from .data_preprocessors import *  # noqa: F401,F403
from .dense_heads import *  # noqa: F401,F403
from .detectors import *  # noqa: F401,F403
from .distillers import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .task_modules import *  # noqa: F401,F403
from .utils import *  # noqa: F401,F403

__all__ = [
    name for mod in (backbones, data_preprocessors, dense_heads, detectors,
                     distillers, layers, losses, necks, task_modules, utils)
    for name in mod.__all__
]
