"""Whole-volume prediction by slice segmentation: every slice z is predicted from the block of D slices
centred on it (edge slices repeated), tiled in-plane with MONAI's sliding-window inference; the
probability volume is the stack of those slice predictions.

Memory: the input is read and normalised `z_chunk` slices at a time (plus D − 1 neighbours), so a
memory-mapped stack is never copied whole; the output can be any writable array (e.g. a memory-mapped
TIFF) filled chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.inferers import sliding_window_inference


def slice_blocks(volume: torch.Tensor, z0: int, z1: int, depth: int, offset: int = 0,
                 n_z: int | None = None) -> torch.Tensor:
    """(Z', Y, X) slab → (z1 - z0, D, Y, X): for each z in [z0, z1) the D slices centred on z.

    Slice indices are clamped to [0, n_z) (edge slices repeated); the slab holds slices from `offset` on.
    """
    n_z = volume.shape[0] + offset if n_z is None else n_z
    zs = torch.arange(z0, z1)[:, None] + torch.arange(depth) - depth // 2
    return volume[zs.clamp_(0, n_z - 1) - offset]


def segment_volume(net, volume, *, preprocessing, voxel_size=None, block_depth: int, roi_size,
                   out: np.ndarray | None = None, workdir: str | None = None, progress: bool = False,
                   **predict_kwargs) -> tuple[np.ndarray, dict]:
    """Raw (Z, Y, X) stack → probabilities on the same grid, preprocessed as the model was trained.

    The stack is normalised with `preprocessing.normaliser` fitted to it (the model's normaliser). When
    its voxel size (`voxel_size`, z, y, x µm) differs from the model's (`preprocessing.voxel_size`) by more
    than 10 % on any axis, it is resampled to the model's spacing slab by slab, predicted there, and the
    probabilities are resampled back, so the output always has the input's shape. An unknown input voxel
    size is taken to be the model's (a warning says so; `info["voxel_size_from"] == "assumed"`).
    Intermediate resampled stacks live in memory-mapped files under `workdir` when given.
    Returns (probabilities, info).
    """
    import tempfile
    import warnings

    from neurovit.data.resample import resample, resampled_shape
    from neurovit.data.volumes import spacing_differs

    if len(volume.shape) != 3:
        raise ValueError(f"segment_volume expects one (Z, Y, X) stack, got shape {tuple(volume.shape)}: "
                         "predict each channel or time point as its own stack")
    model_vs = preprocessing.voxel_size
    info = {"voxel_size": None if voxel_size is None else tuple(voxel_size), "voxel_size_from": "file",
            "model_voxel_size": model_vs, "resampled_to": None}
    if voxel_size is None:
        info["voxel_size"] = model_vs
        info["voxel_size_from"] = "assumed"
        warnings.warn(f"the stack records no voxel size; assuming the model's {model_vs} µm (z, y, x): pass "
                      "the real one (--voxel-size Z Y X) if it differs", UserWarning, stacklevel=2)
    elif model_vs is None:
        warnings.warn("the checkpoint records no training voxel size (written by an older neurovit); the stack "
                      "is predicted on its own grid without resampling", UserWarning, stacklevel=2)
    from neurovit.data.normalise import NONFINITE_RULE, count_nonfinite

    bad = count_nonfinite(volume)
    info["nonfinite_voxels"] = bad
    if bad:
        warnings.warn(f"{bad} voxel(s) of the stack are NaN or infinite: {NONFINITE_RULE}", UserWarning,
                      stacklevel=2)
    roi = (roi_size, roi_size) if isinstance(roi_size, int) else tuple(roi_size)
    small = [f"{n} {axis} < {need}" for n, axis, need in zip(volume.shape, ("slices", "rows", "columns"),
                                                                (block_depth, *roi), strict=True) if n < need]
    if small:
        warnings.warn(f"the stack {tuple(volume.shape)} is smaller than one model block ({block_depth} x {roi[0]} x "
                      f"{roi[1]}): {', '.join(small)}; it is padded (edge slices repeated, background in-plane), "
                      "and predictions near the padding are less reliable", UserWarning, stacklevel=2)
    norm = preprocessing.normaliser.fit(volume)
    kwargs = dict(block_depth=block_depth, roi_size=roi_size, progress=progress, **predict_kwargs)
    in_vs = info["voxel_size"]
    if in_vs is None or model_vs is None or not spacing_differs(in_vs, model_vs):
        return predict_volume(net, volume, normalise=norm, out=out, **kwargs), info
    shape = tuple(int(s) for s in volume.shape)
    grid = resampled_shape(shape, in_vs, model_vs)
    info["resampled_to"] = grid
    with tempfile.TemporaryDirectory(dir=workdir, prefix=".neurovit-resample-") as tmp:
        def scratch(name, shp):
            if workdir is None:
                return np.empty(shp, dtype=np.float32)
            from neurovit.data.volumes import reserve_file

            array = np.lib.format.open_memmap(f"{tmp}/{name}.npy", mode="w+", dtype=np.float32, shape=shp)
            reserve_file(f"{tmp}/{name}.npy")  # a full disk: ENOSPC now, not SIGBUS later
            return array

        image = resample(volume, in_vs, model_vs, grid, scratch("image", grid), progress=progress, desc="resample in")
        prob = predict_volume(net, image, normalise=norm, out=scratch("prob", grid), **kwargs)
        del image
        result = out if out is not None else np.empty(shape, dtype=np.float32)
        resample(prob, model_vs, in_vs, shape, result, progress=progress, desc="resample out")
        del prob
    return result, info


@torch.no_grad()
def predict_volume(model: Callable[[torch.Tensor], torch.Tensor], volume: torch.Tensor | np.ndarray, *,
                   block_depth: int, roi_size: int | tuple[int, int], overlap: float = 0.25,
                   sw_batch_size: int = 32, z_chunk: int = 8, blend: str = "gaussian",
                   normalise: Callable[[np.ndarray], np.ndarray] | None = None,
                   out: np.ndarray | None = None, progress: bool = False,
                   device: torch.device | str | None = None, autocast: torch.dtype | None = None,
                   z_stride: int | None = None) -> np.ndarray:
    """Probability volume (Z, Y, X) float32 of a (Z, Y, X) stack.

    `model` maps blocks (B, 1, D, H, W) to centre-slice logits (B, 1, H, W). In-plane windows of
    `roi_size` overlap by `overlap` and are blended with `blend` weights (MONAI); stacks smaller than a
    window are padded, stacks thinner than D repeat their edge slices. `normalise` (applied per chunk)
    maps raw intensities to the model's input range; without it the input is used as it is. `autocast`
    (e.g. torch.bfloat16 on GPUs) runs the model under mixed precision.

    Models with `out_slices == "all"` predict every slice of a block: blocks are then centred every
    `z_stride` slices (default D // 2 + 1), and each slice is the weighted mean of the predictions that
    cover it, with weights 1 + min(d, D − 1 − d) at block position d (the centre counts most) — about
    D / z_stride times fewer forward passes than one block per slice.
    """
    if volume.ndim != 3:
        shape = tuple(volume.shape)
        squeezed = volume.squeeze() if isinstance(volume, torch.Tensor) else np.squeeze(volume)
        if squeezed.ndim != 3:
            raise ValueError(f"predict_volume expects a (Z, Y, X) volume, got shape {shape}")
        volume = squeezed
    roi = (roi_size, roi_size) if isinstance(roi_size, int) else tuple(roi_size)
    n_z, half = int(volume.shape[0]), block_depth // 2
    result = out if out is not None else np.empty(tuple(volume.shape), dtype=np.float32)
    if device is None:
        device = next((p.device for p in getattr(model, "parameters", lambda: [])()), torch.device("cpu"))

    device = torch.device(device)

    def predictor(x: torch.Tensor) -> torch.Tensor:  # (b, D, H, W) → (b, 1, H, W)
        with torch.autocast(device_type=device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            return model(x.unsqueeze(1)).float()

    if getattr(model, "out_slices", "center") == "all":
        return _predict_all_slices(predictor, volume, result, block_depth=block_depth, roi=roi, overlap=overlap,
                                   sw_batch_size=sw_batch_size, z_chunk=z_chunk, blend=blend, z_stride=z_stride,
                                   normalise=normalise, device=device, progress=progress)
    for z0 in _maybe_progress(range(0, n_z, z_chunk), progress):
        z1 = min(z0 + z_chunk, n_z)
        lo, hi = max(z0 - half, 0), min(z1 + half, n_z)
        slab = _slab(volume, lo, hi, normalise)
        blocks = slice_blocks(slab.to(device), z0, z1, block_depth, offset=lo, n_z=n_z)
        logits = sliding_window_inference(blocks, roi, sw_batch_size, predictor, overlap=overlap, mode=blend,
                                          padding_mode="constant", cval=0.0)
        result[z0:z1] = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
    return result


def _slab(volume, lo: int, hi: int, normalise) -> torch.Tensor:
    """Slices [lo, hi) of a tensor or (memory-mapped) array as float32, normalised when asked."""
    slab = volume[lo:hi]
    if isinstance(slab, torch.Tensor):
        slab = slab.detach().float()
        return torch.from_numpy(normalise(slab.cpu().numpy())) if normalise is not None else slab
    return torch.from_numpy(normalise(slab) if normalise is not None else np.asarray(slab, np.float32))


def _predict_all_slices(predictor, volume, result, *, block_depth: int, roi, overlap: float, sw_batch_size: int,
                        z_chunk: int, blend: str, z_stride: int | None, normalise, device, progress: bool):
    """All-slices models: blocks every `z_stride` slices, overlapping slice predictions averaged with weights.

    Weighted sums accumulate in `result` itself; a slice is divided by its weight sum as soon as no later
    block covers it, so memory holds one group of blocks, not a second volume-sized buffer.
    """
    n_z, half = int(volume.shape[0]), block_depth // 2
    stride = max(1, min(z_stride or half + 1, block_depth))
    centres = list(range(0, n_z, stride))
    if centres[-1] + half < n_z - 1:
        centres.append(n_z - 1)
    weights = [1.0 + min(d, block_depth - 1 - d) for d in range(block_depth)]
    wsum = np.zeros(n_z, dtype=np.float32)
    groups = [centres[i:i + z_chunk] for i in range(0, len(centres), z_chunk)]
    started = finished = 0  # slices [0, started) hold partial sums; [0, finished) are final
    for gi, group in enumerate(_maybe_progress(groups, progress)):
        lo, hi = max(group[0] - half, 0), min(group[-1] + half + 1, n_z)
        slab = _slab(volume, lo, hi, normalise).to(device)
        zs = torch.tensor(group)[:, None] + torch.arange(block_depth) - half
        blocks = slab[zs.clamp(0, n_z - 1) - lo]
        logits = sliding_window_inference(blocks, roi, sw_batch_size, lambda x: predictor(x)[:, 0], overlap=overlap,
                                          mode=blend, padding_mode="constant", cval=0.0)
        prob = torch.sigmoid(logits.float()).cpu().numpy()  # (n, D, Y, X)
        for i, c in enumerate(group):
            for d in range(block_depth):
                z = c - half + d
                if not 0 <= z < n_z:
                    continue
                if z >= started:
                    result[z] = 0.0
                    started = z + 1
                result[z] += weights[d] * prob[i, d]
                wsum[z] += weights[d]
        final = groups[gi + 1][0] - half if gi + 1 < len(groups) else n_z
        for z in range(finished, min(final, started)):
            result[z] /= wsum[z]
        finished = max(finished, min(final, started))
    return result


def _maybe_progress(items, progress: bool, desc: str = "predict"):
    if not progress:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="chunk", leave=False)
