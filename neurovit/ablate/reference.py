"""The reference recipe (`make reference`): train one configuration on the realistic data and report it on
held-out neurons at fixed SNRs next to the Frangi + Otsu baseline.

    python -m neurovit.ablate.reference --config experiments/reference.yaml [--out reference_out]

The recipe file is an ablation grid of one cell (one row, one seed, fraction 1: the same keys as
`neurovit ablate`, so data synthesis, 2D sources, fit, test, resume and W&B are the runner's), plus
`test_snrs`: after the cell, the test neurons are rendered again at each of these SNRs (same split, same
voxel size; `synth.seed` + SNR as the seed) and the cell's checkpoint predicts them (`neurovit predict`'s
code: the checkpoint's normaliser and spacing). Both the predictions and the Frangi + Otsu masks are scored
by `evaluate_folders` (Dice, clDice, ESA/DSA in µm ...). Writes OUT/reference.md (the table),
OUT/reference.csv and OUT/figures/reference_snrS.png (a test neuron: image, truth, model, baseline);
OUT/cells/<row>-f1-s0/ holds the checkpoint and config.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

from neurovit.errors import NeurovitError

METRICS = ("dice", "cldice", "precision", "recall", "esa", "dsa", "node_f1")


def load_recipe(path: str | Path, out: str | Path | None = None):
    """(AblationConfig of the single cell, test SNRs) from a recipe YAML."""
    from neurovit.ablate.grid import AblationConfigError, config_from_dict

    path = Path(path)
    if not path.is_file():
        raise NeurovitError(f"reference recipe {path} does not exist")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    snrs = [float(s) for s in raw.pop("test_snrs", [4.0, 8.0])]
    if out is not None:
        raw["out_dir"] = str(out)
    cfg = config_from_dict(raw, Path.cwd(), where=str(path))
    if len(cfg.strategies) != 1 or len(cfg.seeds) != 1 or cfg.fractions != [1.0] or len(cfg.sources) > 1:
        raise AblationConfigError(f"{path}: a reference recipe is one row, one seed, fraction 1 and at most one "
                                  "source")
    return cfg, snrs


def render_test_set(cfg, snr: float, out: Path) -> Path:
    """The recipe's test neurons rendered at one SNR (all volumes in the test split)."""
    from neurovit.ablate.runner import synth_config
    from neurovit.data.synth import read_split_file, synthesize_dataset

    fields = dict(cfg.synth or {})
    if not fields.get("swc_dir"):
        raise NeurovitError("the reference recipe needs synth.swc_dir (real morphologies) for its test sets")
    # the split is read here once; the test set's own split (test neurons only) replaces it below
    split = read_split_file(fields.pop("split_file")) if fields.get("split_file") else dict(fields.pop("split_names", None) or {})
    test = [name for name, s in split.items() if s == "test"]
    if not test:
        raise NeurovitError("the reference recipe's split has no test neurons")
    swc_dir = Path(fields["swc_dir"])
    with tempfile.TemporaryDirectory() as tmp:  # only the test neurons, as links
        for name in test:
            (Path(tmp) / f"{name}.swc").symlink_to((swc_dir / f"{name}.swc").resolve())
        synth = synth_config(fields, snr=(snr, snr), swc_dir=tmp, seed=int(fields.get("seed", 0)) + int(round(10 * snr)),
                             split_names=dict.fromkeys(test, "test"))
        synthesize_dataset(out, synth, overwrite=True, progress=False)
    return out


def score_at_snr(cfg, ckpt: Path, snr: float, say=print) -> list[dict]:
    """Model and Frangi + Otsu on the test neurons rendered at `snr`: one row per method (means over volumes)."""
    import numpy as np

    from neurovit.baselines import frangi_otsu
    from neurovit.data.folder import open_dataset
    from neurovit.data.volumes import open_volume, write_volume
    from neurovit.evaluate import evaluate_folders
    from neurovit.predict import run_predict

    root = cfg.out_dir / f"test_snr{snr:g}"
    gold = render_test_set(cfg, snr, root / "data")
    ds = open_dataset(gold)
    images = [r.image for r in ds.volumes("test")]
    _, failures = run_predict(ckpt, gold / "images", root / "model", progress=False, trace=True)
    if failures:
        raise NeurovitError(f"prediction failed at SNR {snr:g}: {failures}")
    for path in images:
        vol = open_volume(path)
        write_volume(root / "frangi_otsu" / f"{vol.name}.tif", frangi_otsu(vol.read()).astype(np.uint8),
                     voxel_size=vol.voxel_size)
    rows = []
    for method, folder in (("model", root / "model"), ("frangi_otsu", root / "frangi_otsu")):
        res = evaluate_folders(folder, gold, folder / "evaluation", metric_units="um", split="test",
                               **{k: v for k, v in cfg.evaluate.items() if k != "metric_units"})
        row = {"snr": snr, "method": method, "n": len(res.rows)}
        row.update({m: res.summary[m]["mean"] for m in METRICS if m in res.summary})
        rows.append(row)
        say(f"SNR {snr:g} {method:<12} Dice {row['dice']:.3f}  ESA {row['esa']:.2f} µm  (n={row['n']})")
    return rows


def _shown(path: Path) -> Path:
    """`path` relative to the working folder when it lies inside it (a report that moves with its folder)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def write_report(cfg, rows: list[dict], cell_id: str, seconds: dict | None = None) -> Path:
    """OUT/reference.md and OUT/reference.csv; `seconds`: wall time per stage of this run."""
    import os
    import platform

    from neurovit.atomic import write_csv, write_text

    write_csv(cfg.out_dir / "reference.csv", rows, ["snr", "method", "n", *METRICS])
    lines = [f"# Reference recipe {cfg.name}", "",
             f"Checkpoint: `{_shown(cfg.cells_dir / cell_id / 'checkpoints')}`; "
             f"config: `{_shown(cfg.cells_dir / cell_id / 'config.yaml')}`.",
             "Test neurons (never seen in training) rendered at each SNR; means over the volumes; ESA/DSA in µm."]
    if seconds:
        skipped = " (the cell had finished earlier: 0 s)" if seconds.get("cell") == 0 else ""
        lines.append("Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
                     + f"{skipped}; {platform.machine()}, {os.cpu_count()} CPUs.")
    lines += ["",
             "| SNR | method | volumes | " + " | ".join(METRICS) + " |", "|---|---|---|" + "---|" * len(METRICS)]
    for r in rows:
        lines.append(f"| {r['snr']:g} | {r['method']} | {r['n']} | "
                     + " | ".join(f"{r.get(m, float('nan')):.3f}" for m in METRICS) + " |")
    return write_text(cfg.out_dir / "reference.md", "\n".join(lines) + "\n")


def mip_figures(cfg, snrs: list[float]) -> list[Path]:
    """Per SNR, the first test neuron's z-MIPs: image, truth, model, Frangi + Otsu (figures/reference_snrS.png)."""
    from neurovit.ablate.figures import mip_panel
    from neurovit.data.folder import ensure_label, open_dataset
    from neurovit.data.volumes import open_volume

    out = []
    thr = float(cfg.evaluate.get("threshold", 0.5))
    for snr in snrs:
        root = cfg.out_dir / f"test_snr{snr:g}"
        ds = open_dataset(root / "data")
        rec = ds.volumes("test")[0]
        image, truth = open_volume(rec.image).read(), open_volume(ensure_label(rec, ds)).read() > 0
        pred = open_volume(root / "model" / f"{rec.name}_prob.tif").read() > thr
        base = open_volume(root / "frangi_otsu" / f"{rec.name}.tif").read() > 0
        out.append(mip_panel(image, truth, [[("model", pred), ("Frangi + Otsu", base)]], [f"SNR {snr:g}"],
                             cfg.out_dir / "figures" / f"reference_snr{snr:g}.png",
                             title=f"{cfg.name}: held-out neuron {rec.name} at SNR {snr:g}"))
    return out


def run(config: str | Path, out: str | Path | None = None, say=print) -> int:
    from neurovit.ablate.grid import expand_grid
    from neurovit.ablate.runner import pick_checkpoint, run_grid

    cfg, snrs = load_recipe(config, out)
    t0 = time.perf_counter()
    results = run_grid(cfg, say=say)
    if any(r.status == "failed" for r in results):
        return 1
    seconds = {"cell": time.perf_counter() - t0 if any(r.status == "done" for r in results) else 0.0}
    cell = expand_grid(cfg)[0]
    ckpt = pick_checkpoint(cell.folder(cfg), cfg.test_checkpoint)
    t0 = time.perf_counter()
    rows = [row for snr in snrs for row in score_at_snr(cfg, ckpt, snr, say)]
    seconds["scoring"] = time.perf_counter() - t0
    seconds["total"] = seconds["cell"] + seconds["scoring"]
    say(f"report: {write_report(cfg, rows, cell.id, seconds)}")
    for fig in mip_figures(cfg, snrs):
        say(f"figure: {fig}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m neurovit.ablate.reference", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="experiments/reference.yaml")
    ap.add_argument("--out", default=None, help="output folder (default: the recipe's out_dir)")
    args = ap.parse_args(argv)
    try:
        return run(args.config, args.out)
    except NeurovitError as exc:
        print(f"reference: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
