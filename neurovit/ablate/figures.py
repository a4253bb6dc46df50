"""Ablation figures (matplotlib, Agg): metrics vs training fraction per strategy with error bars, and a
panel of MIP overlays (image, ground truth, each strategy's prediction) of one test volume."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from neurovit.ablate.grid import AblationConfig, Cell, split_row
from neurovit.ablate.grid import rows as grid_rows
from neurovit.metrics import get_spec


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_metrics_vs_fraction(summary: Sequence[dict], metrics: Sequence[str], path: str | Path,
                             error_bars: str = "std", title: str = "", distance_unit: str = "voxels") -> Path:
    """One panel per metric: mean over seeds vs training fraction, one line per strategy, with error bars
    of ± std ("std") or the 95 % t-interval of the mean ("ci"). Titles, y labels (with `distance_unit` for
    ESA/DSA) and the better direction come from the registry `neurovit.metrics.METRICS`."""
    plt = _pyplot()
    path = Path(path)
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    for ax, m in zip(axes.flat, metrics):
        spec = get_spec(m)
        _draw(ax, summary, m, error_bars, list(dict.fromkeys(r["strategy"] for r in summary)))
        ax.set_ylabel(spec.axis_label(distance_unit), fontsize=9)
        ax.set_title(f"{spec.display} ({'higher' if spec.higher_is_better else 'lower'} is better)", fontsize=10)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    n = max((r["n"] for r in summary), default=0)
    bars = "± std" if error_bars == "std" else "95 % t-interval"
    fig.suptitle(f"{title + ': ' if title else ''}mean over {n} seed(s), error bars {bars}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _draw(ax, summary: Sequence[dict], metric: str, error_bars: str, labels: Sequence[str],
          dashed: Sequence[str] = ()) -> None:
    """Mean ± error bars vs training fraction on `ax`, one line per row label (those in `dashed` dashed)."""
    fractions = sorted({r["fraction"] for r in summary})
    log_x = len(fractions) > 1 and max(fractions) / min(fractions) >= 4
    for k, s in enumerate(labels):
        rows = sorted((r for r in summary if r["strategy"] == s and r["metric"] == metric), key=lambda r: r["fraction"])
        if not rows:
            continue
        dodge = (k - (len(labels) - 1) / 2) * 0.02  # small horizontal offsets keep bars apart
        span = (max(fractions) - min(fractions)) or 1.0  # linear axis: offsets in proportion to its range
        x = np.array([r["fraction"] for r in rows]) * (10 ** dodge if log_x else 1) + (0 if log_x else dodge * span)
        y = np.array([r["mean"] for r in rows], dtype=float)
        if error_bars == "ci":
            err = np.array([[r["mean"] - r["ci_lo"] for r in rows], [r["ci_hi"] - r["mean"] for r in rows]], float)
        else:
            err = np.array([r["std"] for r in rows], dtype=float)
        ax.errorbar(x, y, yerr=np.nan_to_num(err), marker="o", ms=4, capsize=3, lw=1.4, label=s,
                    ls="--" if s in dashed else "-")
    if log_x:
        ax.set_xscale("log")
    ax.set_xticks(fractions)
    ax.set_xticklabels([f"{100 * f:g}%" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("training volumes used")
    ax.grid(alpha=0.3)


def plot_by_source(summary: Sequence[dict], path: str | Path, metric: str = "dice", error_bars: str = "ci",
                   title: str = "") -> Path | None:
    """One panel per 2D source: its transfer rows (solid) next to the rows without a source (scratch, the 3D
    U-Net; dashed), `metric` vs training fraction. None when there are fewer than two named sources."""
    labels = list(dict.fromkeys(r["strategy"] for r in summary))
    sources = list(dict.fromkeys(src for src in (split_row(s)[1] for s in labels) if src))
    if len(sources) < 2:
        return None
    plain = [s for s in labels if split_row(s)[1] is None]
    plt = _pyplot()
    spec = get_spec(metric)
    fig, axes = plt.subplots(1, len(sources), figsize=(4.0 * len(sources), 3.6), squeeze=False, sharey=True)
    for ax, src in zip(axes.flat, sources):
        _draw(ax, summary, metric, error_bars, [s for s in labels if split_row(s)[1] == src] + plain, dashed=plain)
        ax.set_title(f"2D source: {src}", fontsize=10)
        ax.legend(fontsize=7)
    axes.flat[0].set_ylabel(spec.axis_label(), fontsize=9)
    bars = "± std" if error_bars == "std" else "95 % t-interval"
    n = max((r["n"] for r in summary), default=0)
    fig.suptitle(f"{title + ': ' if title else ''}test {spec.display} vs labelled training volumes, mean over {n} "
                 f"seed(s), error bars {bars}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _rgb(image: np.ndarray) -> np.ndarray:
    from neurovit.viz import mip, robust_normalise

    g = robust_normalise(mip(image))
    return np.stack([g, g, g], axis=-1)


def _tint(base: np.ndarray, mask: np.ndarray, colour: Sequence[float], alpha: float = 0.65) -> np.ndarray:
    out = base.copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(colour)
    return out


def compare_overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """z-MIP overlay: yellow = predicted and true, magenta = predicted only (FP), green = missed (FN)."""
    t, p = truth.max(0) > 0, pred.max(0) > 0
    out = _tint(_rgb(image), t & p, (1.0, 0.9, 0.0))
    out = _tint(out, p & ~t, (1.0, 0.1, 1.0))
    return np.clip(_tint(out, t & ~p, (0.1, 1.0, 0.1)), 0, 1)


def mip_panel(image: np.ndarray, truth: np.ndarray, predictions: Sequence[Sequence[tuple[str, np.ndarray | None]]],
              row_labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Grid of z-MIPs: per row (e.g. training fraction) image | ground truth | one column per prediction."""
    from neurovit.metrics import dice

    plt = _pyplot()
    path = Path(path)
    ncols = 2 + max(len(r) for r in predictions)
    fig, axes = plt.subplots(len(predictions), ncols, figsize=(2.6 * ncols, 2.7 * len(predictions)), squeeze=False)
    base = _rgb(image)
    for i, row in enumerate(predictions):
        axes[i, 0].imshow(base)
        axes[i, 0].set_title(f"image ({row_labels[i]})", fontsize=8)
        axes[i, 1].imshow(np.clip(_tint(base, truth.max(0) > 0, (0.1, 1.0, 0.1)), 0, 1))
        axes[i, 1].set_title("ground truth", fontsize=8)
        for j, (name, pred) in enumerate(row):
            ax = axes[i, 2 + j]
            if pred is None:
                ax.set_title(f"{name}: missing", fontsize=8)
            else:
                ax.imshow(compare_overlay(image, truth, pred))
                ax.set_title(f"{name}: {get_spec('dice').display} {get_spec('dice').format(dice(pred, truth))}",
                             fontsize=8)
        for ax in axes[i]:
            ax.axis("off")
    fig.suptitle((title + "\n" if title else "") + "yellow: predicted and true · magenta: false positive · "
                 "green: missed", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ablation_mip_panel(cfg: AblationConfig, rows: Sequence[dict], path: str | Path) -> Path | None:
    """MIP panel of one test volume: a row per training fraction, a column per strategy (first seed run)."""
    from neurovit.data.folder import ensure_label, open_dataset
    from neurovit.data.volumes import open_volume

    ds = open_dataset(cfg.data_dir)
    tests = ds.volumes("test")
    if not tests or not rows:
        return None
    rec = next((r for r in tests if r.name == cfg.mip_volume), tests[0])
    image, truth = open_volume(rec.image).read(), open_volume(ensure_label(rec, ds)).read() > 0
    seed = min(int(r["seed"]) for r in rows)
    fractions = sorted({float(r["fraction"]) for r in rows})
    thr = float(cfg.evaluate.get("threshold", 0.5))
    grid, labels = [], []
    for f in fractions:
        line = []
        for s, src in grid_rows(cfg):
            cell = Cell(s, f, seed, src or None)
            pred_file = cell.folder(cfg) / "test_predictions" / f"{rec.name}.tif"
            line.append((cell.row, open_volume(pred_file).read() > thr if pred_file.is_file() else None))
        grid.append(line)
        labels.append(f"{100 * f:g}% of training")
    return mip_panel(image, truth, grid, labels, path, title=f"{cfg.name}: test volume {rec.name}, seed {seed}")


def write_figures(cfg: AblationConfig, rows: Sequence[dict], summary: Sequence[dict]) -> dict[str, Path]:
    """metrics_vs_fraction.png, dice_vs_fraction.png and mip_panel.png in cfg.out_dir/figures."""
    from neurovit.ablate.aggregate import distance_unit

    fig_dir = cfg.out_dir / "figures"
    unit = distance_unit(cfg)
    out = {"metrics_figure": plot_metrics_vs_fraction(summary, cfg.metrics, fig_dir / "metrics_vs_fraction.png",
                                                      cfg.error_bars, cfg.name, unit)}
    if "dice" in cfg.metrics:
        out["dice_figure"] = plot_metrics_vs_fraction(summary, ["dice"], fig_dir / "dice_vs_fraction.png",
                                                      cfg.error_bars, cfg.name, unit)
    if "dice" in cfg.metrics:
        by_source = plot_by_source(summary, fig_dir / "dice_by_source.png", "dice", cfg.error_bars, cfg.name)
        if by_source is not None:
            out["dice_by_source"] = by_source
    panel = ablation_mip_panel(cfg, rows, fig_dir / "mip_panel.png")
    if panel is not None:
        out["mip_panel"] = panel
    return out
