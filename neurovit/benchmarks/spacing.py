"""Benchmark: a model trained at one voxel size, applied to the same neurons imaged at another.

The demo model (trained at 2 × 1 × 1 µm) predicts the held-out (val + test) demo neurons rendered twice:
at its native 2 × 1 × 1 µm, and at 1 × 1 × 1 µm (same procedural neurons, same extent, twice the
slices). At 1 µm it is run three ways: resampled to the model's spacing and back (what `neurovit
predict` does with the file's voxel size), and on the raw 1 µm grid as if it were 2 µm (what happens
without resampling). Dice is against each rendering's own ground truth. Two reference rows bound what any
prediction made on the model's 2 µm grid can reach against the 1 µm ground truth: the native prediction
itself moved to the 1 µm grid, and the 2 µm ground truth moved there (Dice between the two renderings
of the same neurons: thin neurites make it well below 1).

    python -m neurovit.benchmarks.spacing --ckpt demo_out/run/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def render(out: Path, voxel_size, shape, seed: int, n_volumes: int):
    from neurovit.data.synth import MicroscopeParams, SynthConfig, synthesize_dataset

    micro = dataclasses.replace(MicroscopeParams(), voxel_size=tuple(voxel_size))
    return synthesize_dataset(out, SynthConfig(n_volumes=n_volumes, shape=tuple(shape), seed=seed, microscope=micro),
                              progress=False)


@torch.no_grad()  # not torch.set_grad_enabled(False): that would leak into the caller (the tests)
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="demo_out/run/checkpoints/last.ckpt")
    ap.add_argument("--shape", nargs=3, type=int, default=(32, 128, 128), help="native shape (the demo's)")
    ap.add_argument("--n-volumes", type=int, default=8, help="as experiments/synth_demo.args")
    ap.add_argument("--seed", type=int, default=0, help="as experiments/synth_demo.args")
    args = ap.parse_args(argv)

    from neurovit.data.folder import open_dataset
    from neurovit.data.resample import resample
    from neurovit.data.volumes import open_volume
    from neurovit.metrics import dice
    from neurovit.predict import load_model

    model = load_model(args.ckpt)
    native_vs = model.preprocessing.voxel_size
    if native_vs is None:
        raise SystemExit(f"{args.ckpt} records no training voxel size; retrain it with this neurovit")
    fine_vs = (native_vs[0] / 2, native_vs[1], native_vs[2])
    native_shape = tuple(args.shape)
    fine_shape = (2 * native_shape[0] - 1, native_shape[1], native_shape[2])  # same extent: (n − 1)·v
    rows = {"native grid": [], "finer z, resampled": [], "finer z, not resampled": [],
            "native prediction → 1 µm grid": [], "2 µm gold → 1 µm grid": []}
    with tempfile.TemporaryDirectory() as tmp:
        a = open_dataset(render(Path(tmp) / "native", native_vs, native_shape, args.seed, args.n_volumes))
        b = open_dataset(render(Path(tmp) / "fine", fine_vs, fine_shape, args.seed, args.n_volumes))
        held_out = [r.name for r in a.records if r.split in ("val", "test")]
        t0 = time.perf_counter()
        for name in held_out:
            ra, rb = (next(r for r in ds.records if r.name == name) for ds in (a, b))
            img_a, lab_a = open_volume(ra.image).read(), open_volume(ra.label).read() > 0
            img_b, lab_b = open_volume(rb.image).read(), open_volume(rb.label).read() > 0
            prob_a = model.predict_probabilities(img_a, native_vs)
            rows["native grid"].append(dice(prob_a > 0.5, lab_a))
            # what no input resampling can beat: the native prediction / native gold moved to the 1 µm grid
            up = resample(prob_a, native_vs, fine_vs, img_b.shape)
            rows["native prediction → 1 µm grid"].append(dice(up > 0.5, lab_b))
            gold_up = resample(lab_a.astype(np.float32), native_vs, fine_vs, img_b.shape)
            rows["2 µm gold → 1 µm grid"].append(dice(gold_up > 0.5, lab_b))
            rows["finer z, resampled"].append(dice(model.predict_probabilities(img_b, fine_vs) > 0.5, lab_b))
            rows["finer z, not resampled"].append(dice(model.predict_probabilities(img_b, native_vs) > 0.5, lab_b))
    ref = float(np.mean(rows["native grid"]))
    print(f"model {args.ckpt}: trained at {native_vs} µm (z, y, x); {len(held_out)} held-out demo neurons "
          f"({', '.join(held_out)}); {time.perf_counter() - t0:.0f} s")
    print(f"{'input':<32}{'voxel size':<18}{'mean Dice':>10}{'Δ vs native':>13}   per volume")
    for label, scores in rows.items():
        vs = native_vs if label == "native grid" else fine_vs
        m = float(np.mean(scores))
        print(f"{label:<32}{str(tuple(vs)):<18}{m:>10.4f}{m - ref:>+13.4f}   " + " ".join(f"{s:.3f}" for s in scores))


if __name__ == "__main__":
    main()
