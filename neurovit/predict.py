"""`neurovit predict --ckpt C --input STACK|DIR --out DIR`: probability/mask volumes and a traced SWC per stack.

Inputs are any format of the volume layer (TIFF/OME-TIFF, Vaa3D .v3draw, OME-Zarr), read lazily and
normalised chunk by chunk with the model's own normaliser; stacks at another voxel size than the model's
are resampled to it and back. The probability volume is written into a memory-mapped TIFF (or chunked
OME-Zarr), so memory grows with the block chunk, not with the stack. Outputs are named after the input's
full stem and written under temporary names, renamed when complete.
"""

from __future__ import annotations

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


NOT_A_CHECKPOINT = "is not a neurovit checkpoint"
CHECKPOINT_HINT = "pass RUN/checkpoints/last.ckpt or best-*.ckpt written by `neurovit fit`"


def check_checkpoint(ckpt: str | Path) -> Path:
    """`ckpt` if it is a Lightning checkpoint written by `neurovit fit`; else NeurovitError saying what it is."""
    ckpt = _existing_checkpoint(ckpt)
    try:
        data = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:  # truncated zip, text file, pickle garbage: torch raises many types
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise NeurovitError(f"{ckpt} {NOT_A_CHECKPOINT} (torch cannot read it: {type(exc).__name__}: "
                            f"{first[:120]}; a truncated or partial copy?); {CHECKPOINT_HINT}") from None
    if not isinstance(data, dict) or "state_dict" not in data or "pytorch-lightning_version" not in data:
        what = (f"a plain dict with keys {sorted(data)[:5]}" if isinstance(data, dict)
                else f"a {type(data).__name__}")
        raise NeurovitError(f"{ckpt} {NOT_A_CHECKPOINT} ({what}, e.g. a torch.save'd state dict, not a Lightning "
                            f"checkpoint); {CHECKPOINT_HINT}")
    if "net" not in data.get("hyper_parameters", {}):
        raise NeurovitError(f"{ckpt} {NOT_A_CHECKPOINT} (a Lightning checkpoint that does not record its network "
                            "configuration); load it in Python with SegmentationModule.load_from_checkpoint(path, "
                            "net=...)")
    return ckpt


def load_model(ckpt: str | Path, device: str | torch.device = "cpu"):
    """The SegmentationModule of a checkpoint written by `neurovit fit`, in eval mode on `device`."""
    from neurovit.lit.module import SegmentationModule

    ckpt = check_checkpoint(ckpt)
    try:
        module = SegmentationModule.load_from_checkpoint(ckpt, map_location=device, weights_only=False)
    except TypeError as exc:
        if "net" in str(exc):
            raise NeurovitError(f"{ckpt}: the checkpoint does not record its network configuration (it was not "
                                "written by `neurovit fit`); load it in Python with "
                                "SegmentationModule.load_from_checkpoint(path, net=...)") from None
        raise
    return module.eval().to(device)


def segment(model, stack, voxel_size=None, *, progress: bool = False, **overrides):
    """Probabilities (Z, Y, X) float32 of a raw stack (array, tensor, lazy array or a path of any supported
    format), preprocessed as the model was trained: its own normaliser, and resampled to its training voxel
    size and back when `voxel_size` (z, y, x µm; read from the file for a path) differs by more than 10 %.
    `model` is a SegmentationModule or a checkpoint path."""
    from neurovit.data.volumes import open_volume

    if isinstance(model, (str, Path)):
        model = load_model(model)
    if isinstance(stack, (str, Path)):
        volume = open_volume(stack, voxel_size=voxel_size)
        stack, voxel_size = volume.array, volume.voxel_size
    prob = model.predict_probabilities(stack, voxel_size, progress=progress, **overrides)
    return prob.numpy() if isinstance(prob, torch.Tensor) else prob


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def list_inputs(path: str | Path) -> list[Path]:
    """One image volume, or every volume in a folder (sorted); a clear error when there is none and when
    two inputs would write the same output names."""
    from neurovit.data.volumes import (
        find_format,
        is_volume_path,
        list_volumes,
        supported_suffixes,
        volume_stem,
    )

    path = Path(path)
    if path.is_dir() and not is_volume_path(path):
        files = list_volumes(path)
        if not files:
            raise NeurovitError(f"{path} contains no image volumes ({supported_suffixes()})")
    elif path.exists():
        find_format(path)
        files = [path]
    else:
        raise NeurovitError(f"input {path} does not exist")
    seen: dict[str, Path] = {}
    for f in files:
        other = seen.setdefault(volume_stem(f), f)
        if other != f:
            raise NeurovitError(f"{other.name} and {f.name} would both write {volume_stem(f)}_prob.*: rename one "
                                "or predict them into different --out folders")
    return files


OUTPUT_FORMATS = {"tif": ".tif", "ome-zarr": ".ome.zarr"}


def output_paths(name: str, out_dir: Path, out_format: str = "tif") -> dict[str, Path]:
    """Where `predict_stack` writes the outputs of the input named `name` (its full stem)."""
    ext = OUTPUT_FORMATS[out_format]
    return {"prob": out_dir / f"{name}_prob{ext}", "mask": out_dir / f"{name}_mask{ext}",
            "swc": out_dir / f"{name}.swc"}


def predict_stack(module, image_path: Path, out_dir: Path, *, threshold: float = 0.5, save: str = "prob",
                  trace: bool = True, voxel_size=None, progress: bool = True, overlap: float | None = None,
                  sw_batch_size: int | None = None, z_chunk: int | None = None, z_stride: int | None = None,
                  bf16: bool = False, net=None, out_format: str = "tif") -> dict:
    """Predict one stack; writes NAME_prob.* and/or NAME_mask.* and NAME.swc (µm); returns what it wrote.

    NAME is the input's full stem (`cell.day1.ome.tif` → `cell.day1`). The stack is normalised and
    resampled as the model was trained (see `SegmentationModule.predict_probabilities`); outputs are on
    the input's grid with its voxel size (or the model's, when the input records none: "assumed").
    `net` replaces `module.net` for the forward passes (e.g. a `torch.compile`d copy shared by many stacks).
    """
    import warnings

    from neurovit.data.volumes import create_output, open_volume

    volume = open_volume(image_path, voxel_size=voxel_size)
    name = volume.name
    out_dir = prepare_out_dir(out_dir)
    paths = output_paths(name, out_dir, out_format)
    check_free_space(volume, out_dir, module, save)
    t0 = time.perf_counter()
    model_vs = module.preprocessing.voxel_size if module.preprocessing is not None else None
    out_vs = volume.voxel_size or model_vs or (1.0, 1.0, 1.0)
    prob_out = create_output(paths["prob"], volume.shape, np.float32, voxel_size=out_vs)
    with prob_out, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        prob = module.predict_probabilities(
            volume.array, volume.voxel_size, progress=progress, out=prob_out.array, workdir=str(out_dir), net=net,
            overlap=overlap, sw_batch_size=sw_batch_size, z_chunk=z_chunk, z_stride=z_stride,
            autocast=torch.bfloat16 if bf16 else None)
        info = dict(module.last_predict_info)
        seconds = time.perf_counter() - t0
        vs_note = (f"voxel_size_zyx_um: {list(out_vs)} ({info.get('voxel_size_from', 'file')}); model trained at "
                   f"{list(model_vs) if model_vs else 'unknown'}"
                   + (f", resampled to {list(info['resampled_to'])} for prediction" if info.get("resampled_to") else ""))
        written = {"name": name, "shape": list(volume.shape), "seconds": round(seconds, 3),
                   "voxel_size": list(out_vs), "voxel_size_from": info.get("voxel_size_from", "file"),
                   "resampled_to": info.get("resampled_to"), "warnings": [str(w.message) for w in caught]}
        if save in ("mask", "both"):
            with create_output(paths["mask"], volume.shape, np.uint8, voxel_size=out_vs, labels=True) as mask_out:
                for z0 in range(0, volume.shape[0], 16):
                    mask_out.array[z0:z0 + 16] = np.asarray(prob[z0:z0 + 16]) > threshold
                mask_out.commit()
            written["mask"] = str(paths["mask"])
        if trace:
            from neurovit.trace import trace_to_swc

            trace_to_swc(np.asarray(prob), paths["swc"], threshold=threshold, voxel_size=out_vs, units="um",
                         source=str(image_path), notes=[vs_note, f"model: {getattr(module, 'ckpt_path', '')}"])
            written["swc"] = str(paths["swc"])
        del prob
        if save in ("prob", "both"):
            prob_out.commit()
            written["prob"] = str(paths["prob"])
        else:
            prob_out.abort()
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return written


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create the output folder and check that it can be written to (one-line errors otherwise)."""
    import tempfile

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NeurovitError(f"--out {out_dir} is an existing file; give a folder for the outputs")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".neurovit-write-test-"):
            pass
    except OSError as exc:
        raise NeurovitError(f"cannot write to --out {out_dir} ({exc.strerror or exc}); choose a writable folder") from None
    return out_dir


def check_free_space(volume, out_dir: Path, module, save: str) -> int:
    """Refuse early when the outputs of `volume` cannot fit on `out_dir`'s disk; returns the bytes needed.

    Needed: the float32 probabilities (always written, renamed or removed at the end), the uint8 mask,
    and two float32 scratch volumes on the model's grid when the stack is resampled."""
    import math
    import shutil

    from neurovit.data.resample import resampled_shape
    from neurovit.data.volumes import spacing_differs

    n = math.prod(volume.shape)
    need = 4 * n + (n if save in ("mask", "both") else 0)
    model_vs = module.preprocessing.voxel_size if module.preprocessing is not None else None
    if volume.voxel_size and model_vs and spacing_differs(volume.voxel_size, model_vs):
        need += 2 * 4 * math.prod(resampled_shape(volume.shape, volume.voxel_size, model_vs))
    free = shutil.disk_usage(out_dir).free
    if need > free:
        raise NeurovitError(f"{volume.path.name}: its outputs need {need / 1e9:.2f} GB but {out_dir} has "
                            f"{free / 1e9:.2f} GB free; free space or choose another --out")
    return need


def run_predict(ckpt, inputs, out_dir, *, device: str = "auto", compile: bool = False, out_format: str = "tif",
                devices="auto", num_nodes: int = 1, task_shape=(64, 1024, 1024),
                **kwargs) -> tuple[list[dict], list[str]]:
    """Predict every input stack with the checkpoint's model; returns (one record per stack written,
    "NAME: why" for every stack that failed). A bad stack is reported and skipped, the others are
    predicted; the caller turns failures into a non-zero exit code.

    compile: run the network through `torch.compile`, compiled once for all stacks (the first pays the
    compilation, about a minute on a CPU; worth it for large or many stacks).
    """
    import sys

    check_checkpoint(ckpt)  # before listing inputs: a wrong checkpoint is the likelier mistake
    files = list_inputs(inputs)
    out_dir = prepare_out_dir(out_dir)
    if out_format == "ome-zarr":
        try:
            return _run_chunked(ckpt, files, out_dir, device=device, devices=devices, num_nodes=num_nodes,
                                task_shape=task_shape, **kwargs)
        except OSError as exc:  # a full disk or a lost mount mid-run: finished tasks stay marked for a re-run
            raise NeurovitError(f"{_one_line(exc)}; finished tasks are kept: run the same command again to "
                                "resume") from None
    module = load_model(ckpt, resolve_device(device))
    module.ckpt_path = str(ckpt)
    net = torch.compile(module.net) if compile else None
    results, failures = [], []
    for f in files:
        try:
            results.append(predict_stack(module, f, out_dir, net=net, **kwargs))
        except (NeurovitError, OSError) as exc:
            msg = _one_line(exc)
            failures.append(f"{f.name}: {msg}")
            print(f"{f.name}: FAILED: {msg}", file=sys.stderr, flush=True)
            continue
        r = results[-1]
        vs = f"voxel size {tuple(r['voxel_size'])} µm ({r['voxel_size_from']})"
        if r.get("resampled_to"):
            vs += f", predicted at the model's spacing on {tuple(r['resampled_to'])}"
        print(f"{f.name}: {tuple(r['shape'])}, {vs}, {r['seconds']:.1f} s → "
              + ", ".join(str(r[k]) for k in ("prob", "mask", "swc") if k in r), flush=True)
    if len(files) > 1 or failures:
        print(f"predicted {len(results)} of {len(files)} stack(s) into {out_dir}"
              + (f"; {len(failures)} failed:\n  " + "\n  ".join(failures) if failures else ""), flush=True)
    return results, failures


def _run_chunked(ckpt, files, out_dir: Path, *, device: str, devices, num_nodes: int, task_shape, threshold=0.5,
                 save="prob", trace=True, voxel_size=None, progress=True, overlap=None, sw_batch_size=None,
                 z_chunk=None, z_stride=None, bf16=False) -> tuple[list[dict], list[str]]:
    """OME-Zarr outputs: chunked, resumable prediction with `Trainer.predict` on any devices/nodes
    (`neurovit.lit.prediction`); both the probabilities and the mask are written."""
    from neurovit.lit.prediction import local_rank, predict_chunked

    module = load_model(ckpt, "cpu")  # Lightning moves it to each rank's device
    chunks = tuple(min(c, t) for c, t in zip((32, 256, 256), task_shape, strict=True))
    accelerator = {"auto": "auto", "cpu": "cpu"}.get(device, "gpu" if device.startswith("cuda") else device)
    records = predict_chunked(module, files, out_dir, threshold=threshold, task_shape=task_shape, chunks=chunks,
                              devices=devices,
                              num_nodes=num_nodes, accelerator=accelerator, overlap=overlap,
                              sw_batch_size=sw_batch_size, z_chunk=z_chunk, z_stride=z_stride, bf16=bf16,
                              voxel_size=voxel_size, progress=progress, ckpt=str(ckpt))
    failures = []
    if local_rank() == 0:
        for r in records:
            if not r.get("committed"):
                failures.append(f"{r['name']}: not every task finished; run the same command again to resume")
                continue
            if trace:
                r["swc"] = str(_trace_store(r, out_dir, threshold, str(ckpt)))
            print(f"{r['name']}: {tuple(r['shape'])}, voxel size {tuple(r['voxel_size'])} µm "
                  f"({r['voxel_size_from']}), {r['tasks']} tasks ({r['skipped_tasks']} done before) → "
                  + ", ".join(str(r[k]) for k in ("prob", "mask", "swc") if k in r), flush=True)
    return records, failures


def _trace_store(record: dict, out_dir: Path, threshold: float, ckpt: str) -> Path:
    """Trace the mask store of a chunked prediction into NAME.swc (µm), chunk by chunk with overlap and
    stitching (`neurovit.trace_chunked`), so memory depends on the chunk, not on the stack."""
    from neurovit.data.volumes import open_volume
    from neurovit.trace import trace_to_swc
    from neurovit.trace_chunked import trace_chunked

    mask = open_volume(record["mask"]).array
    vs = tuple(record["voxel_size"])
    path = out_dir / f"{record['name']}.swc"
    note = [f"voxel_size_zyx_um: {list(vs)} ({record['voxel_size_from']})", f"model: {ckpt}"]
    trace_to_swc(mask, path, threshold=0.5, voxel_size=vs, units="um", source=record["prob"], notes=note,
                 tracer=trace_chunked)
    return path


def _one_line(exc: BaseException) -> str:
    """A user-facing one-line description of an input/OS error (ENOSPC gets its own words)."""
    import errno

    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"the disk is full ({exc.filename or 'output'}); free space or choose another --out"
    if isinstance(exc, OSError) and not isinstance(exc, NeurovitError):
        return f"{exc.strerror or exc} ({exc.filename})" if exc.filename else str(exc)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
