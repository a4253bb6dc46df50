"""`neurovit prepare`: turn the image stacks and SWC reconstructions you have into a checked dataset folder.

Everything is validated before anything is written (like nnU-Net's verify step): every problem of every
case is collected, printed in one table, and the dataset is written only when there is none (or, with
`--skip-bad`, from the cases without problems).

Inputs (matched by name; names keep their dots: `cell.day1.tif` is `cell.day1`):

* `SRC`, a flat folder: `NAME.<image>` + `NAME.swc` (any supported image format: TIFF, OME-TIFF, v3draw,
  OME-Zarr; `NAME.v3draw.swc` and `.eswc` are accepted too).
* `SRC`, a Gold166-like tree: one sub-folder per neuron holding exactly one image and one SWC (file names
  inside may differ; the neuron's NAME is the sub-folder name). Deeper trees work too (leaf folder names,
  disambiguated by their parents when two are the same).
* `--images DIR` with `--swc DIR` and/or `--labels DIR`: files matched by image stem / SWC stem.

Checks per case: the image reads as a 3D grey stack; its voxel size is known (from the file, or
`--voxel-size`, which overrides every file); all cases share one voxel size within 10 %; the SWC parses
and is not empty; the SWC lies inside its image (node bounding box in voxels, a few voxels of slack) —
if not, the likely cause is named: voxel units read as µm (or the reverse), x and z swapped, or the
extents are given in µm; a label image has the image's shape; the foreground (label, or the mask rendered
from the SWC) is not empty; images, SWCs and labels without a partner are errors.

Output (`neurovit-dataset/1`, read by `neurovit fit` through `neurovit.data.folder.open_dataset`):
`images/NAME<suffix>` (a symlink to the absolute source, or a copy with `--copy`), `swc/NAME.swc` (copied
as is; `swc_units` records µm or voxel), `labels/NAME<suffix>` only for given labels (masks of SWC-only
cases are rendered by `fit` itself), and `dataset.yaml` with the voxel size and a seeded, fixed
train/val/test split. The folder is built as `.DATASET.<random>.tmp` beside `--out` and renamed into place
at the end, so a failed run leaves nothing behind and `--overwrite` replaces a dataset only once the new
one is complete.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from neurovit.data.volumes import (
    FORMATS,
    check_voxel_size,
    is_volume_path,
    list_volumes,
    open_volume,
    spacing_differs,
    supported_suffixes,
    volume_stem,
)
from neurovit.errors import DatasetError, SWCError, VolumeError

__all__ = ["PrepareReport", "add_prepare_parser", "prepare_dataset"]

FORMAT = "neurovit-dataset/1"
SWC_SUFFIXES = (".eswc", ".swc")
SLACK_VOXELS = 3.0  # how far (in voxels) SWC nodes may lie outside the image before it is an error
SPLITS = ("train", "val", "test")
VoxelSize = tuple[float, float, float]


# ------------------------------------------------------------------------------------------------ report
@dataclass
class Case:
    """One neuron: its files, what the checks found, and its problems (each a (kind, message) pair)."""

    name: str
    image: Path | None = None
    swc: Path | None = None
    label: Path | None = None
    shape: tuple[int, int, int] | None = None
    voxel_size: VoxelSize | None = None
    voxel_size_from: str | None = None
    foreground: float | None = None
    swc_nodes: int | None = None
    split: str | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)

    def fail(self, kind: str, message: str) -> None:
        self.problems.append((kind, message))

    def row(self) -> dict:
        return {"name": self.name, "image": self.image, "swc": self.swc, "label": self.label,
                "shape": self.shape, "voxel_size": self.voxel_size, "foreground": self.foreground,
                "swc_nodes": self.swc_nodes, "split": self.split, "problems": [m for _, m in self.problems],
                "kinds": [k for k, _ in self.problems]}


@dataclass
class PrepareReport:
    """What `prepare_dataset` checked and wrote.

    `rows`: one dict per case (name, image, swc, label, shape, voxel_size, foreground (fraction), swc_nodes,
    split, problems, kinds); `errors`: "NAME: problem" strings; `skipped`: names left out (`skip_bad`);
    `out`: the dataset folder, or None when nothing was written.
    """

    rows: list[dict]
    errors: list[str]
    skipped: list[str]
    out: Path | None
    voxel_size: VoxelSize | None = None
    swc_units: str = "um"

    @property
    def ok(self) -> bool:
        return self.out is not None

    def format_table(self) -> str:
        """One line per case: name, shape, voxel size, foreground %, SWC nodes, split, problems."""
        head = ("name", "shape (z,y,x)", "voxel µm (z,y,x)", "fg %", "nodes", "split", "problems")
        lines = [head]
        for r in self.rows:
            lines.append((
                r["name"],
                "x".join(str(s) for s in r["shape"]) if r["shape"] else "-",
                " ".join(_num(v) for v in r["voxel_size"]) if r["voxel_size"] else "?" if r["shape"] else "-",
                f"{100 * r['foreground']:.3f}" if r["foreground"] is not None else "-",
                str(r["swc_nodes"]) if r["swc_nodes"] is not None else "-",
                r["split"] or "-",
                ", ".join(dict.fromkeys(r["kinds"])) or "ok",
            ))
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        text = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
        text.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(text)


def _num(v: float) -> str:
    return f"{v:.4g}"


def _vs_text(vs: Sequence[float]) -> str:
    return " x ".join(_num(v) for v in vs) + " µm"


# --------------------------------------------------------------------------------------------- discovery
def _image_suffix(path: Path) -> str:
    """The format suffix as written in the file name (`cell.day1.OME.tif` → `.OME.tif`)."""
    return path.name[len(volume_stem(path)):]


def _image_suffixes() -> tuple[str, ...]:
    return tuple(sorted({s for f in FORMATS.values() for s in f.suffixes}, key=len, reverse=True))


def _is_swc(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.name.lower().endswith(SWC_SUFFIXES)


def _swc_stem(path: Path) -> str:
    """`cell.day1.swc` → `cell.day1`; `cell.v3draw.swc` → `cell` (Vaa3D names traces after their image)."""
    name = path.name
    low = name.lower()
    for suffix in SWC_SUFFIXES:
        if low.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    low = name.lower()
    for suffix in _image_suffixes():
        if low.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _list_swc(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_swc(p))


def _by_name(paths: list[Path], stem, what: str, cases: dict[str, Case], attr: str) -> None:
    """Put every path into the case of its name (creating it); several paths for one name is a problem."""
    groups: dict[str, list[Path]] = {}
    for p in paths:
        groups.setdefault(stem(p), []).append(p)
    for name, group in groups.items():
        case = cases.setdefault(name, Case(name))
        setattr(case, attr, group[0])
        if len(group) > 1:
            listed = ", ".join(p.name for p in group)
            case.fail("duplicate", f"several {what} files for this name ({listed}); keep one")


def _from_folders(images: Path | None, swc: Path | None, labels: Path | None,
                  flat: Path | None) -> list[Case]:
    cases: dict[str, Case] = {}
    if flat is not None:
        _by_name(list_volumes(flat), volume_stem, "image", cases, "image")
        _by_name(_list_swc(flat), _swc_stem, "SWC", cases, "swc")
    if images is not None:
        _by_name(list_volumes(images), volume_stem, "image", cases, "image")
    if swc is not None:
        _by_name(_list_swc(swc), _swc_stem, "SWC", cases, "swc")
    if labels is not None:
        _by_name(list_volumes(labels), volume_stem, "label", cases, "label")
    return [cases[k] for k in sorted(cases)]


def _case_folders(root: Path, skip: set[Path]) -> list[Path]:
    """Folders under `root` that directly hold an image or an SWC (not descending into those)."""
    found = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if is_volume_path(sub) or sub.resolve() in skip:  # an OME-Zarr image, or the output itself
            continue
        if list_volumes(sub) or _list_swc(sub):
            found.append(sub)
        else:
            found.extend(_case_folders(sub, skip))
    return found


def _from_tree(root: Path, skip: set[Path]) -> list[Case]:
    folders = _case_folders(root, skip)
    leaf_count: dict[str, int] = {}
    for f in folders:
        leaf_count[f.name] = leaf_count.get(f.name, 0) + 1
    cases = []
    for f in folders:
        name = f.name if leaf_count[f.name] == 1 else "__".join(f.relative_to(root).parts)
        case = Case(name)
        imgs, swcs = list_volumes(f), _list_swc(f)
        where = f.relative_to(root)
        if len(imgs) > 1:
            listed = ", ".join(p.name for p in imgs)
            case.fail("duplicate", f"folder {where} holds {len(imgs)} images ({listed}); keep exactly one "
                                   "image and one SWC per neuron folder")
        if len(swcs) > 1:
            listed = ", ".join(p.name for p in swcs)
            case.fail("duplicate", f"folder {where} holds {len(swcs)} SWC files ({listed}); keep exactly one "
                                   "per neuron folder")
        case.image = imgs[0] if imgs else None
        case.swc = swcs[0] if swcs else None
        cases.append(case)
    return cases


def _discover(src, images, swc, labels, out: Path) -> tuple[list[Case], str]:
    """The cases and a description of the layout; DatasetError for arguments that cannot work."""
    if src is not None and images is not None:
        raise DatasetError("give either SRC or --images DIR (with --swc/--labels), not both")
    if src is None and images is None:
        raise DatasetError("give SRC (a folder of NAME.<image> + NAME.swc, or one sub-folder per neuron) or "
                           "--images DIR with --swc DIR and/or --labels DIR")
    if src is None and swc is None and labels is None:
        raise DatasetError("--images needs --swc DIR and/or --labels DIR (the ground truth of each image)")
    if src is not None and swc is not None:
        raise DatasetError("--swc goes with --images DIR; with SRC the SWC files sit beside their images")
    for what, folder in (("SRC", src), ("--images", images), ("--swc", swc), ("--labels", labels)):
        if folder is not None and not Path(folder).is_dir():
            raise DatasetError(f"{what} {folder}: no such folder")
    labels = None if labels is None else Path(labels)
    if images is not None:
        cases = _from_folders(Path(images), None if swc is None else Path(swc), labels, None)
        layout = f"images {images}" + (f", SWC {swc}" if swc else "")
        layout += f", labels {labels}" if labels else ""
    else:
        src = Path(src)
        if list_volumes(src) or _list_swc(src):
            cases = _from_folders(None, None, labels, src)
            layout = f"flat folder {src}"
        else:
            cases = _from_tree(src, {out.resolve()})
            if labels is not None:
                by_name = {c.name: c for c in cases}
                for extra in _from_folders(None, None, labels, None):
                    by_name.setdefault(extra.name, Case(extra.name)).label = extra.label
                    by_name[extra.name].problems.extend(extra.problems)
                cases = [by_name[k] for k in sorted(by_name)]
            layout = f"one folder per neuron under {src}"
    if not cases:
        where = src if src is not None else images
        raise DatasetError(f"{where}: no images ({supported_suffixes()}) or SWC files found; expected "
                           "NAME.<image> + NAME.swc files, or one sub-folder per neuron holding one image "
                           "and one SWC")
    return cases, layout


# ------------------------------------------------------------------------------------------------ checks
def _check_case(case: Case, swc_units: str, voxel_size: VoxelSize | None, has_labels: bool) -> None:
    """Run every check of one case, recording its problems (never raising for bad input)."""
    from neurovit.data.swc import read_swc

    if case.image is None:
        if case.swc is not None:
            case.fail("no image", f"{case.swc.name} has no image (expected {case.name}.<image> beside it; "
                                  f"supported: {supported_suffixes()})")
        if case.label is not None:
            case.fail("no image", f"label {case.label.name} has no image")
    elif case.swc is None and case.label is None:
        what = "SWC or label" if has_labels else "SWC"
        case.fail("no swc", f"{case.image.name} has no {what} (expected {case.name}.swc)")

    vol = None
    if case.image is not None:
        try:
            vol = open_volume(case.image, voxel_size=voxel_size)
            _touch(vol)
        except VolumeError as exc:
            case.fail("image", str(exc))
            vol = None
        except Exception as exc:  # noqa: BLE001 — any unreadable file is reported, not raised
            case.fail("image", f"{case.image}: cannot read it ({type(exc).__name__}: {exc}); "
                               "re-export the stack")
            vol = None
    if vol is not None:
        case.shape = vol.shape
        case.voxel_size = None if vol.voxel_size is None else tuple(float(v) for v in vol.voxel_size)
        case.voxel_size_from = vol.metadata.get("voxel_size_from")
        if case.voxel_size is None:
            case.fail("voxel size", f"no voxel size in {case.image}; pass --voxel-size Z Y X")

    morph = None
    if case.swc is not None:
        try:
            morph = read_swc(case.swc, units=swc_units)
        except SWCError as exc:
            case.fail("swc", str(exc))
        except (OSError, ValueError) as exc:
            case.fail("swc", f"{case.swc}: cannot read it ({exc})")
        if morph is not None:
            case.swc_nodes = morph.n_nodes
            if morph.n_nodes == 0:
                case.fail("swc empty", f"{case.swc}: has no nodes")
                morph = None
    if morph is not None and case.shape is not None:
        message = _placement_problem(morph, case.shape, case.voxel_size, case.swc)
        if message:
            case.fail("outside", message)
            morph = None

    if case.label is not None and case.shape is not None:
        _check_label(case)
    elif morph is not None and case.shape is not None and case.voxel_size is not None:
        n = _rendered_foreground(morph, case.shape, case.voxel_size)
        case.foreground = n / math.prod(case.shape)
        if n == 0:
            case.fail("empty mask", f"the mask rendered from {case.swc.name} has no foreground voxel")


def _touch(vol) -> None:
    """Read the first and last slice, so truncated or corrupt pixel data shows up now."""
    np.asarray(vol.array[0])
    np.asarray(vol.array[vol.shape[0] - 1])


def _check_label(case: Case) -> None:
    try:
        lab = open_volume(case.label)
        if lab.shape != case.shape:
            case.fail("label shape", f"label {case.label} has shape {lab.shape} but the image has "
                                     f"{case.shape} (z, y, x); a label must match its image voxel for voxel")
            return
        n, step = 0, max(1, (1 << 24) // max(1, case.shape[1] * case.shape[2]))
        for z0 in range(0, case.shape[0], step):
            n += int(np.count_nonzero(np.asarray(lab.array[z0:z0 + step])))
    except VolumeError as exc:
        case.fail("label", str(exc))
        return
    except Exception as exc:  # noqa: BLE001
        case.fail("label", f"{case.label}: cannot read it ({type(exc).__name__}: {exc})")
        return
    case.foreground = n / math.prod(case.shape)
    if n == 0:
        case.fail("empty mask", f"label {case.label} has no foreground voxel (all zero)")


def _fits(xyz_vox: np.ndarray, shape: Sequence[int]) -> bool:
    """Nodes (x, y, z in voxels) inside the image's index box, with SLACK_VOXELS of slack."""
    limit = np.asarray(shape[::-1], dtype=np.float64) - 1.0  # x, y, z
    lo, hi = xyz_vox.min(axis=0), xyz_vox.max(axis=0)
    return bool((lo >= -SLACK_VOXELS).all() and (hi <= limit + SLACK_VOXELS).all())


def _placement_problem(morph, shape, voxel_size: VoxelSize | None, swc: Path) -> str | None:
    """None when the SWC lies inside its image, else the most likely cause of it lying outside."""
    xyz = morph.xyz
    if morph.units == "um" and voxel_size is None:
        return None  # cannot tell without a voxel size (already an error)
    scale = None if voxel_size is None else np.asarray(voxel_size[::-1], dtype=np.float64)  # x, y, z

    def as_voxels(points: np.ndarray, units: str) -> np.ndarray:
        return points / scale if units == "um" else points

    units = morph.units
    if _fits(as_voxels(xyz, units), shape):
        return None
    other = "voxel" if units == "um" else "um"
    swapped = xyz[:, ::-1]
    can_other = scale is not None
    if can_other and _fits(as_voxels(xyz, other), shape):
        if other == "voxel":
            return (f"{swc.name} lies outside the image in µm but fits it in voxel coordinates: looks like "
                    "voxel units: pass --swc-units voxel")
        return (f"{swc.name} lies outside the image in voxel coordinates but fits it in µm: looks like µm: "
                "pass --swc-units um (or check the voxel size)")
    if _fits(as_voxels(swapped, units), shape):
        return (f"{swc.name} lies outside the image but fits it with x and z swapped: its x and z columns "
                "look exchanged (SWC columns are x y z = image column, row, slice); fix the file")
    if can_other and _fits(as_voxels(swapped, other), shape):
        flag = "--swc-units voxel" if other == "voxel" else "--swc-units um"
        in_units = "voxel units" if other == "voxel" else "µm"
        return (f"{swc.name} fits the image only with x and z swapped and in {in_units}: x and z look "
                f"swapped (fix the file) and pass {flag}")
    # No simple fix: report the extents, in µm when the voxel size is known.
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    img_hi = (np.asarray(shape[::-1], dtype=np.float64) - 1.0)
    unit = "voxels"
    if scale is not None:
        if units == "voxel":
            lo, hi = lo * scale, hi * scale
        img_hi = img_hi * scale
        unit = "µm"
    vox_lo, vox_hi = as_voxels(xyz, units).min(axis=0), as_voxels(xyz, units).max(axis=0)
    limit = np.asarray(shape[::-1], dtype=np.float64) - 1.0
    bad = [a for a, k in zip("xyz", range(3), strict=True)
           if vox_lo[k] < -SLACK_VOXELS or vox_hi[k] > limit[k] + SLACK_VOXELS]
    ext = ", ".join(f"{a} {_num(lo[k])}..{_num(hi[k])}" for k, a in enumerate("xyz"))
    img = ", ".join(f"{a} 0..{_num(img_hi[k])}" for k, a in enumerate("xyz"))
    return (f"{swc.name} extends outside the image along {', '.join(bad)}: SWC {ext} {unit}, image {img} "
            f"{unit}; check that the SWC belongs to this image, its origin and the voxel size")


def _rendered_foreground(morph, shape: Sequence[int], voxel_size: VoxelSize) -> int:
    """Foreground voxels of `render_mask(morph, shape, voxel_size)`, rendered in the SWC's bounding box."""
    from neurovit.data.render import render_mask

    m = morph.to_um(voxel_size) if morph.units == "voxel" else morph
    v = np.asarray(voxel_size, dtype=np.float64)  # z, y, x
    zyx = m.xyz[:, ::-1]
    r = np.maximum(m.radius, 0.5 * v.min())[:, None]
    lo = np.floor((zyx - r).min(axis=0) / v).astype(np.int64) - 2
    hi = np.ceil((zyx + r).max(axis=0) / v).astype(np.int64) + 2
    lo = np.clip(lo, 0, np.asarray(shape) - 1)
    hi = np.clip(hi, -1, np.asarray(shape) - 1)
    if (hi < lo).any():
        return 0
    sub = m.translate(-(lo * v)[::-1])
    return int(np.count_nonzero(render_mask(sub, tuple(int(s) for s in hi - lo + 1), voxel_size)))


def _check_spacing(cases: list[Case]) -> VoxelSize | None:
    """The dataset's voxel size (of the largest group within 10 %); cases outside that group get a problem."""
    known = [c for c in cases if c.voxel_size is not None]
    if not known:
        return None
    groups: list[list[Case]] = []
    for c in known:
        for g in groups:
            if not spacing_differs(c.voxel_size, g[0].voxel_size):
                g.append(c)
                break
        else:
            groups.append([c])
    main = max(groups, key=len)  # first largest group (cases are sorted by name)
    ref = main[0].voxel_size
    if len(groups) > 1:
        names = ", ".join(c.name for c in main[:6]) + (" ..." if len(main) > 6 else "")
        for g in groups:
            if g is main:
                continue
            for c in g:
                c.fail("voxel size", f"voxel size {_vs_text(c.voxel_size)} differs by more than 10 % from "
                                     f"{_vs_text(ref)} ({names}); a dataset has one voxel size: resample "
                                     "this image or prepare it as a separate dataset")
    return ref


# ------------------------------------------------------------------------------------------------ splits
def _check_fractions(split) -> tuple[float, float, float]:
    try:
        f = tuple(float(x) for x in split)
    except (TypeError, ValueError):
        f = ()
    if len(f) != 3 or not all(math.isfinite(x) and x >= 0 for x in f) or sum(f) <= 0:
        raise DatasetError("--split must be three fractions TRAIN VAL TEST >= 0, not all 0 "
                           f"(e.g. 0.6 0.2 0.2), got {split!r}")
    total = sum(f)
    return tuple(x / total for x in f)  # type: ignore[return-value]


def assign_splits(names: Sequence[str], fractions: Sequence[float], seed: int) -> dict[str, str]:
    """Seeded split of `names`: a `default_rng(seed)` permutation of the sorted names, val first, then test,
    then train; with >= 3 names, val and test get at least one each when their fraction is > 0."""
    names = sorted(names)
    n = len(names)
    f_train, f_val, f_test = fractions

    def count(frac: float) -> int:
        k = int(math.floor(frac * n + 0.5))
        return max(1, k) if n >= 3 and frac > 0 else k

    n_val, n_test = count(f_val), count(f_test)
    keep_train = 1 if f_train > 0 else 0
    while n_val + n_test > n - keep_train and (n_val or n_test):
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    order = np.random.default_rng(seed).permutation(n)
    out = {}
    for rank, k in enumerate(order):
        out[names[k]] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return out


# ------------------------------------------------------------------------------------------------ writing
def _place(src: Path, dst: Path, copy: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=False)
        else:
            shutil.copy2(src, dst)
        return
    try:
        os.symlink(src.resolve(), dst, target_is_directory=src.is_dir())
    except OSError as exc:
        raise DatasetError(f"{dst}: cannot create a symbolic link to {src} ({exc}); pass --copy to copy the "
                           "files instead") from None


def _write(out: Path, cases: list[Case], voxel_size: VoxelSize, swc_units: str, *, copy: bool,
           overwrite: bool, meta_extra: dict) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out} is a file; give a folder name")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DatasetError(f"--out {out} exists and is not empty; choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
    tmp.mkdir()
    try:
        volumes = []
        for c in cases:
            entry = {"name": c.name}
            image = f"images/{c.name}{_image_suffix(c.image)}"
            _place(c.image, tmp / image, copy)
            entry["image"] = image
            if c.label is not None:
                label = f"labels/{c.name}{_image_suffix(c.label)}"
                _place(c.label, tmp / label, copy)
                entry["label"] = label
            if c.swc is not None:
                (tmp / "swc").mkdir(exist_ok=True)
                shutil.copyfile(c.swc, tmp / "swc" / f"{c.name}.swc")
                entry["swc"] = f"swc/{c.name}.swc"
            entry.update({
                "shape": [int(s) for s in c.shape], "split": c.split,
                "foreground_fraction": round(float(c.foreground), 6),
                "swc_nodes": c.swc_nodes,
                "voxel_size_zyx_um": [float(v) for v in c.voxel_size],
                "source": {k: str(p.resolve()) for k, p in
                           (("image", c.image), ("swc", c.swc), ("label", c.label)) if p is not None},
            })
            if entry["swc_nodes"] is None:
                del entry["swc_nodes"]
            volumes.append(entry)
        meta = {
            "format": FORMAT,
            "voxel_size_zyx_um": [float(v) for v in voxel_size],
            "swc_units": swc_units,
            "split": {s: [c.name for c in cases if c.split == s] for s in SPLITS},
            "volumes": volumes,
            "prepare": meta_extra,
        }
        (tmp / "dataset.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True),
                                          encoding="utf-8")
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.{secrets.token_hex(4)}.old"
            out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            if old is not None:
                old.rename(out)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
            if old.exists():  # e.g. a file another process holds open: the new dataset is in place all the same
                warnings.warn(f"{out}: written, but the dataset it replaced could not be removed completely; "
                              f"delete {old}", UserWarning, stacklevel=2)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_out(out: Path, cases: list[Case], overwrite: bool) -> None:
    """Refuse an --out that cannot be written, before spending time on the checks."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out} is a file; give a folder name")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DatasetError(f"--out {out} exists and is not empty; choose another --out or pass "
                               "--overwrite")
        real = out.resolve()
        for c in cases:
            for p in (c.image, c.swc, c.label):
                if p is not None and (p.resolve() == real or real in p.resolve().parents):
                    raise DatasetError(f"--out {out} holds the input {p}; --overwrite would delete it: write "
                                       "the dataset to another folder")


# -------------------------------------------------------------------------------------------------- API
def prepare_dataset(out, *, src=None, images=None, swc=None, labels=None, swc_units: str = "um",
                    voxel_size: Sequence[float] | None = None, split: Sequence[float] = (0.6, 0.2, 0.2),
                    seed: int = 0, skip_bad: bool = False, copy: bool = False, overwrite: bool = False,
                    progress: bool = False) -> PrepareReport:
    """Check images + SWC (and/or label) files and write them as a `neurovit-dataset/1` folder at `out`.

    Give `src` (a flat folder of NAME.<image> + NAME.swc, or one sub-folder per neuron) or `images` with
    `swc` and/or `labels` folders. `swc_units` is "um" or "voxel"; `voxel_size` (z, y, x µm) overrides every
    image's. Every problem of every case is collected first; with any, nothing is written (`report.out` is
    None) unless `skip_bad`, which writes the cases without problems and lists the others in
    `report.skipped`. Raises DatasetError for arguments that cannot work (no inputs, bad --split, an
    existing non-empty `out` without `overwrite`, ...).
    """
    out = Path(out)
    aliases = {"um": "um", "µm": "um", "μm": "um", "voxel": "voxel", "voxels": "voxel"}
    units = aliases.get(str(swc_units).lower())
    if units is None:
        raise DatasetError(f"--swc-units must be 'um' or 'voxel', got {swc_units!r}")
    if voxel_size is not None:
        try:
            voxel_size = check_voxel_size(voxel_size, "--voxel-size")
        except VolumeError as exc:
            raise DatasetError(str(exc)) from None
    fractions = _check_fractions(split)
    cases, layout = _discover(src, images, swc, labels, out)
    _check_out(out, cases, overwrite)

    from tqdm.auto import tqdm

    for c in tqdm(cases, desc="prepare", unit="case", disable=not progress):
        _check_case(c, units, voxel_size, labels is not None)
    ref = _check_spacing(cases)

    good = [c for c in cases if not c.problems]
    bad = [c for c in cases if c.problems]
    errors = [f"{c.name}: {m}" for c in bad for _, m in c.problems]

    def report(written: Path | None, skipped: list[str]) -> PrepareReport:
        return PrepareReport([c.row() for c in cases], errors, skipped, written, ref, units)

    if (bad and not skip_bad) or not good:
        return report(None, [])
    for name, s in assign_splits([c.name for c in good], fractions, seed).items():
        next(c for c in good if c.name == name).split = s
    extra = {"layout": layout, "seed": int(seed), "split_fractions": [round(f, 6) for f in fractions],
             "voxel_size_from": "--voxel-size" if voxel_size is not None else "image metadata",
             "linked": not copy, "skipped": [c.name for c in bad]}
    _write(out, good, ref, units, copy=copy, overwrite=overwrite, meta_extra=extra)
    return report(out, [c.name for c in bad])


# -------------------------------------------------------------------------------------------------- CLI
def add_prepare_parser(sub) -> argparse.ArgumentParser:
    """Add `neurovit prepare` to an argparse subparsers object."""
    p = sub.add_parser(
        "prepare", help="check your images + SWC files and write them as a dataset folder for `neurovit fit`",
        description="Check image stacks and their SWC reconstructions (or label images) and write them as a "
        "dataset folder (dataset.yaml, images/ as symlinks or copies, swc/, labels/) with a fixed, seeded "
        "split. Every case is checked first (readable 3D image, known voxel size, one voxel size for all, "
        "SWC parses and lies inside its image, non-empty foreground); with any problem nothing is written "
        "unless --skip-bad. Layouts: SRC = a folder of NAME.<image> + NAME.swc, or one sub-folder per "
        "neuron with one image and one SWC (Gold166-like); or --images DIR with --swc DIR and/or --labels "
        f"DIR, matched by name. Image formats: {supported_suffixes()}.")
    p.add_argument("src", nargs="?", type=Path, default=None, metavar="SRC",
                   help="flat folder of images + SWC, or one sub-folder per neuron")
    p.add_argument("--out", required=True, type=Path, help="dataset folder to create")
    p.add_argument("--images", type=Path, default=None, help="folder of image stacks (instead of SRC)")
    p.add_argument("--swc", type=Path, default=None, help="folder of NAME.swc files (with --images)")
    p.add_argument("--labels", type=Path, default=None, help="folder of label images NAME.<image> (mask > 0)")
    p.add_argument("--swc-units", choices=("um", "voxel"), default="um",
                   help="units of the SWC coordinates: µm (default) or voxel indices of the image")
    p.add_argument("--voxel-size", nargs=3, type=float, default=None, metavar=("Z", "Y", "X"),
                   help="voxel size in µm for every image (overrides the files' metadata)")
    p.add_argument("--split", nargs=3, type=float, default=(0.6, 0.2, 0.2), metavar=("TRAIN", "VAL", "TEST"),
                   help="split fractions (default 0.6 0.2 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--skip-bad", action="store_true",
                   help="write the cases without problems and list the others")
    p.add_argument("--copy", action="store_true", help="copy images/labels instead of linking to them")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_prepare)
    return p


def _run_prepare(args) -> int:
    import sys

    report = prepare_dataset(args.out, src=args.src, images=args.images, swc=args.swc, labels=args.labels,
                             swc_units=args.swc_units, voxel_size=args.voxel_size, split=tuple(args.split),
                             seed=args.seed, skip_bad=args.skip_bad, copy=args.copy, overwrite=args.overwrite,
                             progress=not args.no_progress)
    print(report.format_table())
    if report.errors:
        print(f"\n{len(report.errors)} problem{'s' if len(report.errors) != 1 else ''}:", file=sys.stderr)
        for e in report.errors:
            print(f"  {e}", file=sys.stderr)
    if report.out is None:
        if report.errors and args.skip_bad:
            print("nothing written: no case passed the checks", file=sys.stderr)
        else:
            print(f"nothing written to {args.out}: fix the problems above, or pass --skip-bad to leave those "
                  "cases out", file=sys.stderr)
        return 2
    counts = {s: sum(r["split"] == s for r in report.rows) for s in SPLITS}
    print(f"\nwrote {sum(counts.values())} volumes to {report.out} (train {counts['train']}, "
          f"val {counts['val']}, test {counts['test']}); voxel size {_vs_text(report.voxel_size)}; "
          f"SWC units {report.swc_units}; images {'copied' if args.copy else 'linked'}")
    if report.skipped:
        print(f"left out (--skip-bad): {', '.join(report.skipped)}")
    empty = [s for s, f in zip(SPLITS[1:], args.split[1:], strict=True) if f > 0 and not counts[s]]
    if empty:
        print(f"note: no {' or '.join(empty)} volumes: with fewer than 3 cases every case goes to train")
    return 0

