"""LightningModule: Dice-based loss on centre slices, AdamW + warm-up/decay, whole-volume validation."""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.segmentation import DiceScore

from neurovit.data.normalise import CHECKPOINT_KEY, Preprocessing
from neurovit.inference import segment_volume

# DiceScore warns about its default even when `average` is given explicitly (as it is here).
warnings.filterwarnings("ignore", message="DiceScore metric currently defaults")


def _made_by_cli() -> bool:
    """True while LightningCLI instantiates the module (it then hands over the config as hyperparameters)."""
    try:
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
    except ImportError:  # pragma: no cover - older/newer Lightning
        return False
    return _given_hyperparameters.get() is not None


def volume_scores(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Dice, precision and recall of binary volumes, by the metric registry's one rule for empty masks
    (`neurovit.metrics.overlap_scores`: both empty → 1.0, a zero denominator otherwise → 0.0)."""
    from neurovit.metrics import overlap_scores

    pred, target = pred.bool(), target.bool()
    return overlap_scores(int((pred & target).sum()), int(pred.sum()), int(target.sum()))


class WithClDice(nn.Module):
    """base(logits, target) + weight · soft-clDice(target, sigmoid(logits)) (Shit et al. 2021)."""

    def __init__(self, base: nn.Module, weight: float, iterations: int = 3):
        super().__init__()
        from monai.losses import SoftclDiceLoss

        self.base, self.weight = base, float(weight)
        # MONAI >= 1.5: `smooth` is the harmonic mean's epsilon and the ratios' smoothing is smooth_nr/smooth_dr
        # (with smooth=1 a perfect prediction would cost 1/3); older MONAI: `smooth` smooths the ratios
        ratios = "smooth_nr" in inspect.signature(SoftclDiceLoss).parameters
        self.cldice = SoftclDiceLoss(iter_=iterations, **({"smooth_nr": 1.0, "smooth_dr": 1.0} if ratios else {"smooth": 1.0}))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.base(logits, target) + self.weight * self.cldice(target, torch.sigmoid(logits))


class SegmentationModule(L.LightningModule):
    """Trains a slice segmenter (e.g. `neurovit.models.SliceViT`) on blocks; validates on whole volumes.

    Args:
        net: the network, blocks (B, 1, D, H, W) → centre-slice logits (B, 1, H, W).
        loss: "dicece" (Dice + BCE), "dicefocal" (Dice + focal) or "dice"; Dice over the whole batch.
        cldice_weight: weight of an added soft-clDice term (topology), 0 = off.
        lr, weight_decay: AdamW; no decay on biases, norms, position embedding and cls token.
        warmup_steps: linear warm-up from 0; then `schedule` ("cosine", "linear" to 0, or "constant").
        layer_decay: layer-wise lr decay for the pretrained encoder: block i of n gets lr · decay^(n − i),
            the patch/position embeddings decay^(n + 1); 1.0 = off.
        threshold: probability threshold for the binary masks the metrics use.
        sw_overlap, sw_batch_size, z_chunk: whole-volume sliding-window inference settings.
        z_stride: slices between block centres for all-slices nets (None: D // 2 + 1; D: no z overlap).
        compile: run the training forward pass through `torch.compile` (weights and checkpoints unchanged).
    """

    def __init__(self, net: nn.Module, loss: Literal["dicece", "dicefocal", "dice"] = "dicece",
                 cldice_weight: float = 0.0, lr: float = 3e-4, weight_decay: float = 0.05,
                 warmup_steps: int = 50, schedule: Literal["cosine", "linear", "constant"] = "cosine",
                 layer_decay: float = 1.0, threshold: float = 0.5, sw_overlap: float = 0.25,
                 sw_batch_size: int = 32, z_chunk: int = 8, z_stride: int | None = None,
                 compile: bool = False):  # pragma: no mutate block (see below)
        # mutmut must leave __init__ in place: its trampoline moves a method body out of the class, where
        # Lightning's save_hyperparameters no longer finds this frame's arguments (the hparams come out empty)
        super().__init__()
        self.save_hyperparameters(ignore=[] if _made_by_cli() else ["net"])
        self.net = net
        self.preprocessing: Preprocessing | None = None  # set from the data module or the checkpoint
        self.last_predict_info: dict = {}
        object.__setattr__(self, "_compiled", None)  # not a submodule: keeps state_dict keys unchanged
        self.loss_fn = self._make_loss(loss, cldice_weight)
        self.val_dice = DiceScore(num_classes=1, include_background=True, average="micro",
                                  aggregation_level="samplewise", input_format="one-hot")
        self.val_precision, self.val_recall = MeanMetric(), MeanMetric()
        self.test_dice = DiceScore(num_classes=1, include_background=True, average="micro",
                                   aggregation_level="samplewise", input_format="one-hot")

    # ------------------------------------------------------------------ model
    @staticmethod
    def _make_loss(kind: str, cldice_weight: float) -> nn.Module:
        from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss

        if kind == "dicece":
            base = DiceCELoss(sigmoid=True, batch=True)
        elif kind == "dicefocal":
            base = DiceFocalLoss(sigmoid=True, batch=True)
        elif kind == "dice":
            base = DiceLoss(sigmoid=True, batch=True)
        else:
            raise ValueError(f"unknown loss {kind!r}; use dicece, dicefocal or dice")
        if cldice_weight <= 0:
            return base
        return WithClDice(base, cldice_weight)

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        return self.net(blocks)

    def _train_forward(self, blocks: torch.Tensor) -> torch.Tensor:
        if not self.hparams.compile:
            return self.net(blocks)
        if self._compiled is None:
            object.__setattr__(self, "_compiled", torch.compile(self.net))
        return self._compiled(blocks)

    @property
    def block_depth(self) -> int:
        return int(getattr(self.net, "block_depth", 5))

    @property
    def roi_size(self) -> int:
        return int(getattr(self.net, "img_size", 100))

    # ------------------------------------------------------------------ preprocessing (saved in checkpoints)
    def setup(self, stage: str) -> None:
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if self.preprocessing is None and isinstance(getattr(dm, "preprocessing", None), Preprocessing):
            self.preprocessing = dm.preprocessing

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = (self.preprocessing or Preprocessing()).to_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        stored = checkpoint.get(CHECKPOINT_KEY)
        if stored is None:
            warnings.warn("the checkpoint records no preprocessing (written by an older neurovit): assuming "
                          "normalisation percentiles (1, 99.8) and an unknown training voxel size", UserWarning,
                          stacklevel=2)
            saved = Preprocessing()
        else:
            saved = Preprocessing.from_dict(stored)
        current = self.preprocessing
        if current is not None and current != saved:
            fitting = self._trainer is not None and self.trainer.state.fn == "fit"
            if fitting:
                from neurovit.errors import NeurovitError

                raise NeurovitError(f"the checkpoint was trained with {saved.to_dict()} but the data now gives "
                                    f"{current.to_dict()}; resume with the same data.percentiles/clip and voxel "
                                    "size, or start a new run")
            rank_zero_warn(f"evaluating with the checkpoint's preprocessing {saved.to_dict()}, not the data "
                           f"module's {current.to_dict()}")
        self.preprocessing = saved

    def predict_probabilities(self, volume, voxel_size=None, *, progress: bool = False, out=None, workdir=None,
                              net=None, **overrides) -> torch.Tensor | np.ndarray:
        """Raw (Z, Y, X) stack (tensor, array or lazy array) → (Z, Y, X) probabilities.

        Normalised with the model's own normaliser and resampled to its training voxel size when
        `voxel_size` (z, y, x µm) differs by more than 10 % (see `neurovit.inference.segment_volume`);
        None means "unknown" (the model's voxel size is assumed, with a warning). Returns a tensor for a
        tensor input, else the array written (`out` when given). `overrides` replace the module's
        sliding-window settings (overlap, sw_batch_size, z_chunk, z_stride, autocast); `net` replaces the
        network for the forward passes (e.g. a compiled copy).
        """
        prob, self.last_predict_info = self._segment(volume, voxel_size, progress=progress, out=out,
                                                     workdir=workdir, net=net, **overrides)
        return torch.from_numpy(prob) if isinstance(volume, torch.Tensor) else prob

    def inference_settings(self, **overrides) -> dict:
        """The module's sliding-window settings (overlap, sw_batch_size, z_chunk, z_stride), with every
        override that is not None in their place (and any other keyword passed through)."""
        h = self.hparams
        settings = {"overlap": h.sw_overlap, "sw_batch_size": h.sw_batch_size, "z_chunk": h.z_chunk,
                    "z_stride": h.get("z_stride")}
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return settings

    def _segment(self, volume, voxel_size, *, net=None, **kwargs):
        settings = self.inference_settings(**kwargs)
        if isinstance(volume, torch.Tensor):
            volume = volume.detach().cpu().numpy()
        if voxel_size is not None and not all(math.isfinite(float(v)) for v in voxel_size):
            voxel_size = None
        return segment_volume(self.net if net is None else net, volume,
                              preprocessing=self.preprocessing or Preprocessing(), voxel_size=voxel_size,
                              block_depth=self.block_depth, roi_size=self.roi_size, device=self.device, **settings)

    # ------------------------------------------------------------------ steps
    def on_train_epoch_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "set_epoch"):
            dm.set_epoch(self.current_epoch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self._train_forward(batch["image"])
        target = batch["label_all"] if logits.ndim == 5 else batch["label"]  # all-slices models: (B,1,D,H,W)
        loss = self.loss_fn(logits, target)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(logits))
        return loss

    def _evaluate_volume(self, batch: dict) -> dict:
        image, label = batch["image"][0, 0], batch["label"][0, 0]
        vs = batch.get("voxel_size")
        prob = self.predict_probabilities(image, None if vs is None else [float(v) for v in vs[0]])
        pred = prob > self.hparams.threshold
        scores = volume_scores(pred, label.cpu() > 0)
        name = batch["name"][0] if isinstance(batch.get("name"), (list, tuple)) else str(batch.get("name", ""))
        return {"name": name, "prob": prob, "pred": pred, "scores": scores}

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        out = self._evaluate_volume(batch)
        target = batch["label"][0, 0].cpu() > 0
        self.val_dice.update(out["pred"][None, None].long().to(self.device), target[None, None].long().to(self.device))
        self.val_precision.update(out["scores"]["precision"])
        self.val_recall.update(out["scores"]["recall"])
        self.log("val/dice", self.val_dice, prog_bar=True, batch_size=1)
        self.log("val/precision", self.val_precision, batch_size=1)
        self.log("val/recall", self.val_recall, batch_size=1)
        return out

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        out = self._evaluate_volume(batch)
        target = batch["label"][0, 0].cpu() > 0
        self.test_dice.update(out["pred"][None, None].long().to(self.device), target[None, None].long().to(self.device))
        self.log("test/dice", self.test_dice, batch_size=1)
        for k in ("precision", "recall"):
            self.log(f"test/{k}", out["scores"][k], batch_size=1)
        return out

    # ------------------------------------------------------------------ optimisation
    def _param_groups(self) -> list[dict]:
        h = self.hparams
        encoder = getattr(self.net, "encoder", None)
        n_layers = len(getattr(encoder, "blocks", [])) if encoder is not None else 0
        groups: dict[tuple[float, float], list] = {}
        for name, p in self.net.named_parameters():
            if not p.requires_grad:
                continue
            no_decay = p.ndim <= 1 or name.endswith(".bias") or "pos_embed" in name or "cls_token" in name
            scale = 1.0
            if h.layer_decay != 1.0 and name.startswith("encoder."):
                rest = name[len("encoder."):]
                if rest.startswith("blocks."):
                    layer = int(rest.split(".")[1]) + 1
                elif rest.startswith(("patch_embed", "pos_embed", "cls_token")):
                    layer = 0
                else:
                    layer = n_layers + 1
                scale = h.layer_decay ** (n_layers + 1 - layer)
            key = (scale, 0.0 if no_decay else h.weight_decay)
            groups.setdefault(key, []).append(p)
        return [{"params": ps, "lr": h.lr * s, "weight_decay": wd} for (s, wd), ps in groups.items()]

    def configure_optimizers(self):
        h = self.hparams
        opt = torch.optim.AdamW(self._param_groups(), lr=h.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1000
        warm = max(0, min(h.warmup_steps, total - 1))

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / (warm + 1)
            if h.schedule == "constant":
                return 1.0
            progress = min(1.0, (step - warm) / max(1, total - warm))
            if h.schedule == "linear":
                return max(0.0, 1.0 - progress)
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
