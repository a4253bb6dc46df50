"""Run the cells of an ablation grid: each a `fit` + `test` subprocess, then `evaluate_folders`; resumable.

Resume rule: a cell is finished when its folder holds ``done.json`` (written last, atomically, after test
and evaluation succeeded) with the cell's current fingerprint; it is then skipped. Any other folder (a
crash, an interrupt, a changed configuration) is deleted and the cell is run again from scratch.
Each command runs in its own process (`python -m neurovit ...`), so a crash stops only its cell and the
GPU memory is returned between cells. Cells run one at a time, or one per visible GPU at once.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue

from neurovit.ablate.grid import (
    AblationConfig,
    Cell,
    build_fit_command,
    build_test_command,
    expand_grid,
    fingerprint,
    rows,
)

DONE = "done.json"
FAILED = "failed.json"

Runner = Callable[[Sequence[str], Path, dict], int]
Evaluator = Callable[[AblationConfig, Path], dict]


@dataclass
class CellResult:
    """Outcome of one cell: status "done" (just run), "skipped" (finished before) or "failed"."""

    cell: Cell
    status: str
    seconds: float = 0.0
    metrics: dict = field(default_factory=dict)
    error: str = ""


# --------------------------------------------------------------------------- processes
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()
_STOPPING = threading.Event()  # set when the grid is interrupted: no worker thread starts another command
INTERRUPTED_RC = 130


def run_logged(cmd: Sequence[str], log: Path, env: dict) -> int:
    """Run `cmd` with stdout and stderr appended to `log`; returns its exit status.

    If we are interrupted while it runs (Ctrl-C, SIGTERM), the child is terminated too.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(map(str, cmd)) + "\n")
        fh.flush()
        with _LIVE_LOCK:  # checked under the lock stop_children takes: no command starts after it ran
            if _STOPPING.is_set():
                fh.write("not started: the grid was interrupted\n")
                return INTERRUPTED_RC
            proc = subprocess.Popen(list(map(str, cmd)), stdout=fh, stderr=subprocess.STDOUT, env=env)
            _LIVE.add(proc)
        try:
            return proc.wait()
        except BaseException:
            stop_children()
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc)


def stop_children(grace: float = 20.0) -> None:
    """Terminate every cell process still running (then kill those that ignore it for `grace` s); no worker
    thread starts another command afterwards (until the next `run_grid`)."""
    with _LIVE_LOCK:
        _STOPPING.set()
        procs = list(_LIVE)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_parallel(fn: Callable, items: Sequence[tuple], workers: int) -> list:
    """[fn(*item) for item in items] on `workers` threads (in the caller's thread when 1), results in order.

    Interrupted (Ctrl-C, SIGTERM turned into SystemExit) or failed, it stops the running commands at once and
    starts no more: `ThreadPoolExecutor`'s `with` would otherwise wait for every running cell to finish
    (up to a U-Net cell's quarter of an hour) before the interrupt took effect.
    """
    if workers <= 1:
        try:
            return [fn(*item) for item in items]
        except BaseException:
            stop_children()
            raise
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(fn, *item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)  # a failing worker is seen at once, not after
        for fut in done:                                       # the ones submitted before it
            fut.result()
        out = [fut.result() for fut in futures]
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        stop_children()
        raise
    pool.shutdown()
    return out


def _last_line(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


def device_slots(devices: str = "auto", jobs: int = 1) -> list[dict[str, str]]:
    """Environment of each concurrent worker: one per GPU ("auto": the visible ones; "0,1": these), else
    `jobs` CPU workers ("cpu" hides the GPUs)."""
    devices = (devices or "auto").strip().lower()
    if devices == "cpu":
        return [{"CUDA_VISIBLE_DEVICES": ""} for _ in range(jobs)]
    if devices == "auto":
        gpus = visible_gpus()
    else:
        gpus = [d.strip() for d in devices.split(",") if d.strip()]
    if not gpus:
        return [{} for _ in range(jobs)]
    return [{"CUDA_VISIBLE_DEVICES": g} for g in gpus]


def visible_gpus() -> list[str]:
    """GPU ids from CUDA_VISIBLE_DEVICES when set, else from torch (none without CUDA)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no usable CUDA: CPU only
        return []


def cell_env(cfg: AblationConfig, slot: dict[str, str]) -> dict[str, str]:
    """Environment of a cell's processes: ours + config `env` + the worker's device + W&B mode."""
    env = {**os.environ, **cfg.env, **slot, "PYTHONUNBUFFERED": "1"}
    if not cfg.wandb.get("enabled", True):
        env["WANDB_MODE"] = "disabled"
    elif cfg.wandb.get("mode") and "WANDB_MODE" not in os.environ:
        env["WANDB_MODE"] = str(cfg.wandb["mode"])
    return env


# --------------------------------------------------------------------------- one cell
def cell_status(cfg: AblationConfig, cell: Cell) -> str:
    """"done" (finished with the current fingerprint), "stale" (finished with another), "partial" or "new"."""
    folder = cell.folder(cfg)
    marker = folder / DONE
    if marker.is_file():
        try:
            done = json.loads(marker.read_text())
        except (OSError, ValueError):
            return "partial"
        return "done" if done.get("fingerprint") == fingerprint(cfg, cell) else "stale"
    return "partial" if folder.exists() else "new"


def read_done(folder: Path) -> dict | None:
    """The done marker of a cell folder, or None."""
    try:
        return json.loads((folder / DONE).read_text())
    except (OSError, ValueError):
        return None


def pick_checkpoint(folder: Path, which: str = "best") -> Path | None:
    """best-*.ckpt (the newest, by val/dice) when `which` is "best" and one exists, else last.ckpt."""
    ckpts = folder / "checkpoints"
    best = sorted(ckpts.glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    if which == "best" and best:
        return best[-1]
    last = ckpts / "last.ckpt"
    return last if last.is_file() else (best[-1] if best else None)


_EVAL_LOCK = threading.Lock()


def evaluate_cell(cfg: AblationConfig, folder: Path) -> dict:
    """Voxel + reconstruction metrics of a cell's test predictions (means over the test volumes)."""
    from neurovit.evaluate import METRICS, evaluate_folders

    with _EVAL_LOCK, warnings.catch_warnings():  # catch_warnings is process-wide: one evaluation at a time
        warnings.simplefilter("ignore", UserWarning)  # the gold folder also holds train/val volumes
        res = evaluate_folders(folder / "test_predictions", cfg.data_dir, folder / "evaluation", **cfg.evaluate)
    out = {m: res.summary[m]["mean"] for m in METRICS}
    out["n_test_volumes"] = len(res.rows)
    return out


def _write_json(path: Path, obj: dict) -> None:
    from neurovit.atomic import write_json

    write_json(path, obj, default=str)


class CellFailure(RuntimeError):
    """A step of a cell failed; the message says which and where its log is."""


def run_cell(cfg: AblationConfig, cell: Cell, env: dict, runner: Runner = run_logged,
             evaluator: Evaluator = evaluate_cell, n_train: int | None = None) -> CellResult:
    """Run one cell from scratch (its folder is emptied first) and write its done marker."""
    folder = cell.folder(cfg)
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "logs").mkdir(parents=True)
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    try:
        log = folder / "logs" / "fit.log"
        rc = runner(build_fit_command(cfg, cell), log, env)
        seconds["fit"] = time.perf_counter() - t0
        if rc != 0:
            raise CellFailure(f"fit exited with {rc} (log {log}: {_last_line(log)})")
        ckpt = pick_checkpoint(folder, cfg.test_checkpoint)
        if ckpt is None:
            raise CellFailure(f"fit wrote no checkpoint in {folder / 'checkpoints'}")
        log = folder / "logs" / "test.log"
        rc = runner(build_test_command(cfg, cell, ckpt), log, env)
        seconds["test"] = time.perf_counter() - t0 - seconds["fit"]
        if rc != 0:
            raise CellFailure(f"test exited with {rc} (log {log}: {_last_line(log)})")
        t1 = time.perf_counter()
        try:
            metrics = evaluator(cfg, folder)
        except Exception as exc:  # any evaluation error fails this cell only
            raise CellFailure(f"evaluation failed: {type(exc).__name__}: {exc}") from exc
        seconds["evaluate"] = time.perf_counter() - t1
    except CellFailure as exc:
        total = time.perf_counter() - t0
        _write_json(folder / FAILED, {"cell": cell.id, "error": str(exc), "seconds": total})
        return CellResult(cell, "failed", total, error=str(exc))
    total = time.perf_counter() - t0
    test_json = folder / "test_metrics.json"
    lightning = json.loads(test_json.read_text()).get("mean", {}) if test_json.is_file() else {}
    done = {"cell": cell.id, "strategy": cell.row, "init": cell.strategy, "source": cell.source,
            "fraction": cell.fraction, "seed": cell.seed,
            "subset_seed": cfg.subset_seed, "n_train_volumes": n_train, "fingerprint": fingerprint(cfg, cell),
            "checkpoint": str(ckpt), "metrics": metrics, "lightning_test": lightning,
            "seconds": {**{k: round(v, 1) for k, v in seconds.items()}, "total": round(total, 1)},
            "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    _write_json(folder / DONE, done)
    return CellResult(cell, "done", total, metrics)


# --------------------------------------------------------------------------- preparation
def n_train_volumes(cfg: AblationConfig, fraction: float) -> int | None:
    """Training volumes a fraction keeps: max(1, ⌈f · N_train⌉), as NeuronDataModule does."""
    try:
        from neurovit.data.folder import open_dataset

        n = len(open_dataset(cfg.data_dir).volumes("train"))
    except Exception:  # dataset not there yet (dry run) or unreadable: reported by fit itself
        return None
    return max(1, math.ceil(fraction * n))


def synth_config(fields: dict, *, snr: tuple[float, float] | None = None, **overrides):
    """A YAML `synth:` mapping as a SynthConfig: `microscope` fields, `split_file` (our own split, read relative
    to the working directory), lists as tuples; `snr` and `overrides` replace what the mapping says."""
    import dataclasses

    from neurovit.data.synth import MicroscopeParams, SynthConfig, read_split_file

    fields = dict(fields)
    micro = dict(fields.pop("microscope", None) or {})
    if snr is not None:
        micro["snr"] = tuple(snr)
    if fields.get("split_file"):
        fields["split_names"] = read_split_file(fields.pop("split_file"))
    for key in ("shape", "neurons_per_volume", "split", "max_shape"):
        if fields.get(key) is not None:
            fields[key] = tuple(fields[key])
    fields.update(overrides)
    return SynthConfig(**fields, microscope=dataclasses.replace(MicroscopeParams(), **micro))


def prepare(cfg: AblationConfig, say: Callable[[str], None] = print) -> None:
    """Create the dataset (from `synth`) and the generated 2D source when they are missing."""
    if not (cfg.data_dir / "dataset.yaml").is_file() and cfg.synth is not None:
        from neurovit.data.synth import synthesize_dataset

        t0 = time.perf_counter()
        synthesize_dataset(cfg.data_dir, synth_config(cfg.synth), overwrite=True, progress=False)
        n = len(list((cfg.data_dir / "images").iterdir()))
        say(f"dataset: synthesised {n} volumes into {cfg.data_dir} ({time.perf_counter() - t0:.0f} s)")
    prepare_sources(cfg, say)


SOURCE_COLUMNS = ("source", "kind", "wall_seconds", "images_seen", "steps", "trained_on", "n_files", "path")


def prepare_sources(cfg: AblationConfig, say: Callable[[str], None] = print) -> list[dict]:
    """Make every 2D source the transfer rows use (once: cached in OUT/sources/; `jobs` at a time) and write
    their cost table OUT/sources.csv (wall seconds, images seen)."""
    from neurovit.ablate.sources import make_source
    from neurovit.atomic import write_csv

    if not any(s in cfg.transfer_rows for s in cfg.strategies) or not cfg.sources:
        return []

    def one(name: str) -> dict:
        cost = make_source(cfg, name).prepare(say)
        say(f"source {name or '(single)'!r}: {cost.get('kind')} {cost.get('path')} "
            f"({cost.get('wall_seconds')} s, {cost.get('images_seen')} images seen)")
        return {"source": name or "(single)", **cost}

    # `jobs` sources at once, as cells; an interrupted pretraining is resumed (from its last epoch) next time
    costs = run_parallel(one, [(name,) for name in cfg.sources], max(1, cfg.jobs))
    write_csv(cfg.out_dir / "sources.csv", costs, SOURCE_COLUMNS)
    return costs


# --------------------------------------------------------------------------- the grid
def _label(cell: Cell, i: int, n: int) -> str:
    w = len(str(n))
    return f"[{i:>{w}}/{n}] {cell.row:<8} f={cell.fraction:<5g} seed {cell.seed}"


def _brief(metrics: dict) -> str:
    def fmt(key):
        v = metrics.get(key)
        return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"

    return f"test Dice {fmt('dice')}, clDice {fmt('cldice')}, node F1 {fmt('node_f1')}"


def run_grid(cfg: AblationConfig, *, devices: str = "auto", jobs: int | None = None, runner: Runner = run_logged,
             evaluator: Evaluator = evaluate_cell, dry_run: bool = False,
             say: Callable[[str], None] = print) -> list[CellResult]:
    """Run every unfinished cell (finished ones are skipped); one progress line per cell event."""
    cells = expand_grid(cfg)
    n = len(cells)
    slots = device_slots(devices, jobs or cfg.jobs)
    where = ", ".join(s.get("CUDA_VISIBLE_DEVICES") or "cpu" for s in slots)
    say(f"ablation {cfg.name!r}: {len(rows(cfg))} rows × {len(cfg.seeds)} seeds × "
        f"{len(cfg.fractions)} fractions = {n} cells in {cfg.cells_dir}; {len(slots)} worker(s) [{where}]")
    if dry_run:
        return _dry_run(cfg, cells, say)
    _STOPPING.clear()
    prepare(cfg, say)
    lock = threading.Lock()
    results: list[CellResult | None] = [None] * n

    def emit(text: str) -> None:
        with lock:
            say(text)

    todo = []
    for i, cell in enumerate(cells, 1):
        status = cell_status(cfg, cell)
        if status == "done":
            done = read_done(cell.folder(cfg)) or {}
            results[i - 1] = CellResult(cell, "skipped", 0.0, done.get("metrics", {}))
            emit(f"{_label(cell, i, n)}  skipped (finished {done.get('finished', 'earlier')}: "
                 f"{_brief(done.get('metrics', {}))})")
        else:
            todo.append((i, cell, status))
    free: Queue = Queue()
    for s in slots:
        free.put(s)

    def work(i: int, cell: Cell, status: str) -> None:
        slot = free.get()
        try:
            why = {"stale": " (configuration changed: re-running)", "partial": " (unfinished earlier: re-running)"}
            emit(f"{_label(cell, i, n)}  started [{slot.get('CUDA_VISIBLE_DEVICES') or 'cpu'}]{why.get(status, '')}")
            res = run_cell(cfg, cell, cell_env(cfg, slot), runner, evaluator, n_train_volumes(cfg, cell.fraction))
            results[i - 1] = res
            if res.status == "done":
                emit(f"{_label(cell, i, n)}  done in {res.seconds:.0f} s: {_brief(res.metrics)}")
            else:
                emit(f"{_label(cell, i, n)}  FAILED after {res.seconds:.0f} s: {res.error}")
        finally:
            free.put(slot)

    run_parallel(work, todo, len(slots))  # an interrupted cell has no done marker: it is re-run next time
    return [r for r in results if r is not None]


def _dry_run(cfg: AblationConfig, cells: list[Cell], say: Callable[[str], None]) -> list[CellResult]:
    """Print each cell's status and fit command; runs nothing."""
    n = len(cells)
    for i, cell in enumerate(cells, 1):
        status = cell_status(cfg, cell)
        say(f"{_label(cell, i, n)}  {'skip (done)' if status == 'done' else 'would run'}: "
            + "neurovit " + " ".join(build_fit_command(cfg, cell)[3:]))
    if not (cfg.data_dir / "dataset.yaml").is_file():
        say(f"(dataset {cfg.data_dir} is missing: " + ("it will be synthesised)" if cfg.synth else "fit will fail)"))
    return []
