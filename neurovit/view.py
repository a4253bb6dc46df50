"""`neurovit view`: a stack with its probability, mask and traced tree in napari, overlaid in µm.

    neurovit view STACK [--pred P] [--mask M] [--swc S] [--level N] [--voxel-size VZ VY VX]
                        [--screenshot PNG] [--3d]

napari is an optional extra (``pip install 'neurovit[view]'``); the core install does not need it. The layers
are built by `build_layers`, which never imports napari, as napari "layer data tuples" `(data, kwargs,
layer_type)`:

* the image (grey), the probability (magma, contrast (0, 1), additive) and the mask (labels): for OME-Zarr
  every pyramid level from `level` down as a list of lazy zarr arrays (``multiscale=True``), so napari reads
  only the chunks on screen; other formats as their lazy (memory-mapped) array;
* the tree: a "shapes" layer of paths (one polyline per unbranched section, so each edge is drawn once) and a
  "points" layer of the nodes (diameter = 2 × radius), both in µm and (z, y, x) order.

Every layer carries ``scale`` = its voxel size (z, y, x) in µm, so everything overlays in µm. The image's
voxel size comes from `voxel_size`, else the file, else a probability/mask file on the same grid, else 1 µm
(then the layer name and metadata say so). A probability or mask with the image's full-resolution shape is on
its grid (that is how `neurovit predict` writes them) and takes the image's voxel size. A voxel-unit SWC is
converted to µm with the image's voxel size.

``--screenshot PNG`` renders without an event loop (Qt's offscreen platform) and writes the canvas to PNG.
Qt 5's offscreen platform has OpenGL only through an X display: without ``$DISPLAY`` a private Xvfb is
started when it is installed (``apt-get install xvfb``), else the error says what to do.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import math
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from neurovit.data.swc import Morphology, read_swc, xyz_to_zyx
from neurovit.data.volumes import check_voxel_size, open_volume
from neurovit.errors import NeurovitError

__all__ = ["LayerSpec", "add_view_parser", "build_layers", "main", "tree_paths", "view"]

PathLike = str | os.PathLike[str]
VoxelSize = tuple[float, float, float]
NAPARI_MISSING = "napari is not installed: pip install 'neurovit[view]'"
UNKNOWN_NOTE = "voxel size unknown: 1 µm"
SAMPLE_VOXELS = 1 << 20  # voxels read (from the coarsest level) to choose the image's contrast limits
SAMPLE_SLICES = 8


class LayerSpec(NamedTuple):
    """One napari layer data tuple: `viewer._add_layer_from_data(*spec)` or `viewer.add_<layer_type>`."""

    data: Any
    kwargs: dict
    layer_type: str  # "image" | "labels" | "shapes" | "points"


@dataclass
class _Volume:
    """A volume opened for viewing: lazy arrays from the chosen level down, and per-level factors."""

    path: Path
    name: str
    levels: list[Any]  # lazy (Z, Y, X) arrays, finest first
    full_shape: tuple[int, int, int]  # level-0 shape
    file_voxel_size: VoxelSize | None  # level-0 voxel size recorded in the file
    factor: np.ndarray  # voxel size of the first listed level / voxel size of level 0, per axis

    def scale(self, voxel_size0: VoxelSize) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.asarray(voxel_size0) * self.factor)  # type: ignore[return-value]

    @property
    def data(self) -> Any:
        return self.levels if len(self.levels) > 1 else self.levels[0]

    @property
    def multiscale(self) -> bool:
        return len(self.levels) > 1


def _open(path: PathLike, level: int, *, image: bool) -> _Volume:
    """Open `path` lazily; OME-Zarr: every level from `level` (the image's `level` must exist, a
    probability/mask pyramid is clipped to its coarsest level); other formats: level 0 (error for the image)."""
    path = Path(path)
    volume = open_volume(path, level=level if image else 0)
    meta = volume.metadata
    if volume.format != "ome-zarr":
        return _Volume(path, volume.name, [volume.array], volume.shape, volume.voxel_size, np.ones(3))
    from neurovit.data.omezarr import read_omezarr

    n_levels = int(meta["levels"])
    first = int(meta["level"]) if image else min(int(level) % n_levels if level < 0 else level, n_levels - 1)
    arrays = [volume.array if n == meta["level"] else read_omezarr(path, n)[0] for n in range(first, n_levels)]
    shapes = [tuple(int(s) for s in shape) for shape in meta["shapes"]]
    sizes = meta["voxel_sizes"]
    if sizes[0] is not None and sizes[first] is not None:
        factor = np.asarray(sizes[first], dtype=float) / np.asarray(sizes[0], dtype=float)
    else:
        factor = np.asarray(shapes[0], dtype=float) / np.asarray(shapes[first], dtype=float)
    return _Volume(path, volume.name, arrays, shapes[0], sizes[0], factor)


def _sample(array: Any, budget: int = SAMPLE_VOXELS) -> np.ndarray:
    """A few evenly spaced z slices of `array`, strided in y and x: about `budget` voxels, never the whole."""
    nz, ny, nx = (int(s) for s in array.shape)
    zs = np.unique(np.linspace(0, nz - 1, min(nz, SAMPLE_SLICES)).round().astype(int))
    step = max(1, math.ceil(math.sqrt(ny * nx * len(zs) / budget)))
    return np.concatenate([np.asarray(array[int(z), ::step, ::step]).ravel() for z in zs])


def _contrast(array: Any) -> tuple[float, float]:
    values = _sample(array)
    values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def tree_paths(morph: Morphology) -> list[np.ndarray]:
    """Node indices of every unbranched section: from a root or branch point through single-child nodes to
    the next branch point or tip. Every edge lies in exactly one path; sum(len(p) - 1) == nodes - roots."""
    parent = morph.parent
    children = np.bincount(parent[parent >= 0], minlength=morph.n_nodes)
    only_child = np.full(morph.n_nodes, -1, dtype=np.int64)
    has_parent = np.flatnonzero(parent >= 0)
    only_child[parent[has_parent]] = has_parent  # meaningful where children == 1
    paths = []
    for child in has_parent:
        start = parent[child]
        if parent[start] >= 0 and children[start] == 1:
            continue  # an inner edge: covered by the section through `start`
        path = [start, child]
        while children[path[-1]] == 1:
            path.append(only_child[path[-1]])
        paths.append(np.asarray(path, dtype=np.int64))
    return paths


def _tree_layers(swc: PathLike | Morphology, voxel_size0: VoxelSize, note: str | None) -> list[LayerSpec]:
    morph = swc if isinstance(swc, Morphology) else read_swc(swc)
    name = Path(morph.source).name if morph.source else "tree"
    units = morph.units
    um = morph.to_um(voxel_size0) if units == "voxel" else morph
    zyx = xyz_to_zyx(um.xyz).astype(np.float64)
    in_plane = float(max(voxel_size0[1], voxel_size0[2]))
    meta = {"source": morph.source, "units": "um", "units_in_file": units, "nodes": um.n_nodes,
            "roots": len(um.roots), "edges": int((um.parent >= 0).sum())}
    if note and units == "voxel":
        meta["warning"] = note
    suffix = f" ({note})" if note and units == "voxel" else ""
    layers = []
    paths = [zyx[p] for p in tree_paths(um)]
    if paths:
        layers.append(LayerSpec(paths, {
            "name": f"{name} tree{suffix}", "scale": (1.0, 1.0, 1.0), "shape_type": "path",
            "edge_color": "cyan", "edge_width": in_plane, "face_color": "transparent", "blending": "additive",
            "metadata": {**meta, "sections": len(paths)}}, "shapes"))
    size = np.maximum(2.0 * um.radius, in_plane)
    layers.append(LayerSpec(zyx, {
        "name": f"{name} nodes{suffix}", "scale": (1.0, 1.0, 1.0), "size": size, "face_color": "yellow",
        "blending": "additive", "metadata": meta}, "points"))
    return layers


def build_layers(image: PathLike, pred: PathLike | None = None, mask: PathLike | None = None,
                 swc: PathLike | Morphology | None = None, *, level: int = 0,
                 voxel_size: Sequence[float] | None = None) -> list[LayerSpec]:
    """napari layer data tuples for an image and optionally its probability, mask and SWC tree (no napari
    import, no whole-array read): image, probability and mask as lazy (multiscale for OME-Zarr, from
    pyramid level `level` down) arrays with `scale` in µm; the tree as shapes (paths) + points in µm, (z, y, x).

    `voxel_size` (z, y, x µm, at full resolution) overrides the image file's."""
    img = _open(image, level, image=True)
    others = {kind: _open(path, level, image=False) for kind, path in (("pred", pred), ("mask", mask))
              if path is not None}
    same_grid = {kind: vol.full_shape == img.full_shape for kind, vol in others.items()}
    note = None
    if voxel_size is not None:
        vs0, source = check_voxel_size(voxel_size, "voxel_size"), "argument"
    elif img.file_voxel_size is not None:
        vs0, source = img.file_voxel_size, "file"
    else:
        found = [vol for kind, vol in others.items() if same_grid[kind] and vol.file_voxel_size is not None]
        if found:
            vs0, source = found[0].file_voxel_size, f"{found[0].path.name} (same grid)"
        else:
            vs0, source, note = (1.0, 1.0, 1.0), "unknown", UNKNOWN_NOTE

    meta = {"source": str(img.path), "voxel_size_from": source, "voxel_size_level0": tuple(vs0)}
    if note:
        meta["warning"] = note
    layers = [LayerSpec(img.data, {
        "name": img.name + (f" ({note})" if note else ""), "scale": img.scale(vs0), "multiscale": img.multiscale,
        "colormap": "gray", "blending": "additive", "contrast_limits": _contrast(img.levels[-1]),
        "metadata": meta}, "image")]

    for kind, vol in others.items():
        own = vs0 if same_grid[kind] or vol.file_voxel_size is None else vol.file_voxel_size
        vmeta = {"source": str(vol.path), "voxel_size_level0": tuple(own),
                 "voxel_size_from": "image (same grid)" if same_grid[kind] else
                 ("file" if vol.file_voxel_size is not None else "image")}
        common = {"name": vol.name, "scale": vol.scale(own), "multiscale": vol.multiscale, "metadata": vmeta}
        if kind == "pred":
            layers.append(LayerSpec(vol.data, {**common, "colormap": "magma", "blending": "additive",
                                               "contrast_limits": (0.0, 1.0)}, "image"))
        else:
            layers.append(LayerSpec(vol.data, {**common, "blending": "translucent", "opacity": 0.5}, "labels"))

    if swc is not None:
        layers += _tree_layers(swc, vs0, note)
    return layers


# ----------------------------------------------------------------------------------------------- napari
def _import_napari():
    try:
        import napari
    except ImportError:
        raise NeurovitError(NAPARI_MISSING) from None
    return napari


def _napari_installed() -> bool:
    try:
        return importlib.util.find_spec("napari") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules["napari"] is None
        return False


_XVFB: subprocess.Popen | None = None


def _ensure_display() -> None:
    """Qt 5's offscreen platform gets OpenGL only through an X display: start a private Xvfb (once per
    process, stopped at exit) when there is none."""
    global _XVFB
    if os.environ.get("DISPLAY") or os.environ.get("QT_QPA_PLATFORM", "offscreen") != "offscreen":
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise NeurovitError("--screenshot needs OpenGL, which Qt's offscreen platform gets from an X display: "
                            "install Xvfb (apt-get install xvfb) or run under xvfb-run")
    read, write = os.pipe()
    try:
        _XVFB = subprocess.Popen([xvfb, "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten",
                                  "tcp"], pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write)
        number = _read_line(read, timeout=20.0)
    finally:
        os.close(read)  # only after the whole line: Xvfb would die of SIGPIPE writing its newline
    if not number.isdigit():
        _stop_xvfb()
        raise NeurovitError("--screenshot: Xvfb did not start; run under xvfb-run instead")
    atexit.register(_stop_xvfb)
    os.environ["DISPLAY"] = f":{number}"


def _read_line(fd: int, timeout: float) -> str:
    """Read from `fd` up to a newline (or end of file), giving up after `timeout` seconds."""
    data, deadline = b"", time.monotonic() + timeout
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 64) if ready else b""
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _stop_xvfb() -> None:
    global _XVFB
    if _XVFB is not None:
        _XVFB.terminate()
        try:
            _XVFB.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _XVFB.kill()
        _XVFB = None


def _render(viewer) -> np.ndarray:
    """The canvas as an (H, W, 4) uint8 array. The vispy scene is rendered into an offscreen framebuffer:
    napari's `screenshot` grabs the Qt widget's framebuffer, which is black under the offscreen platform."""
    canvas = getattr(getattr(viewer.window, "_qt_viewer", None), "canvas", None)
    scene = getattr(canvas, "_scene_canvas", None)
    if scene is not None:
        return np.asarray(scene.render())
    return np.asarray(viewer.screenshot(canvas_only=True, flash=False))


def view(image: PathLike, pred: PathLike | None = None, mask: PathLike | None = None,
         swc: PathLike | Morphology | None = None, *, level: int = 0, voxel_size: Sequence[float] | None = None,
         screenshot: PathLike | None = None, ndisplay: int = 2) -> Path | None:
    """Open the layers of `build_layers` in napari and run its event loop; with `screenshot`, render the
    canvas offscreen to that PNG instead (no window, no event loop) and return its path."""
    layers = build_layers(image, pred, mask, swc, level=level, voxel_size=voxel_size)
    if screenshot is not None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        if not _napari_installed():
            raise NeurovitError(NAPARI_MISSING)
        _ensure_display()  # before napari imports PyOpenGL, which picks its platform from $DISPLAY then
    napari = _import_napari()
    viewer = napari.Viewer(title=f"neurovit: {Path(image).name}", ndisplay=ndisplay, show=screenshot is None)
    for spec in layers:
        getattr(viewer, f"add_{spec.layer_type}")(spec.data, **spec.kwargs)
    viewer.reset_view()
    if screenshot is None:
        napari.run()
        return None
    try:
        pixels = _render(viewer)
    finally:
        viewer.close()
    import matplotlib.image

    out = Path(screenshot)
    out.parent.mkdir(parents=True, exist_ok=True)
    matplotlib.image.imsave(out, pixels)
    return out


# ----------------------------------------------------------------------------------------------- CLI
def add_view_parser(sub) -> argparse.ArgumentParser:
    """Add the `view` subcommand to an argparse subparsers object."""
    p = sub.add_parser("view", help="show a stack with its probability, mask and SWC in napari (neurovit[view])",
                       description="Open STACK (TIFF, .v3draw or OME-Zarr, lazily and multiscale) with the "
                       "probability, mask and traced SWC of `neurovit predict` in napari, all in µm. Needs "
                       "the optional extra: pip install 'neurovit[view]'.")
    p.add_argument("stack", type=Path, help="the image stack (OME-Zarr folders open lazily, every level)")
    p.add_argument("--pred", type=Path, default=None, help="probability volume (NAME_prob.*)")
    p.add_argument("--mask", type=Path, default=None, help="mask volume (NAME_mask.*), shown as labels")
    p.add_argument("--swc", type=Path, default=None, help="traced tree (NAME.swc; µm, or voxels by its header)")
    p.add_argument("--level", type=int, default=0,
                   help="finest OME-Zarr pyramid level to show (0 = full resolution; default %(default)s)")
    p.add_argument("--voxel-size", nargs=3, type=float, default=None, metavar=("VZ", "VY", "VX"),
                   help="voxel size in µm (z, y, x) at full resolution; overrides the file's")
    p.add_argument("--screenshot", type=Path, default=None, metavar="PNG",
                   help="render offscreen (no window) and save the canvas to this PNG")
    p.add_argument("--3d", dest="ndisplay", action="store_const", const=3, default=2,
                   help="start in 3D rendering instead of 2D slices")
    p.set_defaults(func=_run_view)
    return p


def _run_view(args) -> int:
    out = view(args.stack, args.pred, args.mask, args.swc, level=args.level, voxel_size=args.voxel_size,
               screenshot=args.screenshot, ndisplay=args.ndisplay)
    if out is not None:
        print(f"wrote {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m neurovit.view ...` (the same as `neurovit view ...`)."""
    parser = argparse.ArgumentParser(prog="neurovit")
    sub = parser.add_subparsers(dest="command", required=True)
    add_view_parser(sub)
    args = parser.parse_args(["view", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except NeurovitError as exc:
        print(f"neurovit view: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
