"""Score a folder of predictions against ground truth: voxel metrics and reconstruction metrics per volume.

Layout. The prediction folder holds ``NAME.tif`` or, as `neurovit predict` writes them, ``NAME_prob.tif``
/ ``NAME_mask.tif`` (any volume format; probability or mask, thresholded at `threshold`; ``_prob`` is
preferred when both exist) and optionally a traced ``NAME.swc``; without an SWC the TIFF is traced with `neurovit.trace.trace` (written
to ``out_dir/traced/NAME.swc`` when `out_dir` is given). The ground-truth folder is either a dataset
folder (``labels/NAME.tif``, ``swc/NAME.swc``, ``dataset.yaml``; ``images/`` is ignored) or a plain
folder of ``NAME.tif`` masks and ``NAME.swc`` trees; the same two layouts are accepted for predictions.
Files are matched by name stem. A gold SWC without a gold mask gets its mask rendered (`render_mask`).

SWC files are taken to be in voxel units of their image (the neurovit convention; a dataset's
``swc_units`` in dataset.yaml overrides it for its swc/ files) unless their header says ``# units: um``
(as `neurovit predict` writes them) or ``# units: voxel``. Distances (ESA, DSA, node F1 threshold) are in voxels by default; with
``metric_units="um"`` they are in µm, using the voxel size (argument, else ``dataset.yaml``, else the TIFF
metadata, else (1, 1, 1)).

Reporting. The metrics, their order, direction, format and units come from the registry
`neurovit.metrics.METRICS`. Names present on one side only are listed (and warned about); a volume whose
prediction and ground truth disagree in shape, or whose files cannot be read, is skipped and listed under
`problems`. When no volume can be scored a `NeurovitError` names what was found on each side.

Empty and degenerate inputs follow `neurovit.metrics`: an empty prediction scores 0 on every ratio
against a non-empty ground truth (1.0 when both are empty), and a prediction traced to fewer than 2 nodes
(or without edges) is *degenerate*: ESA/DSA/PDS get the finite worst value, the row says
``degenerate: True``, the summary counts it, and it stays in every mean (n = number of volumes scored).
NaN is left only where an input is missing (e.g. no TIFF: no voxel metrics), and means skip it.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neurovit.atomic import write_csv, write_json
from neurovit.data.swc import Morphology, read_swc
from neurovit.errors import NeurovitError
from neurovit.metrics import get_spec, metric_names

__all__ = ["EvaluationResult", "METRICS", "evaluate_folders", "format_summary"]

METRICS = metric_names()  # names of the registry `neurovit.metrics.METRICS`, in its order
INFO = ("degenerate", "pred_nodes", "gold_nodes", "pred_trees", "pred_swc", "gold_mask", "seconds")


@dataclass
class EvaluationResult:
    """Per-volume rows, mean ± std summary per metric, and what could not be matched or scored."""

    rows: list[dict]
    summary: dict[str, dict[str, float]]
    missing_pred: list[str] = field(default_factory=list)  # ground truth without a prediction
    missing_gold: list[str] = field(default_factory=list)  # predictions without ground truth
    problems: list[str] = field(default_factory=list)  # "NAME: why it was skipped"
    settings: dict = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def degenerate(self) -> list[str]:
        """Names of the volumes whose tree comparison was degenerate (scored as the worst value, kept)."""
        return [r["name"] for r in self.rows if r.get("degenerate")]

    def to_json(self) -> dict:
        return {"settings": self.settings, "summary": self.summary, "rows": self.rows,
                "degenerate": self.degenerate, "missing_pred": self.missing_pred,
                "missing_gold": self.missing_gold, "problems": self.problems}


# --------------------------------------------------------------------------- discovery
PRED_SUFFIXES = ("_prob", "_mask")  # `neurovit predict` writes NAME_prob.* / NAME_mask.*


def _volumes_by_name(folder: Path, prediction: bool) -> dict[str, Path]:
    """name → volume file; in a prediction folder NAME_prob / NAME_mask count as NAME (NAME_prob first)."""
    from neurovit.data.volumes import list_volumes, volume_stem

    out: dict[str, Path] = {}
    ranked = []
    for f in list_volumes(folder):
        stem, rank = volume_stem(f), 0
        if prediction:
            for i, suffix in enumerate(PRED_SUFFIXES):
                if stem.endswith(suffix) and len(stem) > len(suffix):
                    stem, rank = stem[: -len(suffix)], i + 1
                    break
        ranked.append((rank, stem, f))
    for _rank, stem, f in sorted(ranked, key=lambda t: (t[0], str(t[2]))):
        out.setdefault(stem, f)
    return out


def _swcs_by_name(folder: Path) -> dict[str, Path]:
    return {f.name[:-4]: f for f in sorted(folder.glob("*.swc")) if f.is_file() and not f.name.startswith(".")} \
        if folder.is_dir() else {}


def _index(folder: Path, what: str) -> tuple[dict[str, Path], dict[str, Path]]:
    """(name → mask/probability volume, name → SWC) of a plain or dataset-layout folder."""
    if not folder.is_dir():
        raise NeurovitError(f"{what} folder {folder} does not exist")
    tif_dir = folder / "labels" if (folder / "labels").is_dir() else folder
    swc_dir = folder / "swc" if (folder / "swc").is_dir() else folder
    tifs, swcs = _volumes_by_name(tif_dir, what == "prediction"), _swcs_by_name(swc_dir)
    if not tifs and not swcs:
        raise NeurovitError(f"{what} folder {folder} has no image volumes or *.swc files (looked in {tif_dir}"
                            f"{'' if swc_dir == tif_dir else f' and {swc_dir}'})")
    return tifs, swcs


def _dataset_meta(gold: Path) -> dict:
    """The ground-truth folder's dataset.yaml as a dict ({} when there is none or it does not parse: the
    folder is then scored as a plain folder)."""
    meta = gold / "dataset.yaml"
    if not meta.is_file():
        return {}
    import yaml

    try:
        return yaml.safe_load(meta.read_text()) or {}
    except yaml.YAMLError:
        return {}


def _voxel_size(voxel_size, gold: Path, tifs: list[Path]) -> tuple[tuple[float, float, float], str]:
    """(voxel size z, y, x, where it came from): argument, dataset.yaml, TIFF metadata, else (1, 1, 1)."""
    if voxel_size is not None:
        from neurovit.data.volumes import check_voxel_size

        return check_voxel_size(voxel_size), "argument"
    vs = _dataset_meta(gold).get("voxel_size_zyx_um")
    if vs is not None and len(vs) == 3:
        return tuple(float(x) for x in vs), str(gold / "dataset.yaml")  # type: ignore[return-value]
    from neurovit.data.volumes import open_volume

    for f in tifs[:1]:
        vs = open_volume(f).voxel_size
        if vs is not None:
            return tuple(float(x) for x in vs), str(f)  # type: ignore[return-value]
    return (1.0, 1.0, 1.0), "default"


# --------------------------------------------------------------------------- reading
def _read_tree(path: Path, default_units: str = "voxel") -> Morphology:
    """SWC in `default_units` unless its header says ``units: um`` (or voxel); a header-only file is an
    empty tree."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    units = default_units
    for line in lines:
        text = line.strip()
        if text.startswith("#") and text.lstrip("# ").lower().startswith("units:"):
            units = "um" if text.split(":", 1)[1].strip().lower().startswith(("um", "µm", "micro")) else "voxel"
    if not any(t.strip() and not t.lstrip().startswith("#") for t in lines):
        return Morphology(np.empty((0, 3)), np.empty(0), np.empty(0, dtype=np.int64),
                          np.empty(0, dtype=np.int64), units=units, source=str(path))
    return read_swc(path, units=units)


def _to_units(m: Morphology, units: str, voxel_size) -> Morphology:
    return m.to_um(voxel_size) if units == "um" else m.to_voxels(voxel_size)


def _read_volume(path: Path) -> np.ndarray:
    from neurovit.data.volumes import open_volume

    return open_volume(path).read()


# --------------------------------------------------------------------------- one volume
@dataclass
class _Sources:
    pred_tif: Path | None
    pred_swc: Path | None
    gold_tif: Path | None
    gold_swc: Path | None


def _score_volume(name: str, src: _Sources, *, threshold: float, voxel_size, dist_threshold: float,
                  metric_units: str, trace_kwargs: dict, traced_dir: Path | None,
                  gold_swc_units: str = "voxel") -> dict:
    """One row of metrics (NaN where an input is missing); raises NeurovitError to skip the volume."""
    from neurovit.data.render import render_mask
    from neurovit.metrics import reconstruction_scores, voxel_scores
    from neurovit.trace import binarize, trace, trace_to_swc

    t0 = time.perf_counter()
    row: dict = {"name": name, **dict.fromkeys(METRICS, math.nan), "degenerate": False, "pred_nodes": 0,
                 "gold_nodes": 0, "pred_trees": 0, "pred_swc": "-", "gold_mask": "-"}
    pred_vol = _read_volume(src.pred_tif) if src.pred_tif else None
    gold_vol = _read_volume(src.gold_tif) if src.gold_tif else None
    if pred_vol is not None and pred_vol.ndim != 3:
        raise NeurovitError(f"prediction {src.pred_tif.name} is not a 3D stack (shape {pred_vol.shape})")
    if pred_vol is not None and gold_vol is not None and pred_vol.shape != gold_vol.shape:
        raise NeurovitError(f"shape mismatch: prediction {src.pred_tif.name} is {pred_vol.shape} (z, y, x), "
                            f"ground truth {src.gold_tif.name} is {gold_vol.shape}")
    gold_tree = _read_tree(src.gold_swc, gold_swc_units) if src.gold_swc else None
    if gold_vol is not None:
        row["gold_mask"] = "file"
    elif gold_tree is not None and pred_vol is not None:
        gold_vol = render_mask(gold_tree, pred_vol.shape, voxel_size)
        row["gold_mask"] = "rendered"
    if pred_vol is not None:
        pred_mask = binarize(pred_vol, threshold)
        if gold_vol is not None:
            row.update(voxel_scores(pred_mask, gold_vol != 0))
    if src.pred_swc is not None:
        pred_tree, row["pred_swc"] = _read_tree(src.pred_swc), "file"
    elif pred_vol is not None:
        kw = {"threshold": threshold, "voxel_size": voxel_size, "source": str(src.pred_tif), **trace_kwargs}
        pred_tree = (trace_to_swc(pred_vol, traced_dir / f"{name}.swc", **kw) if traced_dir is not None
                     else trace(pred_vol, **kw))
        row["pred_swc"] = "traced"
    else:
        pred_tree = None
    if pred_tree is not None and gold_tree is not None:
        p, g = _to_units(pred_tree, metric_units, voxel_size), _to_units(gold_tree, metric_units, voxel_size)
        scores = reconstruction_scores(p, g, threshold=dist_threshold)
        row.update({k: scores[k] for k in METRICS if k in scores})
        row["degenerate"] = bool(scores.get("degenerate", False))
    if pred_tree is not None:
        row["pred_nodes"], row["pred_trees"] = len(pred_tree), len(pred_tree.roots)
    if gold_tree is not None:
        row["gold_nodes"] = len(gold_tree)
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


# --------------------------------------------------------------------------- summary and output
def summarize(rows: list[dict], metrics: Sequence[str] = METRICS) -> dict[str, dict[str, float]]:
    """mean, std (sample, ddof = 1; 0 for one value) and n over the finite values of each metric.

    Degenerate volumes have finite (worst) values and are counted; only missing inputs (NaN) are skipped."""
    out = {}
    for k in metrics:
        vals = np.array([r[k] for r in rows if r.get(k) is not None and np.isfinite(r[k])], dtype=np.float64)
        n = len(vals)
        out[k] = {"mean": float(vals.mean()) if n else math.nan,
                  "std": float(vals.std(ddof=1)) if n > 1 else (0.0 if n else math.nan), "n": n}
    return out


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _write_tables(result: EvaluationResult, out_dir: Path) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "metrics.csv", out_dir / "metrics.json"
    columns = ["name", *METRICS, *INFO]
    write_csv(csv_path, ({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
                         for row in result.rows), columns)
    write_json(json_path, _json_safe(result.to_json()))
    return {"csv": str(csv_path), "json": str(json_path)}


def _listing(names: list[str], limit: int = 10) -> str:
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _dataset_swc_units(gold_dir: Path) -> str:
    """The units of a dataset's swc/ files (dataset.yaml `swc_units`), else voxel (the neurovit default)."""
    units = _dataset_meta(gold_dir).get("swc_units", "voxel")
    return "um" if str(units).lower() in ("um", "µm", "micrometre", "micrometer") else "voxel"


def _split_names(gold_dir: Path, split: str) -> set[str]:
    """Names of the volumes of `split` in the dataset at `gold_dir` (clear errors otherwise)."""
    from neurovit.data.folder import open_dataset

    if not (gold_dir / "dataset.yaml").is_file():
        raise NeurovitError(f"--split needs a dataset folder with dataset.yaml as the ground truth; {gold_dir} has none")
    names = {r.name for r in open_dataset(gold_dir).volumes(split)}
    if not names:
        raise NeurovitError(f"{gold_dir}: the dataset has no {split!r} volumes")
    return names


def evaluate_folders(pred_dir: str | Path, gold_dir: str | Path, out_dir: str | Path | None = None, *,
                     threshold: float = 0.5, voxel_size: Sequence[float] | None = None,
                     dist_threshold: float = 2.0, metric_units: str = "voxel",
                     trace_kwargs: dict | None = None, progress: bool = False,
                     split: str | None = None) -> EvaluationResult:
    """Match predictions to ground truth by name and score every pair (see the module docstring).

    threshold: probability threshold for the prediction TIFFs (mask metrics and tracing).
    voxel_size: (z, y, x) µm; default from the gold dataset.yaml / TIFF metadata, else (1, 1, 1).
    dist_threshold: DSA/PDS threshold and node-matching distance, in `metric_units` ("voxel" or "um").
    trace_kwargs: extra arguments for `neurovit.trace.trace` when a prediction has no SWC.
    split: with a dataset folder as `gold_dir`, only its volumes of this split ("train", "val", "test").
    Writes ``metrics.csv`` and ``metrics.json`` to `out_dir` (when given) and returns the result.
    """
    if metric_units not in ("voxel", "um"):
        raise NeurovitError(f"metric_units must be 'voxel' or 'um', got {metric_units!r}")
    pred_dir, gold_dir = Path(pred_dir), Path(gold_dir)
    pred_tifs, pred_swcs = _index(pred_dir, "prediction")
    gold_tifs, gold_swcs = _index(gold_dir, "ground-truth")
    if split is not None:
        keep = _split_names(gold_dir, split)
        gold_tifs = {k: v for k, v in gold_tifs.items() if k in keep}
        gold_swcs = {k: v for k, v in gold_swcs.items() if k in keep}
    pred_names, gold_names = set(pred_tifs) | set(pred_swcs), set(gold_tifs) | set(gold_swcs)
    matched = sorted(pred_names & gold_names)
    if not matched:
        raise NeurovitError(f"no prediction matches a ground-truth file by name: {pred_dir} has "
                            f"{_listing(sorted(pred_names))}; {gold_dir} has {_listing(sorted(gold_names))}")
    v, v_from = _voxel_size(voxel_size, gold_dir, list(gold_tifs.values()) + list(pred_tifs.values()))
    result = EvaluationResult(rows=[], summary={}, missing_pred=sorted(gold_names - pred_names),
                              missing_gold=sorted(pred_names - gold_names))
    result.settings = {"pred_dir": str(pred_dir), "gold_dir": str(gold_dir), "threshold": threshold,
                       "voxel_size_zyx": list(v), "voxel_size_from": v_from, "dist_threshold": dist_threshold,
                       "metric_units": metric_units, "trace_kwargs": dict(trace_kwargs or {})}
    traced_dir = Path(out_dir) / "traced" if out_dir is not None else None
    gold_units = _dataset_swc_units(gold_dir)
    names = matched
    if progress:
        from tqdm.auto import tqdm

        names = tqdm(matched, desc="evaluate", unit="vol")
    for name in names:
        src = _Sources(pred_tifs.get(name), pred_swcs.get(name), gold_tifs.get(name), gold_swcs.get(name))
        try:
            result.rows.append(_score_volume(name, src, threshold=threshold, voxel_size=v,
                                             dist_threshold=dist_threshold, metric_units=metric_units,
                                             trace_kwargs=dict(trace_kwargs or {}), traced_dir=traced_dir,
                                             gold_swc_units=gold_units))
        except (NeurovitError, OSError) as exc:
            result.problems.append(f"{name}: {exc}")
    if result.missing_pred or result.missing_gold or result.problems:
        warnings.warn(_problem_text(result), stacklevel=2)
    if not result.rows:
        raise NeurovitError("no volume could be scored:\n" + _problem_text(result))
    result.summary = summarize(result.rows)
    if out_dir is not None:
        result.files = _write_tables(result, Path(out_dir))
    return result


def _problem_text(result: EvaluationResult) -> str:
    lines = []
    if result.missing_pred:
        lines.append(f"no prediction for {len(result.missing_pred)} ground-truth volume(s): "
                     f"{_listing(result.missing_pred)}")
    if result.missing_gold:
        lines.append(f"no ground truth for {len(result.missing_gold)} prediction(s): {_listing(result.missing_gold)}")
    lines += [f"skipped {p}" for p in result.problems]
    return "\n".join(lines)


def format_summary(result: EvaluationResult) -> str:
    """Readable table: one line per metric with mean ± std (n) in the registry's format and units, the
    number of degenerate volumes, then what was missing or skipped."""
    s = result.settings
    unit = "vox" if s.get("metric_units", "voxel") == "voxel" else "µm"
    head = (f"evaluated {len(result.rows)} volume(s): threshold {s.get('threshold')}, distance threshold "
            f"{s.get('dist_threshold')} {unit}, voxel size {s.get('voxel_size_zyx')} ({s.get('voxel_size_from')})")
    lines = [head, f"{'metric':<16}{'mean':>10}  {'± std':<10}{'n':>4}"]
    for k in METRICS:
        st = result.summary.get(k)
        if st is None:
            continue
        spec = get_spec(k)
        label = f"{k} ({unit})" if spec.units == "distance" else k
        if st["n"] == 0:
            lines.append(f"{label:<16}{'n/a':>10}  {'':<10}{0:>4}")
        else:
            lines.append(f"{label:<16}{spec.format(st['mean']):>10}  ± {spec.format(st['std'], missing='n/a'):<8}"
                         f"{st['n']:>4}")
    degenerate = result.degenerate
    if degenerate:
        lines.append(f"{len(degenerate)} volume(s) traced to fewer than 2 nodes (a tree without edges: "
                     f"{_listing(degenerate)}): ESA/DSA/PDS scored as the worst value and kept in the means "
                     "(see neurovit/metrics.py)")
    extra = _problem_text(result)
    if extra:
        lines.append(extra)
    for kind, path in result.files.items():
        lines.append(f"{kind}: {path}")
    return "\n".join(lines)
