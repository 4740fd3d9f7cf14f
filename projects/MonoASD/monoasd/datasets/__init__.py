# Copyright (c) MonoASD contributors. All rights reserved.
from .transforms import *  # noqa: F401,F403
from .transforms import __all__  # noqa: F401
