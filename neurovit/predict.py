"""`neurovit predict --ckpt C --input STACK.tif|DIR --out DIR`: probability/mask TIFFs and traced SWC per stack.

Stacks are read memory-mapped and normalised chunk by chunk (robust percentiles of the stack), and the
probability volume is written into a memory-mapped TIFF, so memory grows with the block chunk, not with
several copies of the stack. Outputs are written under temporary names and renamed when complete.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from neurovit.errors import NeurovitError


def _existing_checkpoint(ckpt: str | Path) -> Path:
    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise NeurovitError(f"checkpoint {ckpt} not found (runs write RUN/checkpoints/last.ckpt and best-*.ckpt)")
    return ckpt


def load_model(ckpt: str | Path, device: str | torch.device = "cpu"):
    """The SegmentationModule of a checkpoint written by `neurovit fit`, in eval mode on `device`."""
    from neurovit.lit.module import SegmentationModule

    ckpt = _existing_checkpoint(ckpt)
    try:
        module = SegmentationModule.load_from_checkpoint(ckpt, map_location=device, weights_only=False)
    except TypeError as exc:
        if "net" in str(exc):
            raise NeurovitError(f"{ckpt}: the checkpoint does not record its network configuration (it was not "
                                "written by `neurovit fit`); load it in Python with "
                                "SegmentationModule.load_from_checkpoint(path, net=...)") from None
        raise
    return module.eval().to(device)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def list_inputs(path: str | Path) -> list[Path]:
    """One TIFF, or every *.tif / *.tiff in a folder (sorted); a clear error when there is none."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
        if not files:
            raise NeurovitError(f"{path} contains no .tif/.tiff stacks")
        return files
    if not path.is_file():
        raise NeurovitError(f"input {path} does not exist")
    return [path]


def predict_stack(module, image_path: Path, out_dir: Path, *, threshold: float = 0.5, save: str = "prob",
                  trace: bool = True, voxel_size=None, progress: bool = True, overlap: float | None = None,
                  sw_batch_size: int | None = None, z_chunk: int | None = None, z_stride: int | None = None,
                  bf16: bool = False, net=None) -> dict:
    """Predict one stack; writes NAME_prob.tif and/or NAME_mask.tif and NAME.swc; returns what it wrote.

    `net` replaces `module.net` for the forward passes (e.g. a `torch.compile`d copy shared by many stacks).
    """
    import tifffile

    from neurovit.data.tiff import read_stack, read_voxel_size, write_stack
    from neurovit.inference import predict_volume, robust_normaliser

    image = read_stack(image_path)
    if image.size == 0:
        raise NeurovitError(f"{image_path}: empty stack")
    vs = tuple(voxel_size) if voxel_size is not None else (read_voxel_size(image_path) or (1.0, 1.0, 1.0))
    name = image_path.name.split(".")[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    prob_path = out_dir / f"{name}_prob.tif"
    tmp = out_dir / f".{name}_prob.tif.tmp"
    h = module.hparams
    t0 = time.perf_counter()
    prob = tifffile.memmap(tmp, shape=image.shape, dtype=np.float32, imagej=True,
                           resolution=(1.0 / vs[2], 1.0 / vs[1]), metadata={"axes": "ZYX", "spacing": vs[0], "unit": "um"})
    try:
        predict_volume(module.net if net is None else net, image, block_depth=module.block_depth, roi_size=module.roi_size,
                       overlap=h.sw_overlap if overlap is None else overlap,
                       sw_batch_size=h.sw_batch_size if sw_batch_size is None else sw_batch_size,
                       z_chunk=h.z_chunk if z_chunk is None else z_chunk, normalise=robust_normaliser(image),
                       z_stride=h.get("z_stride") if z_stride is None else z_stride,
                       out=prob, progress=progress, autocast=torch.bfloat16 if bf16 else None)
        prob.flush()
    except BaseException:
        del prob
        tmp.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - t0
    written = {"name": name, "shape": list(image.shape), "seconds": round(seconds, 3)}
    mask = np.asarray(prob) > threshold
    if save in ("mask", "both"):
        write_stack(out_dir / f"{name}_mask.tif", mask.astype(np.uint8), voxel_size=vs)
        written["mask"] = str(out_dir / f"{name}_mask.tif")
    if trace:
        from neurovit.trace import trace_to_swc

        swc = out_dir / f"{name}.swc"
        trace_to_swc(np.asarray(prob), swc, threshold=threshold, voxel_size=vs, source=str(image_path),
                     notes=[f"model: {getattr(module, 'ckpt_path', '')}"])
        written["swc"] = str(swc)
    del prob
    if save in ("prob", "both"):
        os.replace(tmp, prob_path)
        written["prob"] = str(prob_path)
    else:
        tmp.unlink(missing_ok=True)
    return written


def run_predict(ckpt, inputs, out_dir, *, device: str = "auto", compile: bool = False, **kwargs) -> list[dict]:
    """Predict every input stack with the checkpoint's model; returns one record per stack.

    compile: run the network through `torch.compile`, compiled once for all stacks (the first pays the
    compilation, about a minute on a CPU; worth it for large or many stacks).
    """
    _existing_checkpoint(ckpt)  # before listing inputs: a wrong checkpoint is the likelier mistake
    files = list_inputs(inputs)
    module = load_model(ckpt, resolve_device(device))
    module.ckpt_path = str(ckpt)
    net = torch.compile(module.net) if compile else None
    results = []
    for f in files:
        results.append(predict_stack(module, f, Path(out_dir), net=net, **kwargs))
        r = results[-1]
        print(f"{f.name}: {tuple(r['shape'])} in {r['seconds']:.1f} s → "
              + ", ".join(str(r[k]) for k in ("prob", "mask", "swc") if k in r), flush=True)
    return results
