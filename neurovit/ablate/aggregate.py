"""Aggregate finished cells: per-run rows, mean ± std and 95 % t-intervals over seeds, paired differences
against the reference row (scratch) at the same seed and training fraction; CSV and Markdown tables.

For the n seeds of a (strategy, fraction) cell with values x_1..x_n:
  mean x̄ = Σ x_i / n,  std s = √(Σ (x_i − x̄)² / (n − 1)),  95 % interval x̄ ± t_{0.975, n−1} · s / √n.
Paired differences d_i = x_i(strategy) − x_i(reference) over the seeds present in both get the same
three numbers; an interval that excludes 0 is a significant difference at the 5 % level (paired t-test).
Labels, directions (which mean is bold) and formats come from the registry `neurovit.metrics.METRICS`.
An empty or one-node reconstruction has finite worst values (see `neurovit.metrics`), so it is averaged
in; only missing values (a metric a cell did not report) are left out, and n counts the values used.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurovit.ablate.grid import AblationConfig, expand_grid
from neurovit.ablate.runner import read_done
from neurovit.metrics import METRICS, best, get_spec

RESULT_COLUMNS = ("cell", "strategy", "fraction", "seed", "n_train_volumes", "n_test_volumes")


@dataclass(frozen=True)
class Stats:
    """n finite values, their mean, sample std (ddof = 1) and the two ends of the t-interval of the mean."""

    n: int
    mean: float
    std: float
    lo: float
    hi: float


def t_interval(values: Iterable[float], level: float = 0.95) -> Stats:
    """x̄ ± t_{(1+level)/2, n−1} · s / √n over the finite values (std and interval NaN below n = 2)."""
    from scipy import stats

    x = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    n = len(x)
    if n == 0:
        return Stats(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Stats(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return Stats(n, mean, std, mean - half, mean + half)


def _value(row: dict, metric: str) -> float:
    v = row.get(metric)
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _by_seed(rows: Sequence[dict], strategy: str, fraction: float, metric: str) -> dict[int, float]:
    return {int(r["seed"]): _value(r, metric) for r in rows
            if r["strategy"] == strategy and math.isclose(float(r["fraction"]), fraction)}


def paired_differences(rows: Sequence[dict], metric: str, strategy: str, fraction: float,
                       reference: str = "scratch") -> np.ndarray:
    """d_s = x_s(strategy) − x_s(reference) for every seed s with finite values in both, by seed."""
    a, b = _by_seed(rows, strategy, fraction, metric), _by_seed(rows, reference, fraction, metric)
    seeds = sorted(s for s in set(a) & set(b) if np.isfinite(a[s]) and np.isfinite(b[s]))
    return np.array([a[s] - b[s] for s in seeds], dtype=np.float64)


def summarize(rows: Sequence[dict], metrics: Sequence[str], reference: str = "scratch",
              level: float = 0.95) -> list[dict]:
    """One row per (strategy, fraction, metric): stats over seeds and paired differences vs `reference`."""
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    fractions = sorted({float(r["fraction"]) for r in rows})
    out = []
    for s in strategies:
        for f in fractions:
            cell_rows = [r for r in rows if r["strategy"] == s and math.isclose(float(r["fraction"]), f)]
            if not cell_rows:
                continue
            n_train = cell_rows[0].get("n_train_volumes")
            for m in metrics:
                st = t_interval(_value(r, m) for r in cell_rows)
                row = {"strategy": s, "fraction": f, "n_train_volumes": n_train, "metric": m, "n": st.n,
                       "mean": st.mean, "std": st.std, "ci_lo": st.lo, "ci_hi": st.hi}
                if s != reference:
                    d = t_interval(paired_differences(rows, m, s, f, reference), level)
                    row.update(diff_n=d.n, diff_mean=d.mean, diff_std=d.std, diff_lo=d.lo, diff_hi=d.hi)
                out.append(row)
    return out


# --------------------------------------------------------------------------- reading and writing
def collect_results(cfg: AblationConfig) -> list[dict]:
    """One flat row per finished cell of the grid (cells without a done marker are left out)."""
    rows = []
    for cell in expand_grid(cfg):
        done = read_done(cell.folder(cfg))
        if done is None:
            continue
        row = {"cell": cell.id, "strategy": cell.row, "fraction": cell.fraction, "seed": cell.seed,
               "n_train_volumes": done.get("n_train_volumes"),
               "n_test_volumes": done.get("metrics", {}).get("n_test_volumes")}
        row.update({m: done.get("metrics", {}).get(m, math.nan) for m in METRICS})
        row["dice_lightning"] = done.get("lightning_test", {}).get("dice", math.nan)
        row["seconds"] = done.get("seconds", {}).get("total", math.nan)
        rows.append(row)
    return rows


def _fmt_csv(v) -> str | int:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    return "" if v is None else v


def write_csv(rows: Sequence[dict], path: Path) -> Path:
    """Rows → CSV (columns of the first row plus any later ones; NaN as empty)."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt_csv(r.get(k)) for k in columns})
    return path


def _best_means(summary: Sequence[dict], metric: str, fraction: float) -> float | None:
    """The best mean of `metric` at `fraction` by the registry's direction (None when there is none)."""
    return best(metric, (r["mean"] for r in summary
                         if r["metric"] == metric and math.isclose(r["fraction"], fraction)))


def distance_unit(cfg: AblationConfig) -> str:
    """Unit of the distance metrics (ESA, DSA) of an ablation's evaluation: "µm" or "voxels"."""
    return "µm" if str(cfg.evaluate.get("metric_units", "voxel")).lower() == "um" else "voxels"


def summary_markdown(summary: Sequence[dict], metrics: Sequence[str], reference: str = "scratch",
                     title: str = "Ablation", distance_unit: str = "voxels") -> str:
    """Two Markdown tables: mean ± std [95 % CI] per cell (best mean per fraction in bold, by the registry's
    direction of each metric), and paired Δ; numbers in the registry's format."""
    specs = {m: get_spec(m) for m in metrics}
    arrows = " ".join(f"{sp.display} {'↑' if sp.higher_is_better else '↓'}" for sp in specs.values())
    head = "| strategy | fraction (volumes) | seeds | " + " | ".join(sp.display for sp in specs.values()) + " |"
    distances = [sp.display for sp in specs.values() if sp.units == "distance"]
    units = f" {', '.join(distances)} in {distance_unit}." if distances else ""
    rule = "|---|---|---|" + "---|" * len(metrics)
    lines = [f"# {title}", "",
             f"Mean ± std over seeds [95 % t-interval of the mean] per strategy and training fraction "
             f"({arrows}: ↑ higher is better, ↓ lower is better; best mean per fraction in **bold**).{units}", "",
             head, rule]
    keys = list(dict.fromkeys((r["strategy"], r["fraction"]) for r in summary))
    order = list(dict.fromkeys(s for s, _ in keys))
    keys.sort(key=lambda k: (k[1], order.index(k[0])))
    by = {(r["strategy"], r["fraction"], r["metric"]): r for r in summary}
    for s, f in keys:
        first = by.get((s, f, metrics[0]), {})
        vols = first.get("n_train_volumes")
        cells = []
        for m in metrics:
            r, fmt = by.get((s, f, m)), specs[m].format
            if r is None:
                cells.append("–")
                continue
            text = fmt(r["mean"])
            if r["n"] > 1:
                text += f" ± {fmt(r['std'])} [{fmt(r['ci_lo'])}, {fmt(r['ci_hi'])}]"
            top = _best_means(summary, m, f)
            cells.append(f"**{text}**" if top is not None and math.isclose(r["mean"], top) else text)
        lines.append(f"| {s} | {f:g} ({vols if vols is not None else '?'}) | {first.get('n', 0)} | "
                     + " | ".join(cells) + " |")
    lines += ["", f"Paired difference against {reference} (same seed, same training volumes): mean Δ "
              f"[95 % t-interval]; an interval that excludes 0 is significant at the 5 % level (paired t-test).",
              "", "| strategy | fraction | pairs | " + " | ".join(f"Δ {sp.display}" for sp in specs.values()) + " |",
              rule]
    for s, f in keys:
        if s == reference:
            continue
        first = by.get((s, f, metrics[0]), {})
        cells = []
        for m in metrics:
            r, fmt = by.get((s, f, m), {}), specs[m].format
            if not r.get("diff_n"):
                cells.append("–")
                continue
            sig = math.isfinite(r["diff_lo"]) and (r["diff_lo"] > 0 or r["diff_hi"] < 0)
            text = fmt(r["diff_mean"], sign=True)
            if r["diff_n"] > 1:
                text += f" [{fmt(r['diff_lo'], sign=True)}, {fmt(r['diff_hi'], sign=True)}]"
            cells.append(f"**{text}**" if sig else text)
        lines.append(f"| {s} | {f:g} | {first.get('diff_n', 0)} | " + " | ".join(cells) + " |")
    n_seeds = max((r["n"] for r in summary), default=0)
    if n_seeds and n_seeds < 3:
        lines += ["", f"With {n_seeds} seed(s) the t-intervals are wide (t_0.975,1 = 12.7): use more seeds "
                  "before reading anything into small differences."]
    return "\n".join(lines) + "\n"


def aggregate(cfg: AblationConfig, figures: bool = True, say=print) -> dict[str, Path]:
    """Write results.csv, summary.csv, summary.md (and the figures) into cfg.out_dir; returns their paths."""
    rows = collect_results(cfg)
    if not rows:
        say(f"no finished cells in {cfg.cells_dir}: nothing to aggregate")
        return {}
    out = cfg.out_dir
    summary = summarize(rows, cfg.metrics, cfg.reference)
    paths = {"results": write_csv(rows, out / "results.csv"), "summary": write_csv(summary, out / "summary.csv")}
    md = summary_markdown(summary, cfg.metrics, cfg.reference, title=f"Ablation {cfg.name}",
                          distance_unit=distance_unit(cfg))
    paths["markdown"] = out / "summary.md"
    paths["markdown"].write_text(md, encoding="utf-8")
    if figures:
        from neurovit.ablate.figures import write_figures

        paths.update(write_figures(cfg, rows, summary))
    return paths
