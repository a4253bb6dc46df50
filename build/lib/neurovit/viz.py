"""Figures people look at: maximum-intensity projections of images, masks and predictions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def mip(volume: np.ndarray, axis: int = 0) -> np.ndarray:
    """Maximum-intensity projection of a (Z, Y, X) volume along `axis` (0 = along z)."""
    return np.asarray(volume).max(axis=axis)


def robust_normalise(image: np.ndarray, lo: float = 1.0, hi: float = 99.8) -> np.ndarray:
    """Scale to [0, 1] between the lo/hi percentiles, clipped (previews; the Frangi baseline's input)."""
    from neurovit.data.normalise import Normaliser

    return Normaliser((lo, hi), clip=(0.0, 1.0), sample_voxels=np.asarray(image).size)(image)


def save_preview(items: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path, dpi: int = 110) -> Path:
    """PNG with one row per (name, image, mask): image MIP, mask MIP, and overlay side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    rows = max(1, len(items))
    fig = Figure(figsize=(9, 3 * rows))  # no pyplot: the caller's backend (e.g. a notebook's) is untouched
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 3, squeeze=False)
    for r, (name, image, mask) in enumerate(items):
        img = robust_normalise(mip(image))
        msk = mip(mask) > 0
        overlay = np.stack([img, img, img], axis=-1)
        overlay[msk] = 0.45 * overlay[msk] + 0.55 * np.array([1.0, 0.2, 0.2])
        for ax, data, title in zip(axes[r], (img, msk, overlay), ("image (MIP)", "mask (MIP)", "overlay")):
            ax.imshow(data, cmap="gray" if data.ndim == 2 else None, interpolation="nearest")
            ax.set_title(f"{name}: {title}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def overlay_panel(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """RGB uint8 panel of z-MIPs side by side: image | truth (green) | prediction (magenta) over the image."""
    img = robust_normalise(mip(image))
    grey = np.stack([img, img, img], axis=-1)

    def tint(mask, colour):
        out = grey.copy()
        m = mip(mask) > 0
        out[m] = 0.35 * out[m] + 0.65 * np.asarray(colour)
        return out

    panel = np.concatenate([grey, tint(truth, (0.1, 1.0, 0.1)), tint(pred, (1.0, 0.1, 1.0))], axis=1)
    return (np.clip(panel, 0, 1) * 255).astype(np.uint8)
