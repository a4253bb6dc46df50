"""Ablation runner: grid expansion, commands, resume, device workers, statistics checked by hand, tables,
figures; one slow end-to-end micro grid that really trains."""

from __future__ import annotations

import argparse
import csv
import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from neurovit.ablate import (
    AblationConfigError,
    Cell,
    add_ablate_parser,
    aggregate,
    cell_status,
    collect_results,
    config_from_dict,
    device_slots,
    expand_grid,
    load_config,
    paired_differences,
    run_ablate,
    run_grid,
    summarize,
    t_interval,
)
from neurovit.ablate.grid import build_fit_command, build_test_command
from neurovit.metrics import METRICS, MetricsError, metric_names

REPO = Path(__file__).resolve().parents[1]
T_975_2 = 4.302652729749464  # t_{0.975, 2}: two-sided 95 % quantile of Student's t with 2 degrees of freedom


def make_cfg(tmp_path: Path, **overrides):
    raw = {"name": "abl-test", "out_dir": str(tmp_path / "out"), "data_dir": str(tmp_path / "data"),
           "base_configs": [str(REPO / "experiments/base.yaml"), str(REPO / "experiments/demo.yaml")],
           "strategies": {s: [str(REPO / f"experiments/{s}.yaml")] for s in ("scratch", "average", "center", "vit2d")},
           "seeds": [0, 1], "fractions": [1.0, 0.5], "subset_seed": 7, "source_2d": str(tmp_path / "src.pth"),
           "wandb": {"enabled": True, "project": "p", "mode": "disabled"}, **overrides}
    return config_from_dict(raw, tmp_path)


class FakeRunner:
    """Stands in for `python -m neurovit fit/test`: writes the files those commands write, records calls."""

    def __init__(self, fail: set[str] = frozenset(), delay: float = 0.0):
        self.fail, self.delay = set(fail), delay
        self.calls: list[tuple[str, str, str | None]] = []  # (command, cell id, CUDA_VISIBLE_DEVICES)
        self.active = self.max_active = 0
        self.lock = threading.Lock()

    def __call__(self, cmd, log: Path, env: dict) -> int:
        cmd = [str(c) for c in cmd]
        kind = cmd[3]
        folder = Path(cmd[cmd.index("--trainer.default_root_dir") + 1]) if kind == "fit" else \
            Path(cmd[cmd.index("--config") + 1]).parent
        with self.lock:
            self.calls.append((kind, folder.name, env.get("CUDA_VISIBLE_DEVICES")))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(self.delay)
        with self.lock:
            self.active -= 1
        log.write_text(f"{kind} log\n")
        if folder.name in self.fail:
            log.write_text("Traceback ...\nRuntimeError: boom\n")
            return 1
        if kind == "fit":
            (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
            (folder / "checkpoints" / "last.ckpt").write_text("ckpt")
            (folder / "config.yaml").write_text("{}")
        else:
            (folder / "test_metrics.json").write_text(json.dumps({"mean": {"dice": 0.5}}))
        return 0


def fake_metrics(cfg, folder: Path) -> dict:
    """Deterministic made-up metrics of a cell: Dice = 0.4 + 0.1·fraction + 0.01·seed (+0.05 for center)."""
    cell = next(c for c in expand_grid(cfg) if c.folder(cfg) == folder)
    d = 0.4 + 0.1 * cell.fraction + 0.01 * cell.seed + (0.05 if cell.strategy == "center" else 0.0)
    return {"dice": d, "cldice": d + 0.1, "precision": 0.8, "recall": 0.3, "esa": 3.0 - d, "dsa": 4.0, "pds": 0.2,
            "node_precision": 0.5, "node_recall": 0.4, "node_f1": d / 2, "n_test_volumes": 2}


# --------------------------------------------------------------------------- grid
def test_grid_expansion_cells_and_commands(tmp_path):
    cfg = make_cfg(tmp_path)
    cells = expand_grid(cfg)
    assert len(cells) == 16 and len({c.id for c in cells}) == 16
    assert cells[0] == Cell("scratch", 0.5, 0) and cells[3] == Cell("vit2d", 0.5, 0)  # fractions sorted
    assert [c.seed for c in cells[:8]] == [0] * 8 and cells[-1] == Cell("vit2d", 1.0, 1)
    cmd = build_fit_command(cfg, Cell("center", 0.5, 1))
    joined = " ".join(cmd)
    assert cmd[1:4] == ["-m", "neurovit", "fit"]
    assert joined.count("--config") == 3 and str(REPO / "experiments/center.yaml") in joined
    for flag, value in [("--data.train_fraction", "0.5"), ("--data.subset_seed", "7"), ("--data.seed", "1"),
                        ("--seed_everything", "1"), ("--init.source", str(tmp_path / "src.pth")),
                        ("--trainer.default_root_dir", str(tmp_path / "out/cells/center-f0.5-s1")),
                        ("--trainer.logger.init_args.group", "abl-test"),
                        ("--trainer.logger.init_args.name", "center-f0.5-s1")]:
        assert cmd[cmd.index(flag) + 1] == value, flag
    config = json.loads(cmd[cmd.index("--trainer.logger.init_args.config") + 1])
    assert config == {"ablation": "abl-test", "strategy": "center", "train_fraction": 0.5, "seed": 1,
                      "subset_seed": 7, "cell": "center-f0.5-s1"}
    tcmd = build_test_command(cfg, Cell("center", 0.5, 1), tmp_path / "x.ckpt")
    assert tcmd[3] == "test" and tcmd[tcmd.index("--ckpt_path") + 1] == str(tmp_path / "x.ckpt")
    assert not any(a.startswith("--trainer.logger") for a in build_fit_command(make_cfg(tmp_path, wandb={"enabled": False}),
                                                                          Cell("scratch", 1.0, 0)))


def test_shipped_grid_files_load(monkeypatch):
    monkeypatch.chdir(REPO)
    demo = load_config("experiments/ablation_demo.yaml")
    assert len(expand_grid(demo)) == 16 and set(demo.strategies) == {"scratch", "average", "center", "vit2d"}
    assert demo.out_dir.is_absolute() and demo.source_2d["pretrain_steps"] >= 0
    paper = load_config("experiments/ablation.yaml", out_dir="/tmp/elsewhere")
    assert len(expand_grid(paper)) == 4 * 3 * 4 and paper.out_dir == Path("/tmp/elsewhere")
    assert paper.source_2d == "vit_small_patch16_224.dino"  # a timm name stays a name, not a path


@pytest.mark.parametrize("change, message", [
    ({"colour": 1}, "unknown key"), ({"fractions": [0.0, 1.0]}, "fractions"), ({"seeds": [1, 1]}, "seeds"),
    ({"strategies": {"center": ["nope.yaml"]}}, "nope.yaml"), ({"metrics": ["dice", "iou"]}, "iou"),
])
def test_bad_grid_definitions_are_rejected(tmp_path, change, message):
    with pytest.raises(AblationConfigError, match=message):
        make_cfg(tmp_path, **change)


# --------------------------------------------------------------------------- running and resuming
def test_resume_skips_finished_cells_and_reruns_crashed_ones(tmp_path):
    cfg = make_cfg(tmp_path)
    crash = "average-f1-s0"
    lines: list[str] = []
    first = FakeRunner(fail={crash})
    results = run_grid(cfg, devices="cpu", runner=first, evaluator=fake_metrics, say=lines.append)
    status = {r.cell.id: r.status for r in results}
    assert status[crash] == "failed" and sum(s == "done" for s in status.values()) == 15
    assert any("FAILED" in ln and "RuntimeError: boom" in ln for ln in lines)
    assert not (cfg.cells_dir / crash / "done.json").exists() and (cfg.cells_dir / crash / "failed.json").exists()
    assert len(first.calls) == 15 * 2 + 1  # fit + test per cell; the crashed cell stopped after fit
    (cfg.cells_dir / crash / "leftover.txt").write_text("from the crashed run")
    assert cell_status(cfg, Cell("average", 1.0, 0)) == "partial"

    lines.clear()
    second = FakeRunner()
    results = run_grid(cfg, devices="cpu", runner=second, evaluator=fake_metrics, say=lines.append)
    assert [c[:2] for c in second.calls] == [("fit", crash), ("test", crash)]  # only the crashed cell ran
    assert sum("skipped" in ln for ln in lines) == 15 and sum("started" in ln for ln in lines) == 1
    assert not (cfg.cells_dir / crash / "leftover.txt").exists()  # re-run from scratch
    assert all(r.status in ("done", "skipped") for r in results) and len(results) == 16
    done = json.loads((cfg.cells_dir / crash / "done.json").read_text())
    assert done["metrics"]["dice"] == pytest.approx(0.5) and done["seconds"]["total"] >= 0

    third = FakeRunner()  # nothing left to do
    run_grid(cfg, devices="cpu", runner=third, evaluator=fake_metrics, say=lambda s: None)
    assert third.calls == []
    changed = make_cfg(tmp_path, fit_args=["--trainer.max_epochs", "9"])
    assert cell_status(changed, Cell("scratch", 0.5, 0)) == "stale"  # a changed command is not "finished"


def test_one_cell_per_gpu_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert device_slots("auto") == [{"CUDA_VISIBLE_DEVICES": "3"}, {"CUDA_VISIBLE_DEVICES": "5"}]
    assert device_slots("cpu", jobs=2) == [{"CUDA_VISIBLE_DEVICES": ""}] * 2
    assert device_slots("0") == [{"CUDA_VISIBLE_DEVICES": "0"}]
    cfg = make_cfg(tmp_path, seeds=[0], fractions=[1.0])
    runner = FakeRunner(delay=0.2)
    results = run_grid(cfg, runner=runner, evaluator=fake_metrics, say=lambda s: None)
    assert len(results) == 4 and all(r.status == "done" for r in results)
    assert runner.max_active == 2  # two GPUs → two cells at once, never more
    devices = {}
    for _kind, cell, dev in runner.calls:
        devices.setdefault(cell, set()).add(dev)
    assert all(len(d) == 1 for d in devices.values())  # fit and test of a cell on the same GPU
    assert set().union(*devices.values()) == {"3", "5"}


def test_cli_dry_run_lists_cells_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    parser = argparse.ArgumentParser()
    add_ablate_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ablate", "--config", "experiments/ablation_demo.yaml", "--out", str(tmp_path / "o"),
                              "--dry-run", "--devices", "cpu"])
    assert args.func is run_ablate and run_ablate(args) == 0
    out = capsys.readouterr().out
    assert out.count("would run: neurovit fit") == 16 and "= 16 cells" in out
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- statistics
def test_t_interval_by_hand():
    s = t_interval([0.5, 0.6, 0.7])
    # mean 0.6; std = sqrt((0.01 + 0 + 0.01) / 2) = 0.1; half width = t_{0.975,2} · 0.1 / sqrt(3)
    assert s.n == 3 and s.mean == pytest.approx(0.6) and s.std == pytest.approx(0.1)
    half = T_975_2 * 0.1 / math.sqrt(3)
    assert half == pytest.approx(0.248414, abs=1e-6)
    assert (s.lo, s.hi) == (pytest.approx(0.6 - half), pytest.approx(0.6 + half))
    two = t_interval([1.0, 2.0])  # std = 0.7071; half = 12.7062 · 0.7071 / 1.4142 = 6.3531
    assert two.std == pytest.approx(math.sqrt(0.5)) and two.hi - two.mean == pytest.approx(6.353102, abs=1e-5)
    one = t_interval([0.3, float("nan")])  # NaN is left out; one value has no spread
    assert one.n == 1 and one.mean == pytest.approx(0.3) and math.isnan(one.std) and math.isnan(one.lo)


def made_up_rows() -> list[dict]:
    scratch = {0: 0.50, 1: 0.60, 2: 0.70}
    center = {0: 0.55, 1: 0.70, 2: 0.72}
    rows = [{"strategy": "scratch", "fraction": 0.5, "seed": s, "dice": v, "n_train_volumes": 3}
            for s, v in scratch.items()]
    rows += [{"strategy": "center", "fraction": 0.5, "seed": s, "dice": v, "n_train_volumes": 3}
             for s, v in center.items()]
    rows.append({"strategy": "center", "fraction": 0.5, "seed": 9, "dice": 0.99, "n_train_volumes": 3})  # unpaired
    return rows


def test_paired_differences_by_hand():
    rows = made_up_rows()
    d = paired_differences(rows, "dice", "center", 0.5, "scratch")
    np.testing.assert_allclose(d, [0.05, 0.10, 0.02])  # seed 9 has no scratch partner
    summary = {(r["strategy"], r["metric"]): r for r in summarize(rows, ["dice"], "scratch")}
    c = summary[("center", "dice")]
    # centre mean over its 4 seeds; differences: mean 0.17/3 = 0.056667,
    # std = sqrt(((-0.006667)² + 0.043333² + (-0.036667)²) / 2) = sqrt(0.0016333) = 0.040415
    assert c["n"] == 4 and c["mean"] == pytest.approx((0.55 + 0.70 + 0.72 + 0.99) / 4)
    assert c["diff_n"] == 3 and c["diff_mean"] == pytest.approx(0.056667, abs=1e-6)
    assert c["diff_std"] == pytest.approx(0.040415, abs=1e-6)
    half = T_975_2 * 0.040415 / math.sqrt(3)  # = 0.100398: the interval includes 0
    assert c["diff_lo"] == pytest.approx(0.056667 - half, abs=1e-5) and c["diff_hi"] == pytest.approx(0.056667 + half,
                                                                                                       abs=1e-5)
    s = summary[("scratch", "dice")]
    assert s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(0.1) and "diff_mean" not in s


def test_tables_from_finished_cells(tmp_path):
    cfg = make_cfg(tmp_path)
    run_grid(cfg, devices="cpu", runner=FakeRunner(), evaluator=fake_metrics, say=lambda s: None)
    rows = collect_results(cfg)
    assert len(rows) == 16 and {r["strategy"] for r in rows} == set(cfg.strategies)
    assert set(metric_names()) <= set(rows[0])  # every registry metric is a results.csv column
    paths = aggregate(cfg, figures=False, say=lambda s: None)
    with open(paths["results"]) as fh:
        results = list(csv.DictReader(fh))
    assert len(results) == 16 and float(results[0]["dice"]) == pytest.approx(0.45)
    with open(paths["summary"]) as fh:
        summary = list(csv.DictReader(fh))
    assert len(summary) == 4 * 2 * len(cfg.metrics)
    row = next(r for r in summary if r["strategy"] == "center" and r["metric"] == "dice" and r["fraction"] == "1")
    # center = scratch + 0.05 at every seed: mean Δ 0.05 and zero spread
    assert float(row["diff_mean"]) == pytest.approx(0.05) and float(row["diff_std"]) == pytest.approx(0.0, abs=1e-12)
    assert float(row["mean"]) == pytest.approx(0.555) and float(row["std"]) == pytest.approx(math.sqrt(0.5) * 0.01)
    md = paths["markdown"].read_text()
    assert "| center | 1 (?) | 2 |" in md and "Paired difference against scratch" in md
    assert "**0.555 ± 0.007" in md  # the best Dice at fraction 1 is bold
    assert "+0.050 [+0.050, +0.050]" in md


def two_strategy_summary(metrics=("dice", "esa")) -> list[dict]:
    """scratch: Dice 0.60/0.62, ESA 3/3.2; center: Dice 0.70/0.72, ESA 4/4.2 (two seeds, fraction 1)."""
    rows = [{"strategy": s, "fraction": 1.0, "seed": seed, "dice": d + 0.02 * seed, "esa": e + 0.2 * seed,
             "n_train_volumes": 2} for s, d, e in (("scratch", 0.6, 3.0), ("center", 0.7, 4.0)) for seed in (0, 1)]
    return summarize(rows, list(metrics), "scratch")


def _table_row(md: str, strategy: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {strategy} | 1 (2) |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_tables_bold_and_format_by_the_registry(monkeypatch):
    from dataclasses import replace

    from neurovit.ablate.aggregate import summary_markdown

    summary = two_strategy_summary()
    md = summary_markdown(summary, ["dice", "esa"])
    assert "Dice ↑ ESA ↓" in md and "ESA in voxels" in md
    scratch, center = _table_row(md, "scratch"), _table_row(md, "center")
    assert center[3].startswith("**0.710 ± 0.014") and not scratch[3].startswith("**")  # higher Dice wins
    assert scratch[4].startswith("**3.10 ± 0.14") and not center[4].startswith("**")  # lower ESA wins (.2f)
    assert "+0.100" in md and "+1.00" in md  # paired Δ in each metric's format
    assert "ESA in µm" in summary_markdown(summary, ["dice", "esa"], distance_unit="µm")
    # the tables read the registry when they are written: flipping a direction flips the bold value
    monkeypatch.setitem(METRICS, "dice", replace(METRICS["dice"], higher_is_better=False, fmt=".2f"))
    md = summary_markdown(summary, ["dice", "esa"])
    assert "Dice ↓" in md
    assert _table_row(md, "scratch")[3].startswith("**0.61 ± 0.01") and not _table_row(md, "center")[3].startswith("**")
    with pytest.raises(MetricsError, match="unknown metric 'iou'"):
        summary_markdown(two_strategy_summary(("dice", "iou")), ["dice", "iou"])


def test_figure_titles_and_axis_labels_come_from_the_registry(tmp_path, monkeypatch):
    from dataclasses import replace

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neurovit.ablate.figures import plot_metrics_vs_fraction

    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    summary = two_strategy_summary()
    plot_metrics_vs_fraction(summary, ["dice", "esa"], tmp_path / "a.png", distance_unit="µm")
    monkeypatch.setitem(METRICS, "esa", replace(METRICS["esa"], label="ESA*", higher_is_better=True))
    plot_metrics_vs_fraction(summary, ["dice", "esa"], tmp_path / "b.png")
    try:
        first, second = ([(ax.get_title(), ax.get_ylabel()) for ax in f.axes] for f in figures)
        assert first == [("Dice (higher is better)", "Dice"), ("ESA (lower is better)", "ESA (µm)")]
        assert second[1] == ("ESA* (higher is better)", "ESA* (voxels)")
    finally:
        for f in figures:
            close(f)


def test_grid_metrics_come_from_the_registry(tmp_path):
    cfg = make_cfg(tmp_path)
    assert cfg.metrics == list(metric_names(headline=True)) == ["dice", "cldice", "esa", "dsa", "pds", "node_f1"]
    assert make_cfg(tmp_path, metrics=["node_recall", "dsa"]).metrics == ["node_recall", "dsa"]
    with pytest.raises(AblationConfigError, match=r"\['hd95'\]; known: " + ", ".join(metric_names())):
        make_cfg(tmp_path, metrics=["dice", "hd95"])


# --------------------------------------------------------------------------- figures
def test_figures_are_written(tmp_path, tiny_dataset):
    import matplotlib.image as mpimg

    from neurovit.data.folder import open_dataset
    from neurovit.data.tiff import read_stack, write_stack

    cfg = make_cfg(tmp_path, data_dir=str(tiny_dataset), seeds=[0, 1, 2])
    run_grid(cfg, devices="cpu", runner=FakeRunner(), evaluator=fake_metrics, say=lambda s: None)
    test_vol = open_dataset(tiny_dataset).volumes("test")[0]
    truth = read_stack(test_vol.label)
    for cell in expand_grid(cfg):  # scratch predicts the truth exactly, the others predict nothing
        pred = truth.astype(np.float32) if cell.strategy == "scratch" else np.zeros(truth.shape, np.float32)
        write_stack(cell.folder(cfg) / "test_predictions" / f"{test_vol.name}.tif", pred)
    paths = aggregate(cfg, say=lambda s: None)
    for key in ("metrics_figure", "dice_figure", "mip_panel"):
        assert paths[key].is_file() and paths[key].read_bytes()[:4] == b"\x89PNG", key
    metrics_png = mpimg.imread(paths["metrics_figure"])
    assert metrics_png.shape[1] > metrics_png.shape[0] > 300  # 2 × 3 panels
    panel = mpimg.imread(paths["mip_panel"])
    assert panel.shape[1] > 2 * panel.shape[0]  # 2 fraction rows × 6 columns (image, truth, 4 strategies)
    assert panel[..., :3].std() > 0.05  # not a blank canvas


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_micro_grid_trains_tests_evaluates_and_aggregates(tmp_path, tiny_dataset, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg_file = tmp_path / "micro.yaml"
    cfg_file.write_text(json.dumps({
        "name": "micro", "out_dir": str(tmp_path / "out"), "data_dir": str(tiny_dataset),
        "base_configs": [str(REPO / "experiments/base.yaml"), str(REPO / "experiments/demo.yaml")],
        "strategies": {s: [str(REPO / f"experiments/{s}.yaml")] for s in ("scratch", "center")},
        "seeds": [0], "fractions": [1.0], "source_2d": {"arch": "neurovit_tiny_patch16", "pretrain_steps": 0},
        "fit_args": ["--data.block_size", "32", "--data.batch_size", "4", "--data.blocks_per_epoch", "8",
                     "--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1",
                     "--trainer.enable_progress_bar", "false", "--model.sw_batch_size", "64"],
        "test_checkpoint": "last", "jobs": 2}))  # both cells at once, one thread each
    parser = argparse.ArgumentParser()
    add_ablate_parser(parser.add_subparsers(dest="command"))
    assert run_ablate(parser.parse_args(["ablate", "--config", str(cfg_file), "--devices", "cpu"])) == 0
    out = capsys.readouterr().out
    assert out.count("done in") == 2 and "Paired difference against scratch" in out
    for cell in ("scratch-f1-s0", "center-f1-s0"):
        done = json.loads((tmp_path / "out/cells" / cell / "done.json").read_text())
        assert 0.0 <= done["metrics"]["dice"] <= 1.0 and done["n_train_volumes"] == 2
        assert (tmp_path / "out/cells" / cell / "evaluation/metrics.csv").is_file()
    assert "TransferInit: init 'center'" in (tmp_path / "out/cells/center-f1-s0/logs/fit.log").read_text()
    assert (tmp_path / "out/figures/mip_panel.png").is_file() and (tmp_path / "out/summary.md").is_file()
    with open(tmp_path / "out/results.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 2
    assert run_ablate(parser.parse_args(["ablate", "--config", str(cfg_file)])) == 0  # resumed: all skipped
    assert capsys.readouterr().out.count("skipped (finished") == 2
