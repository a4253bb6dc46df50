"""The ablation grid: its YAML definition, the cells (strategy × 2D source × seed × training fraction) and
their commands.

Rows: every strategy (a row name with its config files) whose effective `init.strategy` transfers 2D weights
(center, average, the 2D baseline) is crossed with every named 2D source (`neurovit.ablate.sources`); rows
that do not (scratch, the 3D U-Net) run once, without a source. A row's label is `strategy+source`
(`center+natural`) or the strategy alone.

A cell is one normal `neurovit fit` + `neurovit test` run in its own folder ``OUT/cells/<cell id>``.
Seeds set both `seed_everything` and the block-sampling seed `data.seed`; training fractions use one fixed
`data.subset_seed`, so the volume subsets are nested (10 % ⊂ 25 % ⊂ … ⊂ 100 %) and identical across seeds
and strategies: a paired comparison against scratch differs only in the initialisation.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from neurovit.errors import NeurovitError
from neurovit.metrics import check_metric_names, metric_names
from neurovit.models.pretrained import is_weights_path

METRICS = metric_names(headline=True)  # the registry's compact set: dice, cldice, esa, dsa, pds, node_f1
KNOWN_KEYS = {"name", "out_dir", "data_dir", "synth", "base_configs", "strategies", "seeds", "fractions",
              "subset_seed", "source_2d", "fit_args", "test_args", "test_checkpoint", "evaluate", "wandb",
              "reference", "metrics", "env", "jobs", "mip_volume", "error_bars", "sources"}


class AblationConfigError(NeurovitError, ValueError):
    """An ablation YAML that cannot be run as written (the message names the file and the key)."""


@dataclass
class AblationConfig:
    """What `neurovit ablate` runs; paths are absolute after `load_config`.

    Args:
        name: ablation name: W&B group, and the output folder name under runs/ablation by default.
        out_dir: where cells/, results.csv, summary.*, figures/ and the 2D source go.
        data_dir: dataset folder (`neurovit synth` layout); created from `synth` when missing.
        synth: `SynthConfig` fields for making `data_dir` (None: the dataset must exist).
        base_configs: LightningCLI config files of every cell (e.g. base.yaml, demo.yaml).
        strategies: row name → its extra config files (e.g. center → [experiments/center.yaml]).
        seeds, fractions: the grid; subset_seed: the fixed seed of the nested training subsets.
        sources: name → 2D source settings ({kind: file|mim|dino, ...}; `neurovit.ablate.sources`); every
            transfer row is run with each. `source_2d` (one source: a timm name / file, or a dict for
            `make_source_2d`) is the older form of a single unnamed source.
        fit_args, test_args: extra command-line overrides of every fit / test.
        test_checkpoint: "best" (by val/dice; last.ckpt when there is none) or "last".
        evaluate: `evaluate_folders` keywords (threshold, dist_threshold, metric_units).
        wandb: {enabled, project, mode}; mode sets WANDB_MODE for the cells unless it is set already.
        reference: the row paired differences are taken against.
        metrics: metrics of the summary table and figures: names of the registry `neurovit.metrics.METRICS`
            (default: its headline metrics).
        env: extra environment variables of the cell processes (e.g. OMP_NUM_THREADS).
        jobs: cells run at the same time on CPU (GPUs: one cell per visible GPU).
        mip_volume: test volume of the MIP panel (default: the first one).
        error_bars: "std" (over seeds) or "ci" (95 % t-interval of the mean) in the line plots.
    """

    name: str
    out_dir: Path
    data_dir: Path
    base_configs: list[Path]
    strategies: dict[str, list[Path]]
    seeds: list[int]
    fractions: list[float]
    subset_seed: int = 0
    synth: dict | None = None
    source_2d: str | dict | None = None
    sources: dict[str, dict] = field(default_factory=dict)
    transfer_rows: set[str] = field(default_factory=set)
    fit_args: list[str] = field(default_factory=list)
    test_args: list[str] = field(default_factory=list)
    test_checkpoint: str = "best"
    evaluate: dict = field(default_factory=dict)
    wandb: dict = field(default_factory=lambda: {"enabled": True, "project": "neurovit", "mode": "offline"})
    reference: str = "scratch"
    metrics: list[str] = field(default_factory=lambda: list(METRICS))
    env: dict[str, str] = field(default_factory=dict)
    jobs: int = 1
    mip_volume: str | None = None
    error_bars: str = "std"
    source_file: Path | None = None

    @property
    def cells_dir(self) -> Path:
        return self.out_dir / "cells"


@dataclass(frozen=True)
class Cell:
    """One run of the grid: init strategy, its 2D source (None for rows without one), training fraction, seed."""

    strategy: str
    fraction: float
    seed: int
    source: str | None = None

    @property
    def row(self) -> str:
        """The table row: ``center+natural``, or ``scratch`` (and any row of an unnamed single source)."""
        return f"{self.strategy}+{self.source}" if self.source else self.strategy

    @property
    def id(self) -> str:
        """Folder name, e.g. ``center+natural-f0.25-s1``."""
        return f"{self.row}-f{self.fraction:g}-s{self.seed}"

    def folder(self, cfg: AblationConfig) -> Path:
        return cfg.cells_dir / self.id


def split_row(row: str) -> tuple[str, str | None]:
    """``center+natural`` → ("center", "natural"); ``scratch`` → ("scratch", None)."""
    strategy, _, source = row.partition("+")
    return strategy, source or None


# --------------------------------------------------------------------------- loading
def _path(value: Any, base: Path, key: str, where: str) -> Path:
    if not isinstance(value, (str, Path)) or not str(value):
        raise AblationConfigError(f"{where}: {key} must be a path, got {value!r}")
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _config_file(value: Any, base: Path, key: str, where: str) -> Path:
    p = _path(value, base, key, where)
    if not p.is_file():
        raise AblationConfigError(f"{where}: {key}: config file {p} does not exist")
    return p


def _list(value: Any, key: str, where: str, kind: type) -> list:
    values = value if isinstance(value, (list, tuple)) else [value]
    try:
        out = [kind(v) for v in values]
    except (TypeError, ValueError):
        raise AblationConfigError(f"{where}: {key} must be a list of {kind.__name__}, got {value!r}") from None
    if not out or len(set(out)) != len(out):
        raise AblationConfigError(f"{where}: {key} must be a non-empty list without repeats, got {value!r}")
    return out


def config_from_dict(raw: dict, base: Path | str = ".", where: str = "ablation config") -> AblationConfig:
    """Validate a raw YAML mapping; relative paths are taken relative to `base` (the working directory)."""
    base = Path(base).resolve()
    if not isinstance(raw, dict):
        raise AblationConfigError(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise AblationConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_KEYS))}")
    for key in ("name", "data_dir", "base_configs", "strategies", "seeds", "fractions"):
        if raw.get(key) in (None, "", [], {}):
            raise AblationConfigError(f"{where}: missing {key}")
    name = str(raw["name"])
    strategies = raw["strategies"]
    if isinstance(strategies, list):  # a bare list means experiments/<name>.yaml for each row
        strategies = {s: [f"experiments/{s}.yaml"] for s in strategies}
    if not isinstance(strategies, dict):
        raise AblationConfigError(f"{where}: strategies must map a row name to its config files")
    fractions = _list(raw["fractions"], "fractions", where, float)
    if not all(0.0 < f <= 1.0 for f in fractions):
        raise AblationConfigError(f"{where}: fractions must lie in (0, 1], got {fractions}")
    from neurovit.ablate.sources import parse_sources

    sources = parse_sources(raw.get("sources"), where)
    if sources and raw.get("source_2d") is not None:
        raise AblationConfigError(f"{where}: give either sources or source_2d, not both")
    cfg = AblationConfig(
        name=name,
        out_dir=_path(raw.get("out_dir", f"runs/ablation/{name}"), base, "out_dir", where),
        data_dir=_path(raw["data_dir"], base, "data_dir", where),
        base_configs=[_config_file(p, base, "base_configs", where) for p in _list(raw["base_configs"], "base_configs", where, str)],
        strategies={str(s): [_config_file(p, base, f"strategies.{s}", where) for p in (files or [])]
                    for s, files in strategies.items()},
        seeds=_list(raw["seeds"], "seeds", where, int),
        fractions=sorted(fractions),
        subset_seed=int(raw.get("subset_seed", 0)),
        synth=raw.get("synth"),
        source_2d=raw.get("source_2d"),
        sources=sources,
        fit_args=[str(a) for a in raw.get("fit_args") or []],
        test_args=[str(a) for a in raw.get("test_args") or []],
        test_checkpoint=str(raw.get("test_checkpoint", "best")),
        evaluate=dict(raw.get("evaluate") or {}),
        wandb={"enabled": True, "project": "neurovit", "mode": "offline", **(raw.get("wandb") or {})},
        reference=str(raw.get("reference", "scratch")),
        metrics=[str(m) for m in raw.get("metrics") or METRICS],
        env={str(k): str(v) for k, v in (raw.get("env") or {}).items()},
        jobs=int(raw.get("jobs", 1)),
        mip_volume=raw.get("mip_volume"),
        error_bars=str(raw.get("error_bars", "std")),
    )
    _check(cfg, base, where)
    if cfg.source_2d is not None:  # the older single-source form: one unnamed source
        cfg.sources = {"": {"kind": "mim", **cfg.source_2d} if isinstance(cfg.source_2d, dict)
                       else {"kind": "file", "path": cfg.source_2d}}
    cfg.transfer_rows = {s for s in cfg.strategies if row_init_strategy(cfg, s) != "scratch"}
    return cfg


def row_init_strategy(cfg: AblationConfig, row: str) -> str:
    """The `init.strategy` a row's merged config files end with (later files win; LightningCLI's default is
    scratch)."""
    strategy = "scratch"
    for path in [*cfg.base_configs, *cfg.strategies[row]]:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        init = data.get("init") if isinstance(data, dict) else None
        if isinstance(init, dict) and init.get("strategy"):
            strategy = str(init["strategy"])
    return strategy


def _check(cfg: AblationConfig, base: Path, where: str) -> None:
    if cfg.test_checkpoint not in ("best", "last"):
        raise AblationConfigError(f"{where}: test_checkpoint must be 'best' or 'last', got {cfg.test_checkpoint!r}")
    if cfg.error_bars not in ("std", "ci"):
        raise AblationConfigError(f"{where}: error_bars must be 'std' or 'ci', got {cfg.error_bars!r}")
    bad = check_metric_names(cfg.metrics)
    if bad:
        raise AblationConfigError(f"{where}: unknown metric(s) {bad}; known: {', '.join(metric_names())}")
    if cfg.jobs < 1:
        raise AblationConfigError(f"{where}: jobs must be at least 1")
    if isinstance(cfg.source_2d, dict):
        from neurovit.ablate.sources import MimSource

        unknown = set(cfg.source_2d) - MimSource.keys
        if unknown:
            raise AblationConfigError(f"{where}: source_2d: unknown key(s) {sorted(unknown)}")
    elif isinstance(cfg.source_2d, str) and is_weights_path(cfg.source_2d):  # else a timm name.tag
        cfg.source_2d = str(_path(cfg.source_2d, base, "source_2d", where))
    if cfg.synth is not None and not isinstance(cfg.synth, dict):
        raise AblationConfigError(f"{where}: synth must be a mapping of SynthConfig fields or null")


def load_config(path: str | Path, out_dir: str | Path | None = None) -> AblationConfig:
    """Read an ablation YAML (relative paths from the working directory); `out_dir` overrides its out_dir."""
    path = Path(path)
    if not path.is_file():
        raise AblationConfigError(f"ablation config {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise AblationConfigError(f"{path}: not valid YAML: {exc}") from None
    if isinstance(raw, dict) and out_dir is not None:
        raw = {**raw, "out_dir": str(out_dir)}
    cfg = config_from_dict(raw, Path.cwd(), where=str(path))
    cfg.source_file = path.resolve()
    return cfg


# --------------------------------------------------------------------------- grid and commands
def rows(cfg: AblationConfig) -> list[tuple[str, str | None]]:
    """(strategy, source) of every table row: transfer rows × sources, the others once."""
    out = []
    for s in cfg.strategies:
        if s in cfg.transfer_rows and cfg.sources:
            out += [(s, name) for name in cfg.sources]
        else:
            out.append((s, None))
    return out


def expand_grid(cfg: AblationConfig) -> list[Cell]:
    """All cells, seed-major then fraction then row, so every finished block of rows is a full pairing."""
    return [Cell(s, f, seed, src or None) for seed in cfg.seeds for f in cfg.fractions for s, src in rows(cfg)]


def source_path(cfg: AblationConfig, cell: Cell) -> str | None:
    """The `init.source` of a cell (None for rows that take no 2D weights)."""
    if cell.strategy not in cfg.transfer_rows or not cfg.sources:
        return None
    from neurovit.ablate.sources import make_source

    return make_source(cfg, cell.source or "").path()


def wandb_args(cfg: AblationConfig, cell: Cell, job_type: str) -> list[str]:
    """W&B grouping: group = ablation name, run name = cell id, tags and config = strategy/fraction/seed."""
    if not cfg.wandb.get("enabled", True):
        return []
    config = {"ablation": cfg.name, "strategy": cell.strategy, "train_fraction": cell.fraction,
              "seed": cell.seed, "subset_seed": cfg.subset_seed, "cell": cell.id}
    tags = [cell.strategy, f"fraction={cell.fraction:g}", f"seed={cell.seed}"]
    if cell.source:
        config["source"] = cell.source
        tags.append(f"source={cell.source}")
    k = "--trainer.logger.init_args."
    out = [k + "group", cfg.name, k + "name", cell.id, k + "job_type", job_type,
           k + "tags", json.dumps(tags), k + "config", json.dumps(config)]
    if cfg.wandb.get("project"):
        out += [k + "project", str(cfg.wandb["project"])]
    return out


def build_fit_command(cfg: AblationConfig, cell: Cell) -> list[str]:
    """`python -m neurovit fit ...` of a cell."""
    configs = [*cfg.base_configs, *cfg.strategies[cell.strategy]]
    cmd = [sys.executable, "-m", "neurovit", "fit"]
    for c in configs:
        cmd += ["--config", str(c)]
    cmd += ["--trainer.default_root_dir", str(cell.folder(cfg)), "--data.data_dir", str(cfg.data_dir),
            "--data.train_fraction", f"{cell.fraction:g}", "--data.subset_seed", str(cfg.subset_seed),
            "--data.seed", str(cell.seed), "--seed_everything", str(cell.seed)]
    src = source_path(cfg, cell)
    if src is not None:
        cmd += ["--init.source", src]
    return cmd + wandb_args(cfg, cell, "fit") + list(cfg.fit_args)


def build_test_command(cfg: AblationConfig, cell: Cell, ckpt: Path) -> list[str]:
    """`python -m neurovit test` of a cell with its saved config and checkpoint."""
    folder = cell.folder(cfg)
    cmd = [sys.executable, "-m", "neurovit", "test", "--config", str(folder / "config.yaml"),
           "--ckpt_path", str(ckpt)]
    if cfg.wandb.get("enabled", True):
        cmd += ["--trainer.logger.init_args.job_type", "test"]
    return cmd + list(cfg.test_args)


def fingerprint(cfg: AblationConfig, cell: Cell) -> str:
    """Hash of everything that decides a cell's result: a finished cell with another hash is re-run."""
    what = {"fit": build_fit_command(cfg, cell)[1:], "test_args": cfg.test_args, "ckpt": cfg.test_checkpoint,
            "evaluate": cfg.evaluate, "source": cfg.sources.get(cell.source or "") if cell.strategy in cfg.transfer_rows else None,
            "config_files": {str(p): _digest(p) for p in [*cfg.base_configs, *cfg.strategies[cell.strategy]]}}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"
