"""A small 2D ViT checkpoint to stand in for DINO weights when none are available (offline demos, tests).

The weights are made deterministically from a seed: a random timm init, optionally followed by a brief
masked-image-modelling pre-training (SimMIM-like: half of the 16 × 16 patches of natural-image crops are
zeroed and a linear head regresses their pixels) on the photographs bundled with scikit-image. This is
a stand-in for a real self-supervised source, good enough to exercise the 2D → 3D transfer rows of an
ablation on CPU; it is not a substitute for the paper's DINO weights.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

# RGB photographs shipped inside scikit-image (no download)
NATURAL_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
                  "camera", "coins", "moon", "grass", "gravel", "brick")


def natural_images() -> list[np.ndarray]:
    """The scikit-image sample photographs as float32 (H, W, 3) arrays in [0, 1]."""
    import skimage.data

    out = []
    for name in NATURAL_IMAGES:
        img = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0
        out.append(np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img[..., :3])
    return out


def random_crops(images: list[np.ndarray], n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """n random size × size crops (random scale 1–2×, flips), each standardised: (x − μ) / σ per crop."""
    import torch.nn.functional as F

    crops = []
    for _ in range(n):
        img = images[rng.integers(len(images))]
        side = min(int(size * rng.uniform(1.0, 2.0)), *img.shape[:2])
        y, x = rng.integers(img.shape[0] - side + 1), rng.integers(img.shape[1] - side + 1)
        c = torch.from_numpy(np.ascontiguousarray(img[y:y + side, x:x + side].transpose(2, 0, 1)))
        c = F.interpolate(c[None], size=(size, size), mode="bilinear", align_corners=False)[0]
        if rng.random() < 0.5:
            c = c.flip(-1)
        crops.append((c - c.mean()) / c.std().clamp_min(1e-3))
    return torch.stack(crops)


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) → (B, N, p·p·C) patches in row-major token order."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def pretrain_mim(vit, steps: int, *, batch_size: int = 16, mask_ratio: float = 0.5, lr: float = 1e-3,
                 seed: int = 0, log_every: int = 0) -> list[float]:
    """Masked-image modelling: loss = mean over masked patches of ‖head(token) − pixels‖² / (p²·3)."""
    p = vit.patch_embed.patch_size[0]
    size = vit.patch_embed.img_size[0]
    n_tok = (size // p) ** 2
    head = torch.nn.Linear(vit.embed_dim, p * p * 3)
    params = list(vit.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    rng = np.random.default_rng([seed, 1])
    images = natural_images()
    losses = []
    vit.train()
    for step in range(steps):
        x = random_crops(images, batch_size, size, rng)
        mask = torch.from_numpy(rng.random((batch_size, n_tok)) < mask_ratio)
        pix = mask.reshape(batch_size, 1, size // p, size // p).float()
        pix = pix.repeat_interleave(p, 2).repeat_interleave(p, 3)
        tokens = vit.forward_features(x * (1 - pix))[:, vit.num_prefix_tokens:]
        err = (head(tokens) - patchify(x, p)).pow(2).mean(-1)
        loss = (err * mask).sum() / mask.sum().clamp_min(1)
        opt.zero_grad()
        loss.backward()
        for g in opt.param_groups:  # linear warm-up over the first 10 % of the steps
            g["lr"] = lr * min(1.0, (step + 1) / max(1, steps // 10))
        opt.step()
        losses.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            print(f"  MIM step {step + 1}/{steps}: loss {np.mean(losses[-log_every:]):.4f}", flush=True)
    vit.eval()
    return losses


def make_source_2d(path: str | Path, arch: str = "neurovit_tiny_patch16", *, seed: int = 0, img_size: int = 112,
                   pretrain_steps: int = 0, batch_size: int = 16, verbose: bool = True) -> Path:
    """Write a 2D ViT state dict to `path` once (random init from `seed`, then `pretrain_steps` MIM steps).

    An existing file is reused as is. Written atomically, so an interrupted run leaves no partial file.
    """
    from neurovit.models import build_vit2d

    path = Path(path)
    if path.is_file():
        return path
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    vit = build_vit2d(arch, img_size=img_size)
    if pretrain_steps > 0:
        if verbose:
            print(f"2D source: {pretrain_steps} masked-image-modelling steps of {arch} on scikit-image "
                  "photographs", flush=True)
        pretrain_mim(vit, pretrain_steps, batch_size=batch_size, seed=seed,
                     log_every=max(1, pretrain_steps // 4) if verbose else 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(vit.state_dict(), tmp)
    tmp.replace(path)
    if verbose:
        what = f"{pretrain_steps} MIM steps" if pretrain_steps else "random init"
        print(f"2D source: {path} ({arch}, seed {seed}, {what}, {time.perf_counter() - t0:.0f} s)", flush=True)
    return path
