"""Hooks that kill a training process on purpose (imported by the crash tests' configs)."""
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SigkillBeforeIterHook(Hook):
    """SIGKILL the process (no clean-up can run) before training iteration ``at`` (0-based)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.at:
            os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class SigkillWhileSavingHook(Hook):
    """SIGKILL the process in the middle of writing the checkpoint of epoch ``at``: after its
    bytes are written to disk, before the write completes."""

    def __init__(self, at: int) -> None:
        self.at = at

    def before_save_checkpoint(self, runner, checkpoint):
        if runner.epoch + 1 == self.at:
            import xcit_dense.engine.resume as resume

            def killing_fsync(fd):
                os.kill(os.getpid(), signal.SIGKILL)
            resume.os.fsync = killing_fsync
