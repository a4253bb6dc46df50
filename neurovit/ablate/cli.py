"""`neurovit ablate`: argparse wiring (`add_ablate_parser`) and the command (`run_ablate`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
Run an ablation grid: rows (init strategies such as scratch, average, center, vit2d, unet3d; each transfer row
once per named 2D source) × seeds × training fractions, each cell a normal `neurovit fit` + `neurovit test` in
OUT/cells/<row>-f<fraction>-s<seed>/ (row: strategy or strategy+source), then
`evaluate` on its test predictions. Finished cells (done.json) are skipped on re-run; unfinished ones are
re-run from scratch. Writes OUT/results.csv (one row per run), OUT/summary.csv, OUT/summary.md (mean ± std,
95 % t-intervals, paired differences against scratch) and OUT/figures/*.png.
2D sources are made once and cached in OUT/sources/ (cost in OUT/sources.csv); source kinds: {kinds}."""


def add_ablate_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `ablate` subcommand to an argparse subparsers object (its func is `run_ablate`)."""
    from neurovit.ablate.sources import SOURCE_KINDS

    p = subparsers.add_parser("ablate", help="run an ablation grid (strategies × seeds × data fractions) and "
                              "aggregate it", description=DESCRIPTION.format(kinds=", ".join(SOURCE_KINDS)),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, type=Path, help="grid definition, e.g. experiments/ablation.yaml")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: out_dir of the config)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and their fit commands; run nothing")
    p.add_argument("--devices", default="auto",
                   help="'auto' (one cell per visible GPU at once, else CPU), 'cpu', or GPU ids such as 0,1")
    p.add_argument("--jobs", type=int, default=None, help="cells at once on CPU (default: jobs of the config, 1)")
    p.add_argument("--strategies", nargs="+", default=None, help="run only these rows of the config")
    p.add_argument("--sources", nargs="+", default=None, help="run the transfer rows with only these 2D sources")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="replace the seeds of the config")
    p.add_argument("--fractions", nargs="+", type=float, default=None, help="replace the training fractions")
    p.add_argument("--aggregate-only", action="store_true", help="only rebuild the tables and figures")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.set_defaults(func=run_ablate)
    return p


def _apply_overrides(cfg, args) -> None:
    from neurovit.ablate.grid import AblationConfigError

    if args.strategies:
        unknown = [s for s in args.strategies if s not in cfg.strategies]
        if unknown:
            raise AblationConfigError(f"--strategies: {unknown} not in the config ({', '.join(cfg.strategies)})")
        cfg.strategies = {s: cfg.strategies[s] for s in args.strategies}
    if args.sources:
        unknown = [s for s in args.sources if s not in cfg.sources]
        if unknown:
            raise AblationConfigError(f"--sources: {unknown} not in the config ({', '.join(cfg.sources) or 'none'})")
        cfg.sources = {s: cfg.sources[s] for s in args.sources}
    if args.seeds:
        cfg.seeds = list(dict.fromkeys(args.seeds))
    if args.fractions:
        if not all(0 < f <= 1 for f in args.fractions):
            raise AblationConfigError(f"--fractions must lie in (0, 1], got {args.fractions}")
        cfg.fractions = sorted(set(args.fractions))


def _exit_on_sigterm() -> None:
    """SIGTERM (e.g. from a batch scheduler) ends the grid like Ctrl-C: running cells are stopped too."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def run_ablate(args: argparse.Namespace) -> int:
    """Run (or dry-run) the grid, then aggregate; exit status 1 when a cell failed."""
    import time

    from neurovit.ablate.aggregate import aggregate
    from neurovit.ablate.grid import load_config
    from neurovit.ablate.runner import run_grid

    cfg = load_config(args.config, args.out)
    _apply_overrides(cfg, args)
    _exit_on_sigterm()
    t0 = time.perf_counter()
    results = []
    if not args.aggregate_only:
        results = run_grid(cfg, devices=args.devices, jobs=args.jobs, dry_run=args.dry_run)
        if args.dry_run:
            return 0
    failed = [r for r in results if r.status == "failed"]
    ran = [r for r in results if r.status == "done"]
    if results:
        print(f"grid finished in {(time.perf_counter() - t0) / 60:.1f} min: {len(ran)} run, "
              f"{len(results) - len(ran) - len(failed)} skipped, {len(failed)} failed"
              + (f" ({', '.join(r.cell.id for r in failed)}; re-run the same command to retry)" if failed else ""))
    paths = aggregate(cfg, figures=not args.no_figures)
    if paths:
        print(paths["markdown"].read_text(encoding="utf-8"))
        for kind, path in paths.items():
            print(f"{kind}: {path}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """`python -m neurovit.ablate --config ...` (the same as `neurovit ablate ...`)."""
    from neurovit.errors import NeurovitError

    parser = argparse.ArgumentParser(prog="neurovit")
    add_ablate_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ablate", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run_ablate(args)
    except NeurovitError as exc:
        print(f"neurovit ablate: error: {exc}", file=sys.stderr)
        return 2
