"""Benchmark: decoders compared — the same training recipe per decoder, then val Dice, FLOPs and stack→mask speed.

For each decoder (default: every registered one) the demo recipe (experiments/base.yaml + demo.yaml: the tiny
model from scratch) is trained for the same number of optimizer steps with `neurovit fit`, each run in its own
folder OUT/DECODER; then its last checkpoint is
  1. validated: mean over the dataset's val volumes of the per-volume Dice (whole-volume sliding-window
     inference at the module's threshold, as in `neurovit fit`'s validation),
  2. counted: forward FLOPs per output voxel, decoder alone and whole model (model_stats' counter), and the
     ratio unetr ÷ decoder,
  3. timed: `neurovit.predict.load_model` + `predict_probabilities(stack, voxel_size)` + threshold on a
     Z × Y × X stack (default 64 × 512 × 512, random intensities; the median of --repeats runs after a warm-up).

    neurovit synth @experiments/synth_demo.args --out data/synth_demo
    python -m neurovit.benchmarks.decoders data/synth_demo --device cuda [--steps 300] [--out runs/decoders]
        [--decoders unetr light] [--bf16] [-- extra `neurovit fit` arguments, e.g. --data.batch_size 16]

The default --steps 300 is the demo recipe's length (6 epochs × 400 blocks ÷ batch 8). Validation during
training is switched off (--trainer.limit_val_batches 0): every decoder is scored once, after its last step.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from neurovit.benchmarks.common import synchronize
from neurovit.benchmarks.model_stats import count_flops, output_slices

REPO_EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def recipe_configs() -> list[str]:
    """The demo recipe: base.yaml + demo.yaml (packaged configs, or the source checkout's)."""
    try:
        from neurovit.configs import config_path

        return [str(config_path("base")), str(config_path("demo"))]
    except Exception:  # pragma: no cover - only without packaged configs
        return [str(REPO_EXPERIMENTS / "base.yaml"), str(REPO_EXPERIMENTS / "demo.yaml")]


def trainer_device_args(device: str) -> list[str]:
    """--trainer.accelerator / --trainer.devices for "cpu", "cuda", "cuda:K", "gpu", "mps" or "auto"."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = device.partition(":")
    accelerator = {"cuda": "gpu"}.get(kind, kind)
    devices = f"[{index}]" if index else "1"
    return ["--trainer.accelerator", accelerator, "--trainer.devices", devices]


def torch_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device("cuda" + device[3:] if device.startswith("gpu") else device)


def fit_command(data_dir: str, decoder: str, root: Path, steps: int, device: str, extra: list[str]) -> list[str]:
    """The `neurovit fit` argv of one run: the recipe, this decoder, `steps` optimizer steps, its own folder."""
    argv = ["fit"]
    for cfg in recipe_configs():
        argv += ["--config", cfg]
    return argv + [
        "--data.data_dir", str(data_dir),
        "--model.net.init_args.decoder", decoder,
        "--trainer.default_root_dir", str(root),
        "--trainer.max_steps", str(steps),
        "--trainer.max_epochs", "-1",
        "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false",
        *trainer_device_args(device),
        *extra,
    ]  # fmt: skip


def train(data_dir: str, decoder: str, root: Path, steps: int, device: str, extra: list[str]) -> Path:
    """Run `neurovit fit` in-process; returns the run's last checkpoint."""
    from neurovit.cli import main

    argv = fit_command(data_dir, decoder, root, steps, device, extra)
    print("$ neurovit " + " ".join(argv), flush=True)
    rc = main(argv)
    ckpt = root / "checkpoints" / "last.ckpt"
    if rc != 0 or not ckpt.is_file():
        raise SystemExit(f"training decoder {decoder!r} failed (exit {rc}; {ckpt} {'missing' if not ckpt.is_file() else 'found'})")
    return ckpt


def val_dice(module, data_dir: str) -> tuple[float, int]:
    """(mean per-volume Dice over the val volumes, number of volumes) of a trained SegmentationModule."""
    from neurovit.data.datamodule import NeuronDataModule
    from neurovit.lit.module import volume_scores

    dm = NeuronDataModule(str(data_dir), block_depth=module.block_depth, block_size=module.roi_size, num_workers=0)
    dm.setup("validate")
    scores = []
    with torch.no_grad():
        for batch in dm.val_dataloader():
            vs = batch.get("voxel_size")
            prob = module.predict_probabilities(batch["image"][0, 0], None if vs is None else [float(v) for v in vs[0]])
            pred = prob > module.hparams.threshold
            scores.append(volume_scores(pred, batch["label"][0, 0].cpu() > 0)["dice"])
    return float(np.mean(scores)) if scores else float("nan"), len(scores)


def flops_per_voxel(net) -> tuple[float, float]:
    """(decoder FLOPs, whole-model FLOPs) per output voxel of a SliceViT: one block on the meta device."""
    meta = copy.deepcopy(net).to("meta").eval()
    x = torch.zeros(1, meta.in_chans, meta.block_depth, meta.img_size, meta.img_size)
    enc, total = count_flops(meta, x)
    voxels = output_slices(meta) * meta.img_size**2
    return (total - enc) / voxels, total / voxels


def stack_throughput(module, shape: tuple[int, int, int], repeats: int, bf16: bool, sw_batch_size: int | None,
                     voxel_size=(1.0, 1.0, 1.0)) -> float:
    """Seconds (median of `repeats`) from a raw (Z, Y, X) uint16 stack to its binary mask."""
    rng = np.random.default_rng(0)
    stack = rng.integers(100, 400, size=shape, dtype=np.uint16)
    device = module.device
    overrides = {"autocast": torch.bfloat16 if bf16 else None, "sw_batch_size": sw_batch_size}

    def run(volume) -> None:
        prob = module.predict_probabilities(volume, voxel_size, **overrides)
        mask = prob > module.hparams.threshold
        assert mask.shape == volume.shape

    with torch.no_grad():
        run(stack[: min(shape[0], 2 * module.block_depth)])  # warm-up: kernels, allocator, cudnn choices
        times = []
        for _ in range(repeats):
            synchronize(device)
            t0 = time.perf_counter()
            run(stack)
            synchronize(device)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compare(data_dir: str, decoders: list[str], steps: int, device: str, out: Path, stack: tuple[int, int, int],
            repeats: int = 1, bf16: bool = False, sw_batch_size: int | None = None,
            extra: list[str] | None = None) -> list[dict]:
    """Train, score, count and time every decoder; returns one row per decoder (and prints the table)."""
    from neurovit.predict import load_model

    rows = []
    for dec in decoders:
        ckpt = train(data_dir, dec, out / dec, steps, device, list(extra or []))
        module = load_model(ckpt, torch_device(device))
        dice, n_val = val_dice(module, data_dir)
        dec_fpv, fpv = flops_per_voxel(module.net)
        seconds = stack_throughput(module, stack, repeats, bf16, sw_batch_size)
        rows.append({"decoder": dec, "steps": steps, "val_dice": dice, "val_volumes": n_val,
                     "dec_flops_per_voxel": dec_fpv, "flops_per_voxel": fpv, "stack_seconds": seconds,
                     "voxels_per_second": math.prod(stack) / seconds, "checkpoint": str(ckpt)})
        del module
    print_table(rows, stack, device, bf16)
    return rows


def print_table(rows: list[dict], stack: tuple[int, int, int], device: str, bf16: bool) -> None:
    ref = next((r for r in rows if r["decoder"] == "unetr"), rows[0])
    name = torch.cuda.get_device_name(torch_device(device)) if torch_device(device).type == "cuda" else "CPU"
    print(f"\ndecoders: {rows[0]['steps']} training steps each; val Dice = mean over {rows[0]['val_volumes']} val "
          f"volumes; stack→mask on a {'x'.join(map(str, stack))} stack, {name}{', bf16' if bf16 else ''}")
    header = (f"{'decoder':<10}{'val Dice':>9}{'dec kFLOP/vox':>15}{'kFLOP/vox':>11}{'FLOP ratio dec/all':>20}"
              f"{'stack→mask s':>14}{'Mvox/s':>9}{'speed-up':>10}")
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = f"{ref['dec_flops_per_voxel'] / r['dec_flops_per_voxel']:.1f}x / {ref['flops_per_voxel'] / r['flops_per_voxel']:.2f}x"
        print(f"{r['decoder']:<10}{r['val_dice']:>9.4f}{r['dec_flops_per_voxel'] / 1e3:>15.1f}"
              f"{r['flops_per_voxel'] / 1e3:>11.1f}{ratio:>20}{r['stack_seconds']:>14.2f}"
              f"{r['voxels_per_second'] / 1e6:>9.2f}{ref['stack_seconds'] / r['stack_seconds']:>9.2f}x")
    print(f"(FLOP ratio and speed-up: {ref['decoder']} ÷ decoder; FLOPs per output voxel of one block's forward pass)")


def main(argv: list[str] | None = None) -> None:
    from neurovit.models import DECODERS

    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", help="dataset folder (`neurovit synth` or `neurovit prepare` output)")
    ap.add_argument("--device", default="auto", help="cpu, cuda, cuda:K or auto (default)")
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps per decoder (default: the demo's 300)")
    ap.add_argument("--decoders", nargs="+", default=list(DECODERS), help=f"registered: {', '.join(DECODERS)}")
    ap.add_argument("--out", type=Path, default=Path("runs/decoders"), help="run folders OUT/DECODER")
    ap.add_argument("--stack", type=int, nargs=3, default=(64, 512, 512), metavar=("Z", "Y", "X"),
                    help="stack timed for stack→mask throughput")
    ap.add_argument("--repeats", type=int, default=3, help="timed stack runs (the median counts)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for the timed inference (GPUs)")
    ap.add_argument("--sw-batch-size", type=int, default=None, help="sliding-window batch (default: the module's)")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be >= 1")
    os.environ.setdefault("WANDB_SILENT", "true")
    compare(args.data_dir, args.decoders, args.steps, args.device, args.out, tuple(args.stack), args.repeats,
            args.bf16, args.sw_batch_size, extra)


if __name__ == "__main__":
    main()
