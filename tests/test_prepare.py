"""`neurovit prepare`: user images + SWC → a checked dataset folder that `open_dataset` (and `fit`) reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from neurovit.cli import main
from neurovit.data.folder import ensure_label, open_dataset
from neurovit.data.prepare import assign_splits, prepare_dataset
from neurovit.data.render import render_mask
from neurovit.data.swc import read_swc
from neurovit.data.volumes import open_volume, write_volume
from neurovit.errors import DatasetError

VS = (1.0, 0.5, 0.5)  # z, y, x µm: the image is 9 µm deep and 19.5 µm wide, so swaps and units show
SHAPE = (10, 40, 40)
NAMES = ("alpha", "beta", "cell.day1", "cell.day2", "gamma")


def swc_text(x=(2.0, 18.0), y=10.0, z=5.0, n=6, radius=1.0, swap=False) -> str:
    """A straight line of nodes along x (µm by default), with x and z exchanged when `swap`."""
    rows = ["# test neuron"]
    for i, xi in enumerate(np.linspace(*x, n)):
        px, py, pz = (z, y, xi) if swap else (xi, y, z)
        rows.append(f"{i + 1} {1 if i == 0 else 3} {px:.3f} {py:.3f} {pz:.3f} {radius} {i if i else -1}")
    return "\n".join(rows) + "\n"


def image(seed=0, shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 200, shape, dtype=np.uint8)


def make_case(folder: Path, name: str, *, vs=VS, swc: str | None = None, suffix=".tif", seed=0,
              image_name: str | None = None, swc_name: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_volume(folder / (image_name or f"{name}{suffix}"), image(seed), voxel_size=vs)
    (folder / (swc_name or f"{name}.swc")).write_text(swc_text() if swc is None else swc)


def make_flat(folder: Path, names=NAMES, **kw) -> Path:
    for i, name in enumerate(names):
        make_case(folder, name, seed=i, **kw)
    return folder


def only_error(report, name: str) -> str:
    errs = [e for e in report.errors if e.startswith(f"{name}: ")]
    assert len(errs) == 1, report.errors
    return errs[0]


# ------------------------------------------------------------------------------------------- good inputs
def test_flat_folder_becomes_a_dataset_open_dataset_reads(tmp_path):
    src = make_flat(tmp_path / "src")
    out = tmp_path / "ds"
    report = prepare_dataset(out, src=src)
    assert report.errors == [] and report.skipped == [] and report.out == out

    ds = open_dataset(out)
    assert sorted(r.name for r in ds.records) == sorted(NAMES)  # dotted names stay distinct
    assert ds.voxel_size == pytest.approx(VS)
    assert ds.swc_units == "um"
    for r in ds.records:
        assert r.image.is_symlink() and r.image.resolve() == (src / f"{r.name}.tif").resolve()
        assert r.image.name == f"{r.name}.tif"
        assert r.label is None
        assert not r.swc.is_symlink() and r.swc.read_text() == (src / f"{r.name}.swc").read_text()
    assert not (out / "labels").exists()  # SWC-only: fit renders the masks itself

    # Split: 5 cases at 0.6/0.2/0.2 → 3/1/1, every name once, the mapping agrees with the volumes.
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta["format"] == "neurovit-dataset/1" and meta["swc_units"] == "um"
    assert [len(meta["split"][s]) for s in ("train", "val", "test")] == [3, 1, 1]
    assert sorted(sum(meta["split"].values(), [])) == sorted(NAMES)
    for v in meta["volumes"]:
        assert v["name"] in meta["split"][v["split"]]
        assert v["shape"] == list(SHAPE) and v["swc_nodes"] == 6
    assert {r.name: r.split for r in ds.records} == {v["name"]: v["split"] for v in meta["volumes"]}

    # Foreground % is that of the full mask fit would render from the SWC.
    m = read_swc(src / "alpha.swc")
    full = render_mask(m, SHAPE, VS)
    row = next(r for r in report.rows if r["name"] == "alpha")
    assert full.sum() > 0 and row["foreground"] == pytest.approx(full.sum() / full.size)
    record = next(r for r in ds.records if r.name == "alpha")
    cached = open_volume(ensure_label(record, ds, tmp_path / "cache")).read()
    assert np.array_equal(cached > 0, full)

    table = report.format_table()
    assert "cell.day1" in table and "10x40x40" in table and "ok" in table


def test_split_is_seeded_and_deterministic(tmp_path):
    src = make_flat(tmp_path / "src")
    a = prepare_dataset(tmp_path / "a", src=src, seed=3)
    b = prepare_dataset(tmp_path / "b", src=src, seed=3)
    splits = lambda rep: {r["name"]: r["split"] for r in rep.rows}  # noqa: E731
    assert splits(a) == splits(b)
    assert yaml.safe_load((tmp_path / "a" / "dataset.yaml").read_text())["split"] == \
        yaml.safe_load((tmp_path / "b" / "dataset.yaml").read_text())["split"]
    # Other seeds give other splits (at least one of ten), with the same counts.
    others = [assign_splits(NAMES, (0.6, 0.2, 0.2), s) for s in range(10)]
    assert any(o != splits(a) for o in others)
    assert all(sorted(o.values()) == ["test", "train", "train", "train", "val"] for o in others)
    # Small sets: >= 3 cases keep one val and one test; 2 cases all go to train.
    assert sorted(assign_splits(["a", "b", "c"], (0.8, 0.1, 0.1), 0).values()) == ["test", "train", "val"]
    assert sorted(assign_splits(["a", "b"], (0.6, 0.2, 0.2), 0).values()) == ["train", "train"]


def test_copy_writes_real_files(tmp_path):
    src = make_flat(tmp_path / "src", names=("a", "b"))
    out = tmp_path / "ds"
    prepare_dataset(out, src=src, copy=True)
    for name in ("a", "b"):
        img = out / "images" / f"{name}.tif"
        assert img.is_file() and not img.is_symlink()
        assert img.read_bytes() == (src / f"{name}.tif").read_bytes()
    assert yaml.safe_load((out / "dataset.yaml").read_text())["prepare"]["linked"] is False


def test_gold166_like_tree_with_mixed_formats(tmp_path):
    from neurovit.data.v3draw import write_v3draw

    src = tmp_path / "gold"
    make_case(src / "n1", "n1", image_name="stack.tif", swc_name="trace.swc")
    (src / "n2").mkdir(parents=True)
    tifffile.imwrite(src / "n2" / "img.ome.tif", image(1), metadata={
        "axes": "ZYX", "PhysicalSizeX": VS[2], "PhysicalSizeY": VS[1], "PhysicalSizeZ": VS[0]})
    (src / "n2" / "img.ome.tif.swc").write_text(swc_text(y=12.0))
    assert open_volume(src / "n2" / "img.ome.tif").voxel_size == pytest.approx(VS)
    (src / "group" / "n3").mkdir(parents=True)  # a deeper level works too
    write_v3draw(src / "group" / "n3" / "x.v3draw", image(2))
    (src / "group" / "n3" / "x.v3draw.swc").write_text(swc_text(y=8.0))

    out = tmp_path / "ds"
    report = prepare_dataset(out, src=src)  # v3draw records no voxel size
    assert report.out is None and not out.exists()
    msg = only_error(report, "n3")
    assert "no voxel size in" in msg and "x.v3draw" in msg and "pass --voxel-size Z Y X" in msg

    report = prepare_dataset(out, src=src, voxel_size=VS)
    assert report.errors == []
    ds = open_dataset(out)
    assert sorted(r.name for r in ds.records) == ["n1", "n2", "n3"]
    names = {r.name: r.image.name for r in ds.records}
    assert names == {"n1": "n1.tif", "n2": "n2.ome.tif", "n3": "n3.v3draw"}
    assert all(r.swc.name == f"{r.name}.swc" for r in ds.records)
    assert ds.voxel_size == pytest.approx(VS)
    assert open_volume(next(r for r in ds.records if r.name == "n3").image).shape == SHAPE


@pytest.mark.parametrize("copy", [False, True])
def test_ome_zarr_image_is_linked_or_copied_as_a_folder(tmp_path, copy):
    src = make_flat(tmp_path / "src", names=("a", "b"))
    write_volume(src / "c.ome.zarr", image(3), voxel_size=VS)
    (src / "c.swc").write_text(swc_text())
    out = tmp_path / "ds"
    report = prepare_dataset(out, src=src, copy=copy)
    assert report.errors == [] and report.out == out
    linked = out / "images" / "c.ome.zarr"
    assert linked.is_dir() and linked.is_symlink() is (not copy)
    assert np.array_equal(open_volume(linked).read(), image(3))
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert {v["name"]: v["image"] for v in meta["volumes"]}["c"] == "images/c.ome.zarr"


def test_tree_folder_with_two_swc_is_an_error(tmp_path):
    src = tmp_path / "gold"
    make_case(src / "n1", "n1")
    make_case(src / "n2", "n2")
    (src / "n2" / "other.swc").write_text(swc_text())
    report = prepare_dataset(tmp_path / "ds", src=src)
    assert report.out is None
    assert "holds 2 SWC files" in only_error(report, "n2")


def test_images_swc_and_labels_folders(tmp_path):
    images, swc, labels = tmp_path / "img", tmp_path / "swc", tmp_path / "lab"
    for i, name in enumerate(("a", "b.x", "c")):
        write_volume(images / f"{name}.tif", image(i), voxel_size=VS)
    swc.mkdir()
    for name in ("a", "b.x"):
        (swc / f"{name}.swc").write_text(swc_text())
    mask = np.zeros(SHAPE, np.uint8)
    mask[4:6, 18:22, 5:30] = 1
    write_volume(labels / "c.tif", mask, voxel_size=VS)

    out = tmp_path / "ds"
    report = prepare_dataset(out, images=images, swc=swc, labels=labels)
    assert report.errors == []
    ds = open_dataset(out)
    recs = {r.name: r for r in ds.records}
    assert sorted(recs) == ["a", "b.x", "c"]
    assert recs["c"].label is not None and recs["c"].label.is_symlink() and recs["c"].swc is None
    assert recs["a"].label is None and recs["a"].swc.name == "a.swc"
    row = next(r for r in report.rows if r["name"] == "c")
    assert row["foreground"] == pytest.approx(mask.sum() / mask.size)


# ------------------------------------------------------------------------------------------- diagnoses
def test_voxel_unit_swc_is_diagnosed_and_prepares_with_swc_units_voxel(tmp_path):
    src = tmp_path / "src"
    for i, name in enumerate(("a", "b", "c")):
        # voxel coordinates (x 4..36 columns, row 20, slice 5): read as µm they reach x = 72 voxels
        make_case(src, name, seed=i, swc=swc_text(x=(4.0, 36.0), y=20.0, z=5.0))
    report = prepare_dataset(tmp_path / "ds", src=src)
    assert report.out is None
    for name in ("a", "b", "c"):
        msg = only_error(report, name)
        assert "looks like voxel units: pass --swc-units voxel" in msg

    out = tmp_path / "ds"
    report = prepare_dataset(out, src=src, swc_units="voxel")
    assert report.errors == []
    ds = open_dataset(out)
    assert ds.swc_units == "voxel"
    assert all(r["foreground"] > 0 for r in report.rows)


def test_um_swc_read_as_voxels_is_diagnosed(tmp_path):
    src = tmp_path / "src"
    make_case(src, "a", vs=(4.0, 2.0, 2.0), swc=swc_text(x=(10.0, 70.0), y=40.0, z=20.0))
    report = prepare_dataset(tmp_path / "ds", src=src, swc_units="voxel")
    assert "looks like µm: pass --swc-units um" in only_error(report, "a")
    assert prepare_dataset(tmp_path / "ds", src=src).errors == []


def test_swapped_x_and_z_is_diagnosed(tmp_path):
    src = make_flat(tmp_path / "src", names=("a", "b"))
    (src / "b.swc").write_text(swc_text(swap=True))
    report = prepare_dataset(tmp_path / "ds", src=src)
    msg = only_error(report, "b")
    assert "x and z swapped" in msg and "voxel units" not in msg
    assert [e.split(":")[0] for e in report.errors] == ["b"]


def test_far_outside_reports_extents_in_um(tmp_path):
    src = make_flat(tmp_path / "src", names=("a",))
    (src / "a.swc").write_text(swc_text(x=(500.0, 520.0)))
    msg = only_error(prepare_dataset(tmp_path / "ds", src=src), "a")
    assert "outside the image along x" in msg and "x 500..520" in msg and "x 0..19.5" in msg and "µm" in msg


def test_missing_partners_are_errors(tmp_path):
    src = make_flat(tmp_path / "src", names=("a", "b", "c"))
    (src / "b.swc").unlink()
    (src / "orphan.swc").write_text(swc_text())
    out = tmp_path / "ds"
    report = prepare_dataset(out, src=src)
    assert report.out is None and not out.exists()
    assert "orphan.swc has no image" in only_error(report, "orphan")
    assert "b.tif has no SWC" in only_error(report, "b")
    assert only_error(report, "b").startswith("b: ")


def test_bad_swc_empty_mask_bad_image_and_label_shape(tmp_path):
    src = make_flat(tmp_path / "src", names=("a", "b", "c", "d"))
    (src / "a.swc").write_text("# only a comment\n")
    (src / "b.swc").write_text("1 1 2 3\n")
    tifffile.imwrite(src / "c.tif", np.zeros((40, 40), np.uint8))  # a 2D image
    report = prepare_dataset(tmp_path / "ds", src=src)
    assert "no nodes" in only_error(report, "a")
    assert "b.swc:1" in only_error(report, "b") and "7 columns" in only_error(report, "b")
    assert "3D" in only_error(report, "c")
    assert not any(e.startswith("d:") for e in report.errors)

    images, labels = tmp_path / "img", tmp_path / "lab"
    for name in ("e", "f"):
        write_volume(images / f"{name}.tif", image(), voxel_size=VS)
    write_volume(labels / "e.tif", np.zeros(SHAPE, np.uint8), voxel_size=VS)
    write_volume(labels / "f.tif", np.ones((10, 20, 20), np.uint8), voxel_size=VS)
    report = prepare_dataset(tmp_path / "ds2", images=images, labels=labels)
    assert "no foreground" in only_error(report, "e")
    assert "has shape (10, 20, 20) but the image has (10, 40, 40)" in only_error(report, "f")


def test_unknown_voxel_size_needs_voxel_size(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i, name in enumerate(("a", "b", "c")):
        tifffile.imwrite(src / f"{name}.tif", image(i))  # no voxel size recorded
        (src / f"{name}.swc").write_text(swc_text())
    report = prepare_dataset(tmp_path / "ds", src=src)
    assert report.out is None
    assert only_error(report, "a") == f"a: no voxel size in {src / 'a.tif'}; pass --voxel-size Z Y X"
    report = prepare_dataset(tmp_path / "ds", src=src, voxel_size=VS)
    assert report.errors == [] and open_dataset(tmp_path / "ds").voxel_size == pytest.approx(VS)


def test_mixed_voxel_sizes_are_an_error_and_skip_bad_keeps_the_majority(tmp_path):
    src = make_flat(tmp_path / "src", names=("a", "b", "c"))
    make_case(src, "d", vs=(2.0, 1.0, 1.0))
    make_case(src, "e", vs=(1.05, 0.52, 0.5))  # within 10 %: fine
    report = prepare_dataset(tmp_path / "ds", src=src)
    msg = only_error(report, "d")
    assert "2 x 1 x 1 µm differs by more than 10 % from 1 x 0.5 x 0.5 µm" in msg and "one voxel size" in msg
    assert [e.split(":")[0] for e in report.errors] == ["d"]

    report = prepare_dataset(tmp_path / "ds", src=src, skip_bad=True)
    assert report.skipped == ["d"]
    ds = open_dataset(tmp_path / "ds")
    assert sorted(r.name for r in ds.records) == ["a", "b", "c", "e"]
    assert ds.voxel_size == pytest.approx(VS)


# ---------------------------------------------------------------------------------- writing and the CLI
def test_cli_with_errors_writes_nothing_and_fails(tmp_path, capsys):
    src = make_flat(tmp_path / "src", names=("a", "b", "c"))
    (src / "b.swc").write_text(swc_text(swap=True))
    out = tmp_path / "ds"
    assert main(["prepare", str(src), "--out", str(out), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "problems" in captured.out.splitlines()[0] and "outside" in captured.out  # the table
    assert "b: b.swc lies outside the image but fits it with x and z swapped" in captured.err
    assert "nothing written" in captured.err and "--skip-bad" in captured.err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["src"]  # no temporary folder left

    assert main(["prepare", str(src), "--out", str(out), "--no-progress", "--skip-bad", "--seed", "1"]) == 0
    captured = capsys.readouterr()
    assert "wrote 2 volumes" in captured.out and "left out (--skip-bad): b" in captured.out
    assert sorted(r.name for r in open_dataset(out).records) == ["a", "c"]
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta["prepare"]["skipped"] == ["b"] and meta["prepare"]["seed"] == 1


def test_cli_images_form_and_one_line_argument_errors(tmp_path, capsys):
    src = make_flat(tmp_path / "src", names=("a", "b", "c"))
    out = tmp_path / "ds"
    assert main(["prepare", "--images", str(src), "--swc", str(src), "--out", str(out), "--no-progress",
                 "--split", "1", "1", "1", "--copy"]) == 0
    assert sorted(r.split for r in open_dataset(out).records) == ["test", "train", "val"]
    capsys.readouterr()
    assert main(["prepare", "--images", str(src), "--out", str(tmp_path / "x")]) == 2
    assert "--images needs --swc DIR and/or --labels DIR" in capsys.readouterr().err
    assert main(["prepare", str(src), "--out", str(tmp_path / "x"), "--split", "0.6", "-1", "0"]) == 2
    assert "--split must be three fractions" in capsys.readouterr().err
    assert main(["prepare", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_existing_out_needs_overwrite_and_is_replaced_only_when_complete(tmp_path, capsys):
    src = make_flat(tmp_path / "src", names=("a", "b", "c"))
    out = tmp_path / "ds"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(DatasetError, match="exists and is not empty; choose another --out or pass --overw"):
        prepare_dataset(out, src=src)
    assert main(["prepare", str(src), "--out", str(out), "--no-progress"]) == 2
    assert capsys.readouterr().err.count("\n") == 1  # one line, no traceback
    assert (out / "old.txt").is_file()

    # Errors with --overwrite: the old dataset stays as it was.
    (src / "c.swc").unlink()
    assert prepare_dataset(out, src=src, overwrite=True).out is None
    assert (out / "old.txt").is_file()

    make_case(src, "c")
    report = prepare_dataset(out, src=src, overwrite=True)
    assert report.out == out and not (out / "old.txt").exists()
    assert sorted(r.name for r in open_dataset(out).records) == ["a", "b", "c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "src"]  # no .tmp / .old leftovers

    # An empty existing folder is fine without --overwrite.
    (tmp_path / "empty").mkdir()
    assert prepare_dataset(tmp_path / "empty", src=src).out == tmp_path / "empty"


def test_overwrite_refuses_an_out_that_holds_the_inputs(tmp_path):
    src = make_flat(tmp_path / "src", names=("a", "b"))
    with pytest.raises(DatasetError, match="--overwrite would delete it"):
        prepare_dataset(src, images=src, swc=src, overwrite=True)
    assert (src / "a.tif").is_file()


def test_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    import neurovit.data.prepare as prep

    src = make_flat(tmp_path / "src", names=("a", "b", "c"))
    calls = []

    def broken_symlink(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_symlink(*args, **kwargs)

    real_symlink = prep.os.symlink
    monkeypatch.setattr(prep.os, "symlink", broken_symlink)
    with pytest.raises(DatasetError, match="cannot create a symbolic link .* pass --copy"):
        prepare_dataset(tmp_path / "ds", src=src)
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
