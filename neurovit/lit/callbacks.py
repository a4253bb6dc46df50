"""Callbacks own the side effects: 2D→3D weight transfer, checkpoints in the run folder, prediction
TIFFs and metric tables of validation volumes, and W&B media."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from neurovit.atomic import write_csv, write_text
from neurovit.metrics import get_spec, metric_names


def _voxel_keys(scores: dict) -> list[str]:
    """The registry's voxel metrics present in a module's per-volume scores, in registry order."""
    return [k for k in metric_names("voxel") if k in scores]


def _epoch_due(trainer: L.Trainer, every_n_epochs: int) -> bool:
    """True on every n-th epoch (1-based) and on the last one; never during the sanity check."""
    if trainer.sanity_checking:
        return False
    last = trainer.max_epochs is not None and trainer.max_epochs >= 0 and trainer.current_epoch >= trainer.max_epochs - 1
    return last or (trainer.current_epoch + 1) % max(1, every_n_epochs) == 0


class TransferInit(L.Callback):
    """Initialise the network's encoder from a 2D ViT before fitting (skipped when resuming).

    Args:
        source: timm name with a pretrained tag (e.g. "vit_small_patch16_224.dino") or a checkpoint file
            (timm/safetensors state dict, official DINO backbone, DINO training checkpoint).
        strategy: "center" (W2d on the centre slice, zeros elsewhere), "average" (W2d / D on every slice,
            I3D) or "scratch" (keep the random init). The 2D baseline (mode "2d") takes center/average alike.
        key: which network of a DINO training checkpoint to take ("teacher" or "student").
    """

    def __init__(self, source: str | None = None, strategy: Literal["center", "average", "scratch"] = "center",
                 key: Literal["teacher", "student"] = "teacher"):
        self.source, self.strategy, self.key = source, strategy, key
        self.report = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs after a checkpoint given with --ckpt_path has been restored (trainer.ckpt_path is known only
        # now) and before the first training step; every DDP rank loads the same weights.
        if self.report is not None:
            return
        if trainer.ckpt_path:
            rank_zero_info(f"TransferInit: resuming from {trainer.ckpt_path}; no 2D weights transferred")
            return
        from neurovit.models.pretrained import load_2d_state_dict
        from neurovit.models.transfer import _encoder_of, transfer_2d_to_3d

        net = getattr(pl_module, "net", pl_module)
        if self.strategy == "scratch":
            self.report = transfer_2d_to_3d(net, None, "scratch")
        else:
            _encoder_of(net)  # a network without a ViT encoder fails here, before any weights are loaded
            if not self.source:
                from neurovit.models.archs import ModelConfigError

                raise ModelConfigError(f"init.strategy={self.strategy!r} needs init.source (a timm name such as "
                                       "'vit_small_patch16_224.dino' or a checkpoint file); or use 'scratch'")
            state = load_2d_state_dict(self.source, which=self.key)
            self.report = transfer_2d_to_3d(net, state, self.strategy, source=str(self.source))
        rank_zero_info(f"TransferInit: {self.report}")
        for logger in trainer.loggers:
            logger.log_hyperparams({"init/strategy": self.strategy, "init/source": str(self.source)})


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose default folder is `<trainer.default_root_dir>/checkpoints` (next to config.yaml)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
        super().setup(trainer, pl_module, stage)


class ValidationWriter(L.Callback):
    """Writes the stacked probability TIFFs of the validation (and test) volumes and a metrics table.

    Files: `<dirpath>/predictions/NAME.tif` (float32 probabilities), `<dirpath>/val_metrics.csv` and
    `<dirpath>/metrics.json` (per-volume Dice/precision/recall and their mean). `dirpath` defaults to
    the trainer's default_root_dir. Predictions are written every `every_n_epochs` and at the last epoch.
    """

    def __init__(self, dirpath: str | None = None, every_n_epochs: int = 1, save_probabilities: bool = True):
        self.dirpath, self.every_n_epochs, self.save_probabilities = dirpath, every_n_epochs, save_probabilities
        self.rows: list[dict] = []
        self.last_summary: dict | None = None

    def _root(self, trainer) -> Path:
        return Path(self.dirpath or trainer.default_root_dir)

    def _due(self, trainer) -> bool:
        return _epoch_due(trainer, self.every_n_epochs)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.rows = []

    on_test_epoch_start = on_validation_epoch_start

    def _collect(self, trainer, outputs, split: str) -> None:
        if not isinstance(outputs, dict) or "scores" not in outputs:
            return
        self.rows.append({"name": outputs["name"], **outputs["scores"]})
        if self.save_probabilities and (split == "test" or self._due(trainer)):
            from neurovit.data.tiff import write_stack

            folder = "predictions" if split == "val" else "test_predictions"
            write_stack(self._root(trainer) / folder / f"{outputs['name']}.tif",
                        outputs["prob"].numpy().astype(np.float32))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, outputs, "val")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, outputs, "test")

    def _write(self, trainer, split: str) -> None:
        if not self.rows or trainer.sanity_checking:
            return
        rows = sorted(self.rows, key=lambda r: r["name"])
        keys = _voxel_keys(rows[0])
        mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
        std = {k: float(np.std([r[k] for r in rows])) for k in keys}
        self.last_summary = {"split": split, "epoch": trainer.current_epoch, "step": trainer.global_step,
                             "mean": mean, "std": std, "volumes": rows}
        if trainer.is_global_zero:
            root = self._root(trainer)
            root.mkdir(parents=True, exist_ok=True)
            write_csv(root / f"{split}_metrics.csv", rows, ["name", *keys])
            write_text(root / ("metrics.json" if split == "val" else "test_metrics.json"),
                       json.dumps(self.last_summary, indent=2))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._write(trainer, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._write(trainer, "test")

    @rank_zero_only
    def on_fit_end(self, trainer, pl_module) -> None:
        s = self.last_summary
        if not s:
            return
        root = self._root(trainer)
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or "(none)"
        mean, std = s["mean"], s["std"]
        head = "dice" if "dice" in mean else next(iter(mean), None)
        main = (f"mean {get_spec(head).display} {get_spec(head).format(mean[head])} "
                f"± {get_spec(head).format(std[head])}" if head else "no scores")
        others = ", ".join(f"{get_spec(k).display} {get_spec(k).format(mean[k])}" for k in mean if k != head)
        print(f"\nvalidation after epoch {s['epoch'] + 1} (step {s['step']}): {main} over {len(s['volumes'])} "
              f"volumes{f' ({others})' if others else ''}\n"
              f"  per volume: {root / 'val_metrics.csv'}   predictions: {root / 'predictions'}\n"
              f"  best checkpoint: {best}", flush=True)


class WandbMedia(L.Callback):
    """W&B media each validation epoch: MIP overlays (image / ground truth / prediction) for the first
    `n_volumes` validation volumes and a per-volume metrics table. Does nothing without a WandbLogger."""

    def __init__(self, n_volumes: int = 3):
        self.n_volumes = n_volumes
        self.images: list = []
        self.rows: list = []
        self.columns: list[str] = []  # name + the registry's voxel metrics the module reports

    @staticmethod
    def _wandb_logger(trainer):
        from lightning.pytorch.loggers import WandbLogger

        return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.images, self.rows, self.columns = [], [], []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._wandb_logger(trainer) is None or not isinstance(outputs, dict) or "scores" not in outputs:
            return
        s = outputs["scores"]
        if not self.columns:
            self.columns = ["name", *_voxel_keys(s)]
        self.rows.append([outputs["name"], *(s.get(k) for k in self.columns[1:])])
        if len(self.images) < self.n_volumes:
            from neurovit.viz import overlay_panel

            panel = overlay_panel(batch["image"][0, 0].cpu().numpy(), batch["label"][0, 0].cpu().numpy(),
                                  outputs["pred"].numpy())
            self.images.append((outputs["name"], panel, s["dice"]))

    @rank_zero_only
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        logger = self._wandb_logger(trainer)
        if logger is None or trainer.sanity_checking or not self.rows:
            return
        if self.images:
            logger.log_image(key="val/mip", images=[p for _, p, _ in self.images],
                             caption=[f"{n}: Dice {d:.3f} (image | truth | prediction; green = truth, "
                                      f"magenta = prediction)" for n, _, d in self.images],
                             step=trainer.global_step)
        logger.log_table(key="val/volumes", columns=self.columns, data=self.rows,
                         step=trainer.global_step)


class ReconstructionCallback(L.Callback):
    """Traces the stacked predictions of the evaluated volumes into SWC and scores them against the
    ground-truth SWC (ESA/DSA/PDS, node precision/recall/F1), every `every_n_epochs` validations and
    at test time.

    Writes `<dirpath>/reconstructions/{val,test}/NAME.swc` (voxel units) and
    `<dirpath>/{val,test}_reconstruction.csv`, and logs the means as `val/esa`, `val/node_f1`, ...
    (the registry's tree metrics, `neurovit.metrics.METRICS`; distances in voxels). Volumes without a
    ground-truth SWC are traced but not scored. A trace without edges (fewer than 2 nodes) is scored as
    the worst value (see `neurovit.metrics`), kept in the means, marked in the CSV's `degenerate` column
    and counted in `val/degenerate`.
    """

    METRICS = metric_names("tree")

    def __init__(self, every_n_epochs: int = 1, threshold: float | None = None, dist_threshold: float = 2.0,
                 dirpath: str | None = None):
        self.every_n_epochs, self.threshold, self.dist_threshold = every_n_epochs, threshold, dist_threshold
        self.dirpath = dirpath
        self.rows: list[dict] = []

    def _due(self, trainer) -> bool:
        return _epoch_due(trainer, self.every_n_epochs)

    def _gold_swc(self, trainer, name: str):
        ds = getattr(getattr(trainer, "datamodule", None), "dataset", None)
        rec = next((r for r in getattr(ds, "records", []) if r.name == name), None)
        if rec is None or rec.swc is None:
            return None
        from neurovit.data.swc import read_swc

        return read_swc(rec.swc, default_units=ds.swc_units)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.rows = []

    on_test_epoch_start = on_validation_epoch_start

    def _trace(self, trainer, pl_module, outputs, split: str) -> None:
        if not isinstance(outputs, dict) or "prob" not in outputs:
            return
        from neurovit.data.swc import write_swc
        from neurovit.metrics import reconstruction_scores
        from neurovit.trace import trace

        ds = getattr(getattr(trainer, "datamodule", None), "dataset", None)
        vs = getattr(ds, "voxel_size", (1.0, 1.0, 1.0))
        threshold = self.threshold if self.threshold is not None else pl_module.hparams.threshold
        tree = trace(outputs["prob"].numpy(), threshold=threshold, voxel_size=vs, source=outputs["name"],
                     notes=[f"epoch {trainer.current_epoch}", f"step {trainer.global_step}"])
        root = Path(self.dirpath or trainer.default_root_dir) / "reconstructions" / split
        if tree.n_nodes:
            write_swc(tree, root / f"{outputs['name']}.swc", comments=[h.lstrip("# ") for h in tree.header])
        row = {"name": outputs["name"], "nodes": tree.n_nodes}
        gold = self._gold_swc(trainer, outputs["name"])
        if gold is not None:
            scores = reconstruction_scores(tree, gold, threshold=self.dist_threshold)
            row.update({k: float(scores[k]) for k in self.METRICS if k in scores})
            row["degenerate"] = bool(scores.get("degenerate", False))
        self.rows.append(row)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._due(trainer):
            self._trace(trainer, pl_module, outputs, "val")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._trace(trainer, pl_module, outputs, "test")

    def _finish(self, trainer, pl_module, split: str) -> None:
        if not self.rows:
            return
        means = {}
        for k in self.METRICS:
            vals = [r[k] for r in self.rows if k in r and np.isfinite(r[k])]
            if vals:
                means[k] = float(np.mean(vals))
                pl_module.log(f"{split}/{k}", means[k], sync_dist=True, batch_size=len(vals))
        scored = [r for r in self.rows if "degenerate" in r]
        if scored:
            n_degenerate = sum(bool(r["degenerate"]) for r in scored)
            pl_module.log(f"{split}/degenerate", float(n_degenerate), sync_dist=True, reduce_fx="sum",
                          batch_size=len(scored))
            if n_degenerate:
                rank_zero_info(f"ReconstructionCallback: {n_degenerate} of {len(scored)} {split} volume(s) traced "
                               "to fewer than 2 nodes: scored as the worst value and kept in the means")
        if trainer.is_global_zero:
            root = Path(self.dirpath or trainer.default_root_dir)
            root.mkdir(parents=True, exist_ok=True)
            keys = ["name", "nodes", *self.METRICS, "degenerate"]
            write_csv(root / f"{split}_reconstruction.csv", sorted(self.rows, key=lambda r: r["name"]), keys)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._due(trainer):
            self._finish(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._finish(trainer, pl_module, "test")
