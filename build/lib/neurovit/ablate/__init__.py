"""Ablations: init strategies × seeds × training fractions, each a `fit` + `test` run; tables with
uncertainty, paired differences against scratch, figures, W&B grouping (`neurovit ablate`).

    grid.py       YAML definition → cells and their `neurovit fit` / `neurovit test` command lines
    runner.py     runs the cells in subprocesses (resumable, one per GPU), evaluates their test predictions
    aggregate.py  results.csv, summary.csv, summary.md: mean ± std, 95 % t-intervals, paired differences
    figures.py    metric vs training fraction with error bars; MIP overlay panel of one test volume
    source2d.py   a small deterministic 2D ViT checkpoint when no DINO weights are available
"""

from neurovit.ablate.aggregate import (
    Stats,
    aggregate,
    collect_results,
    paired_differences,
    summarize,
    t_interval,
)
from neurovit.ablate.cli import add_ablate_parser, run_ablate
from neurovit.ablate.grid import (
    AblationConfig,
    AblationConfigError,
    Cell,
    config_from_dict,
    expand_grid,
    load_config,
)
from neurovit.ablate.runner import CellResult, cell_status, device_slots, run_cell, run_grid

__all__ = [
    "AblationConfig",
    "AblationConfigError",
    "Cell",
    "CellResult",
    "Stats",
    "add_ablate_parser",
    "aggregate",
    "cell_status",
    "collect_results",
    "config_from_dict",
    "device_slots",
    "expand_grid",
    "load_config",
    "paired_differences",
    "run_ablate",
    "run_cell",
    "run_grid",
    "summarize",
    "t_interval",
]
