"""Whole-volume prediction by slice segmentation: every slice z is predicted from the block of D slices
centred on it (edge slices repeated), tiled in-plane with MONAI's sliding-window inference; the
probability volume is the stack of those slice predictions.

Memory: slices are processed in chunks of `z_chunk`, so only `z_chunk × D` input slices are held at once;
the output can be any array-like (e.g. a memory-mapped TIFF) written chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.inferers import sliding_window_inference


def slice_blocks(volume: torch.Tensor, z0: int, z1: int, depth: int) -> torch.Tensor:
    """(Z, Y, X) → (z1 - z0, D, Y, X): for each z in [z0, z1) the D slices centred on z, edges repeated."""
    zs = torch.arange(z0, z1, device=volume.device)[:, None] + torch.arange(depth, device=volume.device) - depth // 2
    return volume[zs.clamp_(0, volume.shape[0] - 1)]


@torch.no_grad()
def predict_volume(model: Callable[[torch.Tensor], torch.Tensor], volume: torch.Tensor | np.ndarray, *,
                   block_depth: int, roi_size: int | tuple[int, int], overlap: float = 0.25,
                   sw_batch_size: int = 16, z_chunk: int = 8, blend: str = "gaussian",
                   out: np.ndarray | None = None, progress: bool = False,
                   device: torch.device | str | None = None) -> np.ndarray:
    """Probability volume (Z, Y, X) float32 of a normalised (Z, Y, X) stack.

    `model` maps blocks (B, 1, D, H, W) to centre-slice logits (B, 1, H, W). In-plane windows of
    `roi_size` overlap by `overlap` and are blended with `blend` weights (MONAI); stacks smaller than a
    window are padded. Output goes into `out` when given (any writable (Z, Y, X) array).
    """
    vol = torch.as_tensor(np.asarray(volume, dtype=np.float32) if isinstance(volume, np.ndarray) else volume)
    vol = vol.squeeze()
    while vol.ndim < 3:
        vol = vol[None]
    if vol.ndim != 3:
        raise ValueError(f"predict_volume expects a (Z, Y, X) volume, got shape {tuple(volume.shape)}")
    if device is not None:
        vol = vol.to(device)
    roi = (roi_size, roi_size) if isinstance(roi_size, int) else tuple(roi_size)
    n_z = vol.shape[0]
    result = out if out is not None else np.empty(vol.shape, dtype=np.float32)

    def predictor(x: torch.Tensor) -> torch.Tensor:  # (b, D, H, W) → (b, 1, H, W)
        return model(x.unsqueeze(1))

    chunks = range(0, n_z, z_chunk)
    if progress:
        from tqdm.auto import tqdm
        chunks = tqdm(chunks, desc="predict", unit="chunk")
    for z0 in chunks:
        z1 = min(z0 + z_chunk, n_z)
        blocks = slice_blocks(vol, z0, z1, block_depth)
        logits = sliding_window_inference(blocks, roi, sw_batch_size, predictor, overlap=overlap, mode=blend,
                                          padding_mode="constant", cval=0.0)
        result[z0:z1] = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
    return result
