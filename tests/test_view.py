"""`neurovit view`: the napari layers built without napari, the CLI, and one offscreen screenshot (slow,
only where napari is installed: `pip install 'neurovit[view]'`)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neurovit.data.omezarr import read_omezarr
from neurovit.data.swc import Morphology, write_swc
from neurovit.data.volumes import write_volume
from neurovit.errors import NeurovitError
from neurovit.view import NAPARI_MISSING, UNKNOWN_NOTE, add_view_parser, build_layers, tree_paths, view

VS = (2.0, 0.5, 0.25)  # z, y, x µm
SHAPE = (8, 64, 48)
# a root, a chain, a fork with two branches, a second root with one child and a lone root:
# 9 nodes, 3 roots, 6 edges, 4 unbranched sections
XYZ = np.array([[4, 6, 2], [8, 6, 2], [12, 6, 3], [16, 10, 3], [16, 2, 4], [20, 12, 5], [40, 50, 6],
                [44, 50, 6], [30, 30, 1]], float)
PARENT = np.array([-1, 0, 1, 2, 2, 3, -1, 6, -1])
RADIUS = np.array([2.0, 1.0, 1.0, 0.5, 0.5, 0.0, 1.0, 1.0, 1.5])


def _image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 200, SHAPE, dtype=np.uint8)


def _swc(path: Path, units: str) -> Path:
    return write_swc(Morphology(XYZ, RADIUS, np.full(len(XYZ), 3), PARENT, units=units), path)


def _by_type(layers, kind):
    return [spec for spec in layers if spec.layer_type == kind]


@pytest.fixture
def zarr_set(tmp_path: Path):
    """An image, probability and mask as 3-level OME-Zarr (chunks (4, 16, 16)) with voxel size VS."""
    image = write_volume(tmp_path / "cell.ome.zarr", _image(), voxel_size=VS, chunks=(4, 16, 16), n_levels=3)
    prob = (_image(1) / 255.0).astype(np.float32)
    pred = write_volume(tmp_path / "cell_prob.ome.zarr", prob, voxel_size=VS, chunks=(4, 16, 16), n_levels=3)
    mask = write_volume(tmp_path / "cell_mask.ome.zarr", (prob > 0.5).astype(np.uint8), voxel_size=VS,
                        chunks=(4, 16, 16), n_levels=3, labels=True)
    return image, pred, mask


def test_omezarr_layers_are_multiscale_in_um(zarr_set):
    image, pred, mask = zarr_set
    layers = build_layers(image, pred, mask)
    assert [s.layer_type for s in layers] == ["image", "image", "labels"]
    _, _, meta = read_omezarr(image)
    assert meta["levels"] == 3
    for spec in layers:
        data, kw = spec.data, spec.kwargs
        assert kw["multiscale"] is True and len(data) == 3
        assert [tuple(a.shape) for a in data] == [tuple(s) for s in meta["shapes"]]
        assert [tuple(a.shape) for a in data] == [(8, 64, 48), (8, 32, 24), (8, 16, 12)]
        assert not any(isinstance(a, np.ndarray) for a in data)  # zarr arrays, read chunk by chunk
        assert kw["scale"] == pytest.approx(VS)  # level 0's voxel size in µm; napari scales the others
    img, prob, labels = (s.kwargs for s in layers)
    assert img["colormap"] == "gray" and img["metadata"]["voxel_size_from"] == "file"
    lo, hi = img["contrast_limits"]
    assert 0 <= lo < hi <= 255
    assert prob["colormap"] == "magma" and prob["contrast_limits"] == (0.0, 1.0)
    assert prob["blending"] == "additive" and img["blending"] == "additive"
    assert labels["name"] == "cell_mask" and "colormap" not in labels


def test_level_starts_the_pyramid_at_that_level(zarr_set):
    image, pred, _ = zarr_set
    layers = build_layers(image, pred, level=1)
    for spec in layers:
        assert [tuple(a.shape) for a in spec.data] == [(8, 32, 24), (8, 16, 12)]
        assert spec.kwargs["scale"] == pytest.approx((2.0, 1.0, 0.5))
    coarsest = build_layers(image, level=2)[0]
    assert coarsest.kwargs["multiscale"] is False and tuple(coarsest.data.shape) == (8, 16, 12)
    assert coarsest.kwargs["scale"] == pytest.approx((2.0, 2.0, 1.0))


def test_omezarr_is_not_read_whole(zarr_set):
    """Level-0 chunks replaced by garbage: building the layers still works (nothing read from level 0)."""
    image, pred, mask = zarr_set
    level0 = [image / "s0", pred / "s0", mask / "s0"]
    chunks = [f for d in level0 for f in d.rglob("*") if f.is_file() and not f.name.startswith((".", "zarr"))]
    assert len(chunks) >= 3 * (8 // 4) * (64 // 16) * (48 // 16)
    for f in chunks:
        f.write_bytes(b"not a chunk")
    layers = build_layers(image, pred, mask)
    with pytest.raises(Exception):  # noqa: B017 - the corrupted level really is unreadable
        np.asarray(layers[0].data[0][0:4, 0:16, 0:16])
    assert np.asarray(layers[0].data[2][:]).shape == (8, 16, 12)  # other levels intact


def test_tiff_voxel_size_override_and_unknown(tmp_path):
    tif = write_volume(tmp_path / "a.tif", _image(), voxel_size=VS)
    spec = build_layers(tif)[0]
    assert spec.kwargs["multiscale"] is False and spec.kwargs["scale"] == pytest.approx(VS)
    override = build_layers(tif, voxel_size=(1.0, 0.2, 0.2))[0]
    assert override.kwargs["scale"] == pytest.approx((1.0, 0.2, 0.2))
    assert override.kwargs["metadata"]["voxel_size_from"] == "argument"

    raw = write_volume(tmp_path / "b.v3draw", _image())  # the format records no voxel size
    unknown = build_layers(raw)[0]
    assert unknown.kwargs["scale"] == (1.0, 1.0, 1.0)
    assert UNKNOWN_NOTE in unknown.kwargs["name"] and unknown.kwargs["metadata"]["warning"] == UNKNOWN_NOTE
    # a probability on the same grid that records a voxel size fixes the image's (predict writes one)
    prob = write_volume(tmp_path / "b_prob.tif", np.zeros(SHAPE, np.float32), voxel_size=VS)
    image, pred = build_layers(raw, pred=prob)
    assert image.kwargs["scale"] == pytest.approx(VS) and pred.kwargs["scale"] == pytest.approx(VS)
    assert "warning" not in image.kwargs["metadata"]


@pytest.mark.parametrize("units", ["um", "voxel"])
def test_tree_layers_are_the_swc_nodes_in_um_zyx(tmp_path, units):
    tif = write_volume(tmp_path / "a.tif", _image(), voxel_size=VS)
    swc = _swc(tmp_path / f"tree_{units}.swc", units)
    layers = build_layers(tif, swc=swc)
    (shapes,), (points,) = _by_type(layers, "shapes"), _by_type(layers, "points")
    vz, vy, vx = VS
    factor = np.array([vz, vy, vx]) if units == "voxel" else np.ones(3)
    expected = np.stack([XYZ[:, 2], XYZ[:, 1], XYZ[:, 0]], axis=1) * factor  # z, y, x in µm
    # read_swc orders nodes parents-first (breadth-first): match every point to its SWC node
    order = [int(np.flatnonzero(np.isclose(expected, q).all(axis=1))[0]) for q in points.data]
    assert sorted(order) == list(range(len(XYZ)))
    assert points.data == pytest.approx(expected[order])
    assert points.kwargs["scale"] == (1.0, 1.0, 1.0)
    radius_um = RADIUS * (vx if units == "voxel" else 1.0)
    assert points.kwargs["size"] == pytest.approx(np.maximum(2 * radius_um, max(vy, vx))[order])

    paths = shapes.data
    assert shapes.kwargs["shape_type"] == "path" and shapes.kwargs["scale"] == (1.0, 1.0, 1.0)
    assert sum(len(p) - 1 for p in paths) == len(XYZ) - 3 == 6  # edges = nodes - roots
    drawn = set()
    for p in paths:
        for a, b in zip(p[:-1], p[1:]):
            i, j = (int(np.flatnonzero(np.isclose(expected, q).all(axis=1))[0]) for q in (a, b))
            drawn.add((i, j))
    assert drawn == {(int(PARENT[c]), c) for c in range(len(XYZ)) if PARENT[c] >= 0}
    assert len(paths) == 4  # root→fork, fork→tip, fork→tip, second root→child (the lone root: a point)
    assert shapes.kwargs["metadata"]["edges"] == 6 and points.kwargs["metadata"]["roots"] == 3


def test_tree_paths_cover_every_edge_once():
    rng = np.random.default_rng(3)
    parent = np.array([-1] + [int(rng.integers(0, i)) for i in range(1, 200)])
    parent[[50, 120]] = -1
    morph = Morphology(rng.random((200, 3)), np.ones(200), np.zeros(200), parent)
    edges = [(int(p[k]), int(p[k + 1])) for p in tree_paths(morph) for k in range(len(p) - 1)]
    assert len(edges) == len(set(edges)) == 200 - 3
    assert all(parent[child] == par for par, child in edges)


def test_view_without_napari_says_how_to_install(tmp_path, monkeypatch):
    tif = write_volume(tmp_path / "a.tif", _image(), voxel_size=VS)
    monkeypatch.setitem(sys.modules, "napari", None)  # `import napari` raises ImportError
    with pytest.raises(NeurovitError) as err:
        view(tif)
    assert str(err.value) == NAPARI_MISSING == "napari is not installed: pip install 'neurovit[view]'"


def test_view_subcommand(tmp_path, monkeypatch):
    parser = argparse.ArgumentParser()
    add_view_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["view", "s.ome.zarr", "--pred", "p.tif", "--mask", "m.tif", "--swc", "t.swc",
                              "--level", "1", "--voxel-size", "2", "0.5", "0.5", "--screenshot", "x.png", "--3d"])
    assert (args.stack, args.pred, args.mask, args.swc) == tuple(map(Path, ("s.ome.zarr", "p.tif", "m.tif", "t.swc")))
    assert (args.level, args.voxel_size, args.screenshot, args.ndisplay) == (1, [2.0, 0.5, 0.5], Path("x.png"), 3)
    seen = {}

    def fake_view(*a, **kw):
        seen.update(args=a, **kw)
        return kw["screenshot"]

    monkeypatch.setattr("neurovit.view.view", fake_view)
    assert args.func(args) == 0
    assert seen["args"][0] == Path("s.ome.zarr") and seen["level"] == 1 and seen["ndisplay"] == 3
    defaults = parser.parse_args(["view", "s.tif"])
    assert (defaults.pred, defaults.level, defaults.screenshot, defaults.ndisplay) == (None, 0, None, 2)


@pytest.mark.slow
def test_screenshot_offscreen_is_not_blank(tmp_path):
    pytest.importorskip("napari")
    if not os.environ.get("DISPLAY") and shutil.which("Xvfb") is None:
        pytest.skip("no X display and no Xvfb: Qt's offscreen platform has no OpenGL")
    image = write_volume(tmp_path / "cell.ome.zarr", _image(), voxel_size=VS, chunks=(4, 16, 16), n_levels=2)
    swc = _swc(tmp_path / "tree.swc", "voxel")
    png = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-m", "neurovit.view", str(image), "--swc", str(swc), "--screenshot",
                           str(png)], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    colours = np.unique(pixels[..., :3].reshape(-1, 3), axis=0)
    assert len(colours) > 10  # the image (grey levels) and the tree were drawn, not one background colour
