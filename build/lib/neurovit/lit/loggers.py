"""Weights & Biases logging that is offline by default and respects WANDB_MODE."""

from __future__ import annotations

import os

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger


class WandbLogger(_LightningWandbLogger):
    """Lightning's WandbLogger, offline by default (`wandb sync DIR` uploads later).

    An explicit WANDB_MODE in the environment wins over `offline`: `disabled` turns W&B off entirely,
    `online` logs live (after `wandb login`), `offline`/`dryrun` writes local run files. (Lightning's own
    logger overwrites WANDB_MODE when offline=True, so WANDB_MODE=disabled would be ignored.)
    """

    def __init__(self, *args, offline: bool = True, **kwargs):
        env = os.environ.get("WANDB_MODE", "").strip().lower()
        if env in ("disabled", "online"):
            offline = False
            if kwargs.get("mode") is None:  # explicit, since wandb keeps process-wide settings
                kwargs["mode"] = env
        elif env in ("offline", "dryrun"):
            offline = True
        super().__init__(*args, offline=offline, **kwargs)
