"""A hook for tests/test_resume.py: SIGKILL the training process."""
import os
import signal

from mmengine.hooks import Hook
from mmdet3d.registry import HOOKS


@HOOKS.register_module()
class KillAtIterHook(Hook):
    """Kill the process with SIGKILL before training iteration ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if runner.iter == self.at:
            os.kill(os.getpid(), signal.SIGKILL)
