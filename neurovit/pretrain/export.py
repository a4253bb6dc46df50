"""The product of `neurovit pretrain`: the teacher's backbone as a timm-named 2D state dict plus a JSON.

`RUN/backbone.pth` holds exactly what an official DINO ``*_pretrain.pth`` holds (timm key names, no head),
so `fit --init.source RUN/backbone.pth` loads it through the same loader, with the same errors, as a
downloaded DINO file. `RUN/backbone.json` says what it was trained on (input kind, folder, file count and
digest), how long (steps, epochs, images seen, wall seconds summed over resumed runs) and with what
(architecture, crop sizes, lightly version). Both are replaced atomically after every epoch, so an
interrupted run leaves the last complete epoch's backbone, never a partial file.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from neurovit.atomic import atomic_open, write_json

BACKBONE = "backbone.pth"
BACKBONE_INFO = "backbone.json"


class BackboneExport(L.Callback):
    """Write RUN/backbone.pth and RUN/backbone.json after every training epoch (rank 0).

    Args:
        dirpath: folder of the two files (default: the trainer's default_root_dir).
    """

    def __init__(self, dirpath: str | None = None):
        self.dirpath = dirpath
        self.seconds_before = 0.0  # wall time of earlier (resumed-from) runs, restored from the checkpoint
        self._t0 = time.perf_counter()

    def _root(self, trainer: L.Trainer) -> Path:
        return Path(self.dirpath or trainer.default_root_dir)

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self._t0

    def state_dict(self) -> dict:
        return {"seconds": self.seconds()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.seconds_before = float(state_dict.get("seconds", 0.0))

    def info(self, trainer: L.Trainer, pl_module) -> dict:
        import lightly

        h = pl_module.hparams
        dm = trainer.datamodule
        batch = int(dm.hparams.batch_size) * trainer.world_size
        views = 2 + int(dm.hparams.n_local_views)
        return {
            "format": "timm VisionTransformer state dict (teacher backbone, no head); "
                      "use as `neurovit fit --init.source PATH`",
            "method": "DINO (lightly)", "lightly_version": lightly.__version__,
            "arch": h.arch, "img_size": h.img_size, "patch_size": pl_module.teacher_backbone.patch_embed.patch_size[0],
            "embed_dim": pl_module.teacher_backbone.embed_dim,
            "trained_on": dm.describe(),
            "steps": int(trainer.global_step), "epochs": int(trainer.current_epoch) + 1,
            "images_seen": int(trainer.global_step) * batch, "views_per_image": views,
            "global_batch": batch, "devices": trainer.world_size,
            "wall_seconds": round(self.seconds(), 1),
            "final_loss": _metric(trainer, "train/loss"),
            "teacher_feature_std": _metric(trainer, "train/teacher_feature_std"),
        }

    def write(self, trainer: L.Trainer, pl_module) -> Path:
        root = self._root(trainer)
        root.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.teacher_backbone.state_dict().items()}
        with atomic_open(root / BACKBONE) as fh:
            torch.save(state, fh)
        write_json(root / BACKBONE_INFO, self.info(trainer, pl_module))
        return root / BACKBONE

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            path = self.write(trainer, pl_module)
            if trainer.current_epoch + 1 >= (trainer.max_epochs or 0):
                rank_zero_info(f"pretrained backbone: {path} (use: neurovit fit --init.source {path})")


def _metric(trainer: L.Trainer, key: str) -> float | None:
    v = trainer.callback_metrics.get(key)
    return None if v is None else round(float(v), 5)
