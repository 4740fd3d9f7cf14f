# Copyright (c) MonoASD contributors. All rights reserved.
from .did_m3d import DIDM3D, StudentDetector, TeacherDetector

__all__ = ['DIDM3D', 'StudentDetector', 'TeacherDetector']
