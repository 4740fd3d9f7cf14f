"""MonoASD: Align-and-Select distillation for monocular 3D detection.

Importing this package registers every component in mmdet3d's registries and
applies the two stack fixes the project owns (safe checkpoint loading on
torch >= 2.6 and a CPU path for KittiMetric's rotated IoU).
"""
from .utils import *  # noqa: F401,F403
from .evaluation import *  # noqa: F401,F403
from .datasets import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .engine import *  # noqa: F401,F403

__version__ = '0.1.0'
