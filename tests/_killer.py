"""Test helper (not a test module): a Lightning callback that SIGKILLs its own process mid-epoch, so
tests can interrupt `neurovit fit` the way a pre-empted cluster job is."""

from __future__ import annotations

import os
import signal

import lightning as L


class KillAt(L.Callback):
    def __init__(self, epoch: int = 1, batch: int = 0, signum: int = int(signal.SIGKILL)):
        self.epoch, self.batch, self.signum = epoch, batch, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)
