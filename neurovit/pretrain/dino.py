"""DINO self-supervised pretraining of a timm 2D ViT (student/teacher, lightly's head, loss and EMA).

Everything DINO-specific comes from lightly (`DINOProjectionHead`, `DINOLoss` with its centring and teacher
temperature warm-up, `update_momentum`, `cosine_schedule`); the module only wires it into Lightning: the
teacher is an exponential moving average of the student, updated after every optimizer step with a momentum
that follows a cosine from `momentum` to 1; the learning rate warms up linearly then follows a cosine to
`min_lr`; the last layer of the student's head is frozen for the first `freeze_last_layer` epochs. The
backbones are timm `VisionTransformer`s of the project's sizes (`neurovit.models.archs`), so the teacher's
state dict has exactly the key names `init.source` loads (see `neurovit.pretrain.export`).
"""

from __future__ import annotations

import math

import lightning as L
import torch

from neurovit.models.archs import build_vit2d, resolve_arch


class DinoPretrainModule(L.LightningModule):
    """Student and teacher ViT + DINO heads.

    Args:
        arch: ViT size (`neurovit.models.ARCHS`: neurovit_tiny_patch16, vit_small_patch16_224, ...).
        img_size: the ViT's native input side (= the data's global_crop_size); local crops of other sizes
            pass too (dynamic image size).
        out_dim, hidden_dim, bottleneck_dim: DINO head sizes (DINO: 65536, 2048, 256; smaller for small data).
        lr: peak learning rate for `lr_batch_size` images (scaled linearly with the global batch, as DINO).
        min_lr: learning rate at the end of the cosine.
        warmup_steps: linear warm-up of the learning rate.
        weight_decay: AdamW weight decay of weights (not of biases, norms, tokens and position embeddings).
        momentum: the teacher's EMA momentum at step 0 (cosine to 1 at the last step).
        teacher_temp, warmup_teacher_temp, warmup_teacher_temp_epochs, student_temp: DINOLoss temperatures.
        freeze_last_layer: epochs during which the head's last layer gets no gradient.
        drop_path_rate: stochastic depth of the student.
    """

    def __init__(self, arch: str = "neurovit_tiny_patch16", img_size: int = 96, out_dim: int = 4096,
                 hidden_dim: int = 512, bottleneck_dim: int = 128, lr: float = 5e-4, lr_batch_size: int = 256,
                 min_lr: float = 1e-6, warmup_steps: int = 100, weight_decay: float = 0.04,
                 momentum: float = 0.996, teacher_temp: float = 0.04, warmup_teacher_temp: float = 0.04,
                 warmup_teacher_temp_epochs: int = 0, student_temp: float = 0.1, freeze_last_layer: int = 1,
                 drop_path_rate: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        from lightly.loss import DINOLoss
        from lightly.models.modules import DINOProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        resolve_arch(arch)  # unknown sizes fail here, with the list of known ones
        self.student_backbone = build_vit2d(arch, img_size=img_size, dynamic_img_size=True,
                                            drop_path_rate=drop_path_rate)
        self.teacher_backbone = build_vit2d(arch, img_size=img_size, dynamic_img_size=True)
        self.teacher_backbone.load_state_dict(self.student_backbone.state_dict())
        dim = self.student_backbone.embed_dim
        self.student_head = DINOProjectionHead(dim, hidden_dim, bottleneck_dim, out_dim,
                                               freeze_last_layer=freeze_last_layer)
        self.teacher_head = DINOProjectionHead(dim, hidden_dim, bottleneck_dim, out_dim)  # (weight_norm: no deepcopy)
        self.teacher_head.load_state_dict(self.student_head.state_dict())
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)
        self.criterion = DINOLoss(output_dim=out_dim, warmup_teacher_temp=warmup_teacher_temp,
                                  teacher_temp=teacher_temp, warmup_teacher_temp_epochs=warmup_teacher_temp_epochs,
                                  student_temp=student_temp)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher features (CLS token) of images (B, 3, H, W)."""
        return self.teacher_backbone(x)

    def _student(self, x: torch.Tensor) -> torch.Tensor:
        return self.student_head(self.student_backbone(x))

    def training_step(self, views: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        from lightly.utils.debug import std_of_l2_normalized

        global_views = views[:2]
        with torch.no_grad():  # the teacher's backbone features serve the loss and the collapse monitor
            teacher_feats = [self.teacher_backbone(v) for v in global_views]
            teacher_out = [self.teacher_head(f) for f in teacher_feats]
        student_out = [self._student(v) for v in views]
        loss = self.criterion(teacher_out, student_out, epoch=self.current_epoch)
        bs = views[0].shape[0]
        feats = teacher_feats[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs, sync_dist=True)
        self.log("train/teacher_feature_std", std_of_l2_normalized(feats), batch_size=bs)  # → 0: collapse
        self.log("train/momentum", self.momentum_at(self.global_step), batch_size=bs)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=bs)
        return loss

    def on_after_backward(self) -> None:
        self.student_head.cancel_last_layer_gradients(current_epoch=self.current_epoch)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        from lightly.models.utils import update_momentum

        m = self.momentum_at(self.global_step)
        update_momentum(self.student_backbone, self.teacher_backbone, m)
        update_momentum(self.student_head, self.teacher_head, m)

    # ------------------------------------------------------------------ schedules
    def total_steps(self) -> int:
        """Optimizer steps of the whole run (Lightning's estimate, read once: it may rebuild the dataloader)."""
        if getattr(self, "_total_steps", None) is None:
            steps = getattr(self.trainer, "estimated_stepping_batches", None) if self._trainer is not None else None
            self._total_steps = int(steps) if steps and math.isfinite(steps) else 1
        return self._total_steps

    def momentum_at(self, step: int) -> float:
        from lightly.utils.scheduler import cosine_schedule

        return float(cosine_schedule(min(step, self.total_steps()), self.total_steps(), self.hparams.momentum, 1.0))

    def peak_lr(self) -> float:
        """`lr` × global batch / `lr_batch_size` (DINO's linear scaling rule)."""
        world = self.trainer.world_size if self._trainer is not None else 1
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        batch = int(getattr(getattr(dm, "hparams", {}), "batch_size", 0) or 0) or self.hparams.lr_batch_size
        return self.hparams.lr * batch * world / self.hparams.lr_batch_size

    def lr_factor(self, step: int) -> float:
        """Multiplier of the peak lr at `step`: linear warm-up, then cosine to min_lr."""
        h, total = self.hparams, self.total_steps()
        if step < h.warmup_steps:
            return (step + 1) / h.warmup_steps
        peak = self.peak_lr()
        floor = min(h.min_lr / peak, 1.0) if peak > 0 else 0.0
        t = (step - h.warmup_steps) / max(1, total - h.warmup_steps)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in [*self.student_backbone.named_parameters(prefix="student_backbone"),
                        *self.student_head.named_parameters(prefix="student_head")]:
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "reg_token")) else decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": self.hparams.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=self.peak_lr())
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self.lr_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
