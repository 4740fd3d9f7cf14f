# Copyright (c) MonoASD contributors. All rights reserved.
from .dla_up import DLAUp, IDAUp

__all__ = ['DLAUp', 'IDAUp']
