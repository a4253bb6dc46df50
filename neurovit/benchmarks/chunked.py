"""Benchmark: chunked OME-Zarr prediction (`neurovit predict --format ome-zarr`): peak memory against the
stack size, and 1 vs 2 processes (Lightning DDP) on the same stack.

Each prediction runs in a fresh process (`python -m neurovit predict ...`), timed from outside, with its
peak resident memory read from the kernel (`ru_maxrss` of the child, for DDP the largest rank). Inputs
are synthetic uint16 OME-Zarr stacks written chunk by chunk (the writer's memory is not measured).

    python -m neurovit.benchmarks.chunked --ckpt demo_out/run/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


class _Noise:
    """A lazily generated (Z, Y, X) uint16 stack (slices made on demand) for `write_omezarr`."""

    def __init__(self, shape, seed: int = 0):
        self.shape, self.dtype, self.ndim, self.seed = tuple(shape), np.dtype(np.uint16), 3, seed

    def __getitem__(self, key):
        z = key if isinstance(key, slice) else key[0]
        zs = range(*z.indices(self.shape[0]))
        out = np.empty((len(zs), *self.shape[1:]), np.uint16)
        for i, k in enumerate(zs):
            out[i] = np.random.default_rng([self.seed, k]).integers(90, 400, self.shape[1:], dtype=np.uint16)
        return out if isinstance(key, slice) else out[(slice(None), *key[1:])]


def run(args: list[str], cwd: Path) -> tuple[float, float]:
    """(seconds, peak RSS MiB of the largest child process) of `python -m neurovit ARGS`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "neurovit", *args], cwd=cwd, capture_output=True, text=True,
                       env={**os.environ, "WANDB_MODE": "disabled"})
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(r.stderr[-2000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024  # ru_maxrss is in KiB on Linux; it only grows across children


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="demo_out/run/checkpoints/last.ckpt")
    ap.add_argument("--plane", type=int, default=512, help="in-plane size of the stacks (default 512)")
    ap.add_argument("--slices", nargs="*", type=int, default=[64, 256], help="stack depths, smallest first "
                    "(none: skip the memory rows)")
    ap.add_argument("--chunk", nargs=3, default=["32", "512", "512"], help="task size (predict --chunk)")
    ap.add_argument("--ddp-slices", type=int, default=64, help="depth of the 1-vs-2-process stack (0: skip)")
    args = ap.parse_args(argv)
    args.ckpt = str(Path(args.ckpt).resolve())  # the predictions run in a temporary folder
    from neurovit.data.omezarr import write_omezarr

    common = ["--format", "ome-zarr", "--chunk", *args.chunk, "--device", "cpu", "--no-progress", "--no-trace"]
    print(f"checkpoint {args.ckpt}; task {'x'.join(args.chunk)}; {os.cpu_count()} CPUs; one fresh process per row")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # peak RSS grows monotonically over children: measure the smallest first, each in a fresh parent
        print(f"{'stack (z, y, x)':<22}{'Mvoxel':>8}{'seconds':>9}{'Mvoxel/s':>10}{'peak RSS MiB':>14}")
        rows = []
        for n in args.slices:
            shape = (n, args.plane, args.plane)
            src = tmp / f"s{n}.ome.zarr"
            write_omezarr(src, _Noise(shape), (2.0, 1.0, 1.0), chunks=(32, 256, 256), n_levels=1)
            code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
                    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "neurovit", "predict", "--ckpt",
                                args.ckpt, "--input", str(src), "--out", str(tmp / f"o{n}"), *common],
                               capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"})
            seconds = time.perf_counter() - t0
            if r.returncode != 0:
                raise SystemExit(r.stderr[-2000:])
            peak = int(r.stdout.strip().splitlines()[-1]) / 1024
            mvox = np.prod(shape) / 1e6
            rows.append((n, peak))
            print(f"{str(shape):<22}{mvox:>8.1f}{seconds:>9.1f}{mvox / seconds:>10.2f}{peak:>14.0f}")
        if len(rows) > 1:
            (n0, p0), (n1, p1) = rows[0], rows[-1]
            print(f"peak RSS at {n1} slices / at {n0} slices: {p1 / p0:.3f} (stack {n1 / n0:.0f}x larger)")
        if args.ddp_slices:
            shape = (args.ddp_slices, args.plane, args.plane)
            src = tmp / "ddp.ome.zarr"
            write_omezarr(src, _Noise(shape, 1), (2.0, 1.0, 1.0), chunks=(32, 256, 256), n_levels=1)
            t1, _ = run(["predict", "--ckpt", args.ckpt, "--input", str(src), "--out", "p1", *common], tmp)
            t2, _ = run(["predict", "--ckpt", args.ckpt, "--input", str(src), "--out", "p2", *common,
                         "--devices", "2"], tmp)
            from neurovit.data.volumes import open_volume

            same = np.array_equal(open_volume(tmp / "p1" / "ddp_prob.ome.zarr").read(),
                                  open_volume(tmp / "p2" / "ddp_prob.ome.zarr").read())
            print(f"stack {shape}: 1 process {t1:.1f} s, 2 processes (gloo) {t2:.1f} s → {t1 / t2:.2f}x; "
                  f"outputs identical: {same}")


if __name__ == "__main__":
    main()
