"""Targeted tests that kill mutants of neurovit/data/prepare.py (its discovery and checks) which survived.

`neurovit prepare` checks a user's images + SWC files before it writes a dataset: it finds the cases of a
flat folder, a Gold166-like tree or `--images/--swc/--labels` folders, then checks each case (image,
voxel size, SWC placement inside the image, foreground, label image) and assigns a seeded split. The tests
below pin what tests/test_prepare.py left open: the exact problem messages and kinds (users act on them),
the inclusive/exclusive thresholds (slack voxels, the 10 % voxel-size groups, split counts), and the
seeded split assignment. Most call the private functions directly on tiny synthetic inputs. The mutants
they kill are named in the comments (mutmut's names, `python tests/mutation.py prepare` lists them);
equivalent mutants are documented in tests/mutation_equivalent.txt instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

import neurovit.data.prepare as prep
import neurovit.data.swc as swc_module
from neurovit.data.prepare import (
    Case,
    _by_name,
    _case_folders,
    _check_case,
    _check_fractions,
    _check_label,
    _check_out,
    _check_spacing,
    _discover,
    _fits,
    _from_folders,
    _from_tree,
    _image_suffixes,
    _is_swc,
    _place,
    _placement_problem,
    _rendered_foreground,
    _swc_stem,
    _touch,
    assign_splits,
)
from neurovit.data.render import render_mask
from neurovit.data.swc import Morphology
from neurovit.data.volumes import supported_suffixes, volume_stem, write_volume
from neurovit.errors import DatasetError, VolumeError

VS = (1.0, 0.5, 0.5)  # z, y, x µm
SHAPE = (4, 8, 8)
GOOD_SWC = "1 1 2.0 2.0 1.0 0.5 -1\n2 3 3.0 2.0 1.0 0.5 1\n"  # µm: voxels x 4..6, y 4, z 1 of SHAPE


def morph(points, units="um", radius=0.0) -> Morphology:
    """A chain of nodes at `points` (SWC x, y, z)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    n = len(pts)
    return Morphology(pts, np.full(n, float(radius)), np.full(n, 3), np.arange(n) - 1, units=units)


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def stack(path: Path, shape=SHAPE, vs=VS, value=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_volume(path, np.full(shape, value, np.uint8), voxel_size=vs)
    return path


class Recorder:
    """A lazy (Z, Y, X) array that records which z ranges were read; each read returns ones."""

    def __init__(self, shape):
        self.shape = tuple(shape)
        self.reads = []

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop = key.start, min(key.stop, self.shape[0])
            self.reads.append((key.start, key.stop))
            return np.ones((max(0, stop - start), 1, 1), np.uint8)
        self.reads.append(key)
        if not -self.shape[0] <= key < self.shape[0]:
            raise IndexError(key)
        return np.ones((1, 1), np.uint8)


class FakeVolume:
    def __init__(self, shape):
        self.array = Recorder(shape)
        self.shape = tuple(shape)


# ============================================================================ naming: _swc_stem / _image_suffixes / _is_swc
def test_swc_stem_strips_the_swc_and_then_the_longest_image_suffix():
    # x__swc_stem__mutmut_6/11/14/15, x__image_suffixes__mutmut_3/6/7/8
    assert _swc_stem(Path("cell.day1.swc")) == "cell.day1"
    assert _swc_stem(Path("cell.SWC")) == "cell"
    assert _swc_stem(Path("trace.eswc")) == "trace"
    assert _swc_stem(Path("neuron7.v3draw.swc")) == "neuron7"
    assert _swc_stem(Path("neuron7.OME.TIF.swc")) == "neuron7"  # .ome.tif wins over .tif
    assert _swc_stem(Path("cell.ome.tif.swc")) == "cell"
    # a name that is only a suffix keeps it
    assert _swc_stem(Path(".swc")) == ".swc"
    assert _swc_stem(Path(".tif.swc")) == ".tif"
    suffixes = _image_suffixes()
    assert [len(s) for s in suffixes] == sorted((len(s) for s in suffixes), reverse=True)
    assert set(suffixes[:2]) == {".ome.tiff", ".ome.zarr"} and suffixes[2] == ".ome.tif" and suffixes[-1] == ".tif"
    assert set(suffixes) == set(supported_suffixes().split(", "))


def test_hidden_swc_files_are_not_swc(tmp_path):
    # x__is_swc__mutmut_5
    assert _is_swc(touch(tmp_path / "a.swc"))
    assert _is_swc(touch(tmp_path / "b.ESWC"))
    assert not _is_swc(touch(tmp_path / ".a.swc"))
    assert not _is_swc(touch(tmp_path / "a.txt"))
    (tmp_path / "d.swc").mkdir()
    assert not _is_swc(tmp_path / "d.swc")


# ============================================================================ Case.row
def test_case_row_has_every_field_by_name(tmp_path):
    # xǁCaseǁrow__mutmut_3/4/5/6/7/8/19/20
    c = Case("a", image=tmp_path / "a.tif", swc=tmp_path / "a.swc", label=tmp_path / "l.tif", shape=(1, 2, 3),
             voxel_size=VS, foreground=0.25, swc_nodes=7, split="val")
    c.fail("swc", "bad file")
    c.fail("outside", "far away")
    assert c.row() == {"name": "a", "image": tmp_path / "a.tif", "swc": tmp_path / "a.swc",
                       "label": tmp_path / "l.tif", "shape": (1, 2, 3), "voxel_size": VS, "foreground": 0.25,
                       "swc_nodes": 7, "split": "val", "problems": ["bad file", "far away"],
                       "kinds": ["swc", "outside"]}


# ============================================================================ _by_name / _from_folders
def test_by_name_two_files_for_one_name_is_a_duplicate_problem(tmp_path):
    # x__by_name__mutmut_22/23/24/25/26/27/28/29/30/31
    cases: dict[str, Case] = {}
    paths = [tmp_path / "a.tif", tmp_path / "a.tiff", tmp_path / "b.tif"]
    _by_name(paths, volume_stem, "image", cases, "image")
    assert sorted(cases) == ["a", "b"]
    assert cases["a"].image == tmp_path / "a.tif"
    assert cases["a"].problems == [("duplicate", "several image files for this name (a.tif, a.tiff); keep one")]
    assert cases["b"].problems == []


def test_from_folders_names_the_kind_of_duplicate(tmp_path):
    # x__from_folders__mutmut_5/14/15/20/29/30/36/45/46/52/61/62/68/77/78
    flat = tmp_path / "flat"
    for name in ("a.tif", "a.ome.tif", "a.swc", "a.eswc"):
        touch(flat / name)
    (c,) = _from_folders(None, None, None, flat)
    assert c.problems == [("duplicate", "several image files for this name (a.ome.tif, a.tif); keep one"),
                          ("duplicate", "several SWC files for this name (a.eswc, a.swc); keep one")]

    images, swc, labels = tmp_path / "img", tmp_path / "swc", tmp_path / "lab"
    for p in (images / "b.tif", images / "b.tiff", swc / "b.swc", swc / "b.tif.swc", labels / "b.tif",
              labels / "b.v3draw"):
        touch(p)
    (c,) = _from_folders(images, swc, labels, None)
    assert (c.name, c.image, c.swc, c.label) == ("b", images / "b.tif", swc / "b.swc", labels / "b.tif")
    assert c.problems == [("duplicate", "several image files for this name (b.tif, b.tiff); keep one"),
                          ("duplicate", "several SWC files for this name (b.swc, b.tif.swc); keep one"),
                          ("duplicate", "several label files for this name (b.tif, b.v3draw); keep one")]


# ============================================================================ _case_folders / _from_tree
def test_case_folders_finds_leaf_folders_and_skips_hidden_output_and_files(tmp_path):
    # x__case_folders__mutmut_3/6/7/10/11
    root = tmp_path / "tree"
    touch(root / "README.txt", "not a case")
    touch(root / "a_out" / "x.tif")  # the output folder (sorted first): skipped, the others still found
    touch(root / ".hidden" / "h.swc")
    touch(root / "n1" / "trace.swc")  # SWC only
    touch(root / "n2" / "img.tif")  # image only
    touch(root / "group" / "n3" / "x.tif")
    found = _case_folders(root, {(root / "a_out").resolve()})
    assert found == [root / "group" / "n3", root / "n1", root / "n2"]


def test_from_tree_names_same_named_leaves_by_their_path(tmp_path):
    # x__from_tree__mutmut_9/18/21/22/23/60/64
    root = tmp_path / "tree"
    touch(root / "a" / "n1" / "x.tif")
    touch(root / "b" / "n1" / "y.swc")
    touch(root / "n2" / "z.tif")
    cases = _from_tree(root, set())
    assert [(c.name, c.image, c.swc) for c in cases] == [
        ("a__n1", root / "a" / "n1" / "x.tif", None),
        ("b__n1", None, root / "b" / "n1" / "y.swc"),
        ("n2", root / "n2" / "z.tif", None)]
    assert all(c.problems == [] for c in cases)


def test_from_tree_two_images_or_two_swc_in_one_folder(tmp_path):
    # x__from_tree__mutmut_29/32/33/34/35/36/37/38/39/40/41/42/43/44/47/49/50/54/55/56/57
    root = tmp_path / "tree"
    for name in ("a.tif", "b.v3draw", "t1.swc", "t2.eswc"):
        touch(root / "grp" / "n1" / name)
    (c,) = _from_tree(root, set())
    assert (c.name, c.image, c.swc) == ("n1", root / "grp" / "n1" / "a.tif", root / "grp" / "n1" / "t1.swc")
    assert c.problems == [
        ("duplicate", "folder grp/n1 holds 2 images (a.tif, b.v3draw); keep exactly one image and one SWC per "
                      "neuron folder"),
        ("duplicate", "folder grp/n1 holds 2 SWC files (t1.swc, t2.eswc); keep exactly one per neuron folder")]


# ============================================================================ _discover
def test_discover_argument_errors_are_exact(tmp_path):
    # x__discover__mutmut_4/5/6/7/11/12/13/14/15/16/17/24/30/31/32/33
    d = tmp_path / "d"
    d.mkdir()
    out = tmp_path / "out"
    with pytest.raises(DatasetError) as e:
        _discover(d, d, None, None, out)
    assert str(e.value) == "give either SRC or --images DIR (with --swc/--labels), not both"
    with pytest.raises(DatasetError) as e:
        _discover(None, None, d, d, out)
    assert str(e.value) == ("give SRC (a folder of NAME.<image> + NAME.swc, or one sub-folder per neuron) or "
                            "--images DIR with --swc DIR and/or --labels DIR")
    with pytest.raises(DatasetError) as e:
        _discover(None, d, None, None, out)
    assert str(e.value) == "--images needs --swc DIR and/or --labels DIR (the ground truth of each image)"
    with pytest.raises(DatasetError) as e:
        _discover(d, None, d, None, out)
    assert str(e.value) == "--swc goes with --images DIR; with SRC the SWC files sit beside their images"


@pytest.mark.parametrize("which", ["SRC", "--images", "--swc", "--labels"])
def test_discover_names_the_missing_folder(tmp_path, which):
    # x__discover__mutmut_34/35/36/37/38/39/40/41
    d = tmp_path / "d"
    touch(d / "a.tif")
    touch(d / "a.swc")
    missing = tmp_path / "missing"
    args = {"SRC": (missing, None, None, None), "--images": (None, missing, d, None),
            "--swc": (None, d, missing, None), "--labels": (None, d, d, missing)}[which]
    with pytest.raises(DatasetError) as e:
        _discover(*args, tmp_path / "out")
    assert str(e.value) == f"{which} {missing}: no such folder"


def test_discover_layout_of_the_images_form(tmp_path):
    # x__discover__mutmut_68/69/70/71/73/74/75
    images, swc, labels = tmp_path / "img", tmp_path / "swc", tmp_path / "lab"
    touch(images / "a.tif")
    touch(swc / "a.swc")
    touch(labels / "a.tif")
    out = tmp_path / "out"
    assert _discover(None, images, swc, None, out)[1] == f"images {images}, SWC {swc}"
    assert _discover(None, images, None, labels, out)[1] == f"images {images}, labels {labels}"
    assert _discover(None, images, swc, labels, out)[1] == f"images {images}, SWC {swc}, labels {labels}"


def test_discover_flat_folder_with_only_swc_or_with_labels(tmp_path):
    # x__discover__mutmut_78/82/88
    src = tmp_path / "src"
    touch(src / "a.swc")
    cases, layout = _discover(src, None, None, None, tmp_path / "out")
    assert [(c.name, c.image, c.swc) for c in cases] == [("a", None, src / "a.swc")]
    assert layout == f"flat folder {src}"

    labels = tmp_path / "lab"
    touch(labels / "a.tif")
    touch(src / "a.tif")
    cases, layout = _discover(src, None, None, labels, tmp_path / "out")
    assert [(c.name, c.image, c.swc, c.label) for c in cases] == [("a", src / "a.tif", src / "a.swc",
                                                                    labels / "a.tif")]
    assert layout == f"flat folder {src}"


def test_discover_tree_with_labels_merges_them_by_name(tmp_path):
    # x__discover__mutmut_94/95/96/97/98/99/100/101/102/103/104/105/106/107/108/109/110
    src, labels = tmp_path / "tree", tmp_path / "lab"
    touch(src / "n2" / "img.tif")
    touch(src / "n2" / "t.swc")
    touch(labels / "n2.tif")
    touch(labels / "m1.tif")  # a label without a tree case: a case of its own, sorted in
    touch(labels / "m1.tiff")
    cases, layout = _discover(src, None, None, labels, tmp_path / "out")
    assert layout == f"one folder per neuron under {src}"
    assert [(c.name, c.image, c.swc, c.label) for c in cases] == [
        ("m1", None, None, labels / "m1.tif"),
        ("n2", src / "n2" / "img.tif", src / "n2" / "t.swc", labels / "n2.tif")]
    assert cases[0].problems == [("duplicate", "several label files for this name (m1.tif, m1.tiff); keep one")]
    assert cases[1].problems == []
    # without labels, the tree alone
    cases, _ = _discover(src, None, None, None, tmp_path / "out")
    assert [(c.name, c.label) for c in cases] == [("n2", None)]


def test_discover_nothing_found_names_the_folder(tmp_path):
    # x__discover__mutmut_112/113/114/115/116/117/118/119/120/121/122
    src, images, swc = tmp_path / "src", tmp_path / "img", tmp_path / "swc"
    for d in (src, images, swc):
        d.mkdir()
    tail = (f": no images ({supported_suffixes()}) or SWC files found; expected NAME.<image> + NAME.swc files, "
            "or one sub-folder per neuron holding one image and one SWC")
    with pytest.raises(DatasetError) as e:
        _discover(src, None, None, None, tmp_path / "out")
    assert str(e.value) == f"{src}{tail}"
    with pytest.raises(DatasetError) as e:
        _discover(None, images, swc, None, tmp_path / "out")
    assert str(e.value) == f"{images}{tail}"


# ============================================================================ _check_case
def test_check_case_partners_missing(tmp_path):
    # x__check_case__mutmut_3/7/8/10/11/12/13/14/15/20/21/22/23/24/27/31/32
    orphan = Case("o", swc=touch(tmp_path / "o.swc", GOOD_SWC))
    _check_case(orphan, "um", None, False)
    assert orphan.problems == [("no image", f"o.swc has no image (expected o.<image> beside it; supported: "
                                            f"{supported_suffixes()})")]
    assert orphan.swc_nodes == 2
    label_only = Case("l", label=stack(tmp_path / "l.tif"))
    _check_case(label_only, "um", None, True)
    assert label_only.problems == [("no image", "label l.tif has no image")]

    for has_labels, what in ((False, "SWC"), (True, "SWC or label")):
        alone = Case("a", image=stack(tmp_path / "a.tif"))
        _check_case(alone, "um", None, has_labels)
        assert alone.problems == [("no swc", f"a.tif has no {what} (expected a.swc)")]


def test_check_case_records_shape_voxel_size_and_where_it_came_from(tmp_path):
    # x__check_case__mutmut_67/68/69/70/101/148 (a one-node SWC renders exactly one voxel: no problem)
    img, swc = stack(tmp_path / "a.tif"), touch(tmp_path / "a.swc", "1 1 2.0 2.0 1.0 0 -1\n")
    c = Case("a", image=img, swc=swc)
    _check_case(c, "um", None, False)
    assert c.problems == []
    assert (c.shape, c.voxel_size, c.voxel_size_from, c.swc_nodes) == (SHAPE, VS, "file", 1)
    assert c.foreground == 1 / 256
    c = Case("a", image=img, swc=swc)
    _check_case(c, "um", (1.0, 0.5, 0.5), False)
    assert (c.voxel_size, c.voxel_size_from, c.problems) == (VS, "argument", [])


def test_check_case_unreadable_image(tmp_path, monkeypatch):
    # x__check_case__mutmut_41/45/46 (a VolumeError is reported as it is)
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((8, 8), np.uint8))
    with pytest.raises(VolumeError) as e:
        prep.open_volume(flat)
    assert "expected a 3D (Z, Y, X) grey-scale stack" in str(e.value)
    c = Case("flat", image=flat, swc=touch(tmp_path / "flat.swc", GOOD_SWC))
    _check_case(c, "um", None, False)
    assert c.problems == [("image", str(e.value))]
    assert c.shape is None and c.foreground is None

    # x__check_case__mutmut_49/50/51/52/53/54/55/56/57/58 (any other exception: named, not raised)
    def broken(path, voxel_size=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(prep, "open_volume", broken)
    img = stack(tmp_path / "b.tif")
    c = Case("b", image=img, swc=touch(tmp_path / "b.swc", GOOD_SWC))
    _check_case(c, "um", None, False)
    assert c.problems == [("image", f"{img}: cannot read it (RuntimeError: boom); re-export the stack")]
    assert c.shape is None and c.swc_nodes == 2


def test_check_case_unknown_voxel_size(tmp_path):
    # x__check_case__mutmut_72/76/77
    img = tmp_path / "a.tif"
    tifffile.imwrite(img, np.zeros((5, 8, 8), np.uint8))  # a plain TIFF records no voxel size
    c = Case("a", image=img, swc=touch(tmp_path / "a.swc", GOOD_SWC))
    _check_case(c, "um", None, False)
    assert c.problems == [("voxel size", f"no voxel size in {img}; pass --voxel-size Z Y X")]
    assert c.shape == (5, 8, 8) and c.voxel_size is None and c.foreground is None


def test_check_case_bad_swc(tmp_path, monkeypatch):
    # x__check_case__mutmut_85/89/90
    img = stack(tmp_path / "a.tif")
    bad = touch(tmp_path / "a.swc", "1 1 2 3\n")
    with pytest.raises(swc_module.SWCError) as e:
        swc_module.read_swc(bad)
    c = Case("a", image=img, swc=bad)
    _check_case(c, "um", None, False)
    assert c.problems == [("swc", str(e.value))] and c.swc_nodes is None

    # x__check_case__mutmut_92/93/94/95/96/97 (OSError / ValueError of the reader)
    def unreadable(path, units=None):
        raise OSError("disk gone")

    monkeypatch.setattr(swc_module, "read_swc", unreadable)
    c = Case("a", image=img, swc=touch(tmp_path / "a.swc", GOOD_SWC))
    _check_case(c, "um", None, False)
    assert c.problems == [("swc", f"{tmp_path / 'a.swc'}: cannot read it (disk gone)")]

    # x__check_case__mutmut_102/103/104/105/106/107/108 (a reader that returns no nodes)
    monkeypatch.setattr(swc_module, "read_swc", lambda path, units=None: morph(np.empty((0, 3))))
    c = Case("a", image=img, swc=tmp_path / "a.swc")
    _check_case(c, "um", None, False)
    assert c.problems == [("swc empty", f"{tmp_path / 'a.swc'}: has no nodes")]
    assert c.swc_nodes == 0 and c.foreground is None


def test_check_case_outside_and_empty_mask(tmp_path):
    # x__check_case__mutmut_125
    img = stack(tmp_path / "a.tif")
    far = touch(tmp_path / "far.swc", "1 1 500 2 1 0 -1\n2 3 510 2 1 0 1\n")
    c = Case("far", image=img, swc=far)
    _check_case(c, "um", None, False)
    assert [k for k, _ in c.problems] == ["outside"]
    assert c.problems[0][1].startswith("far.swc extends outside the image along x: SWC x 500..510")
    assert c.foreground is None

    # x__check_case__mutmut_149/150/151/152/153/154: 2 voxels left of the image (within the slack of 3)
    edge = touch(tmp_path / "e.swc", "1 1 -1.0 2.0 1.0 0 -1\n")
    c = Case("e", image=img, swc=edge)
    _check_case(c, "um", None, False)
    assert c.problems == [("empty mask", "the mask rendered from e.swc has no foreground voxel")]
    assert c.foreground == 0.0


def test_touch_reads_the_first_and_the_last_slice():
    # x__touch__mutmut_1/2/3/6
    vol = FakeVolume((5, 2, 2))
    _touch(vol)
    assert vol.array.reads == [0, 4]
    one = FakeVolume((1, 2, 2))
    _touch(one)
    assert one.array.reads == [0, 0]


# ============================================================================ _check_label
def test_check_label_shape_mismatch_and_empty_label(tmp_path):
    # x__check_label__mutmut_4/8/9
    lab = stack(tmp_path / "l.tif", shape=(4, 4, 4), value=1)
    c = Case("a", label=lab, shape=SHAPE)
    _check_label(c)
    assert c.problems == [("label shape", f"label {lab} has shape (4, 4, 4) but the image has (4, 8, 8) "
                                          "(z, y, x); a label must match its image voxel for voxel")]
    assert c.foreground is None
    # x__check_label__mutmut_62/66/67
    empty = stack(tmp_path / "e.tif")
    c = Case("e", label=empty, shape=SHAPE)
    _check_label(c)
    assert c.problems == [("empty mask", f"label {empty} has no foreground voxel (all zero)")]
    assert c.foreground == 0.0


def test_check_label_counts_every_slice(tmp_path):
    # x__check_label__mutmut_26/35 (foreground only in the first slice)
    mask = np.zeros(SHAPE, np.uint8)
    mask[0, 1:4, 2] = 7
    lab = tmp_path / "l.tif"
    write_volume(lab, mask, voxel_size=VS)
    c = Case("a", label=lab, shape=SHAPE)
    _check_label(c)
    assert c.problems == [] and c.foreground == 3 / 256


@pytest.mark.parametrize(("shape", "reads"), [
    ((5, 4096, 4096), [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]),  # 2**24 voxels a slice: one at a time
    ((5, 2048, 4096), [(0, 2), (2, 4), (4, 6)]),
    ((3, 8, 8), [(0, 262144)]),
    ((2**23 + 1, 1, 1), [(0, 2**24)]),  # 1 x 1 slices: 2**24 of them at once
])
def test_check_label_reads_at_most_2_24_voxels_at_a_time(monkeypatch, shape, reads):
    # x__check_label__mutmut_16/18/19/20/25/27/36/37
    fake = FakeVolume(shape)
    monkeypatch.setattr(prep, "open_volume", lambda path: fake)
    c = Case("a", label=Path("l.tif"), shape=shape)
    _check_label(c)
    assert fake.array.reads == reads
    assert c.problems == [] and c.foreground == shape[0] / np.prod(shape)


def test_check_label_unreadable(tmp_path, monkeypatch):
    # x__check_label__mutmut_43/44/45/46/47/48/49
    lab = tmp_path / "l.tif"
    tifffile.imwrite(lab, np.zeros((8, 8), np.uint8))
    with pytest.raises(VolumeError) as e:
        prep.open_volume(lab)
    c = Case("a", label=lab, shape=SHAPE)
    _check_label(c)
    assert c.problems == [("label", str(e.value))]
    assert c.foreground is None

    # x__check_label__mutmut_50/51/52/53/54/55/56
    def broken(path):
        raise RuntimeError("boom")

    monkeypatch.setattr(prep, "open_volume", broken)
    c = Case("a", label=lab, shape=SHAPE)
    _check_label(c)
    assert c.problems == [("label", f"{lab}: cannot read it (RuntimeError: boom)")]
    assert c.foreground is None


# ============================================================================ _fits
def test_fits_has_exactly_three_voxels_of_slack():
    # x__fits__mutmut_2/9/17/19/20 (shape z 4, y 8, x 16: index limits x 15, y 7, z 3)
    shape = (4, 8, 16)
    assert _fits(np.array([[-3.0, -3.0, -3.0]]), shape)
    assert _fits(np.array([[18.0, 10.0, 6.0]]), shape)
    assert _fits(np.array([[15.0, 7.0, 3.0], [0.0, 0.0, 0.0]]), shape)
    assert not _fits(np.array([[-3.01, 0.0, 0.0]]), shape)
    assert not _fits(np.array([[0.0, -3.01, 0.0]]), shape)
    assert not _fits(np.array([[18.01, 0.0, 0.0]]), shape)
    assert not _fits(np.array([[0.0, 10.01, 0.0]]), shape)
    assert not _fits(np.array([[0.0, 0.0, 6.01]]), shape)


# ============================================================================ _placement_problem
def test_placement_without_voxel_size_checks_voxel_units_only():
    # x__placement_problem__mutmut_8
    shape = (4, 8, 16)
    assert _placement_problem(morph([[15, 7, 3]], units="voxel"), shape, None, Path("a.swc")) is None
    assert _placement_problem(morph([[500, 7, 3]], units="um"), shape, None, Path("a.swc")) is None


def test_placement_swapped_x_and_z_in_um():
    # x__placement_problem__mutmut_68/71/72/73: voxel size (1, 2, 2): the µm → voxel scaling matters
    z = np.linspace(4.0, 70.0, 5)
    m = morph(np.stack([np.full(5, 5.0), np.full(5, 20.0), z], axis=1))
    assert _placement_problem(m, (10, 40, 40), (1.0, 2.0, 2.0), Path("s.swc")) == (
        "s.swc lies outside the image but fits it with x and z swapped: its x and z columns look exchanged "
        "(SWC columns are x y z = image column, row, slice); fix the file")


def test_placement_swapped_and_in_the_other_units():
    # x__placement_problem__mutmut_80/83/85/88/91/92/93/95/98/101/102: read as voxels, but µm and swapped
    z = np.linspace(4.0, 70.0, 5)
    m = morph(np.stack([np.full(5, 5.0), np.full(5, 20.0), z], axis=1), units="voxel")
    assert _placement_problem(m, (10, 40, 40), (1.0, 2.0, 2.0), Path("s.swc")) == (
        "s.swc fits the image only with x and z swapped and in µm: x and z look swapped (fix the file) and "
        "pass --swc-units um")
    # x__placement_problem__mutmut_84/86/87/89/90/94/96/97/99/100: read as µm, but voxels and swapped
    z = np.linspace(4.0, 36.0, 5)
    m = morph(np.stack([np.full(5, 5.0), np.full(5, 20.0), z], axis=1), units="um")
    assert _placement_problem(m, (10, 40, 40), VS, Path("s.swc")) == (
        "s.swc fits the image only with x and z swapped and in voxel units: x and z look swapped (fix the "
        "file) and pass --swc-units voxel")


def test_placement_extents_in_voxels_without_voxel_size():
    # x__placement_problem__mutmut_117/118/119/151/173/181/187 (shape z 4, y 8, x 16)
    m = morph([[500, 1, 1], [510, 2, 8]], units="voxel")
    assert _placement_problem(m, (4, 8, 16), None, Path("e.swc")) == (
        "e.swc extends outside the image along x, z: SWC x 500..510, y 1..2, z 1..8 voxels, image x 0..15, "
        "y 0..7, z 0..3 voxels; check that the SWC belongs to this image, its origin and the voxel size")


def test_placement_extents_of_voxel_coordinates_are_given_in_um():
    # x__placement_problem__mutmut_122/123/124/125/126/130
    m = morph([[500, 1, 1], [510, 2, 2]], units="voxel")
    assert _placement_problem(m, (4, 8, 16), VS, Path("e.swc")) == (
        "e.swc extends outside the image along x: SWC x 250..255, y 0.5..1, z 1..2 µm, image x 0..7.5, "
        "y 0..3.5, z 0..3 µm; check that the SWC belongs to this image, its origin and the voxel size")


@pytest.mark.parametrize(("y", "along"), [((1.0, 6.0), "x, y"), ((-2.0, 1.0), "x, y"), ((1.0, 2.0), "x")])
def test_placement_bad_axes_of_um_coordinates_use_voxels(y, along):
    # x__placement_problem__mutmut_135/138/141/144: y 6 µm = 12 voxels, -2 µm = -4 voxels (slack 3)
    m = morph([[500, y[0], 1], [510, y[1], 2], [505, sum(y) / 2, 1.5]])
    msg = _placement_problem(m, (4, 8, 16), VS, Path("e.swc"))
    assert msg.startswith(f"e.swc extends outside the image along {along}: SWC x 500..510, y {y[0]:g}..{y[1]:g}, ")


@pytest.mark.parametrize(("y", "along"), [
    (-3.0, "x"), (-3.01, "x, y"), (0.0, "x"), (8.0, "x"), (10.0, "x"), (10.5, "x, y"),
])
def test_placement_bad_axes_use_three_voxels_of_slack(y, along):
    # x__placement_problem__mutmut_146/153/167/168/169/170 (y index limit 7, slack 3)
    m = morph([[500, y, 1], [510, y, 2]], units="voxel")
    msg = _placement_problem(m, (4, 8, 16), None, Path("e.swc"))
    assert msg.startswith(f"e.swc extends outside the image along {along}: ")


# ============================================================================ _rendered_foreground
@pytest.mark.parametrize(("points", "units", "radius", "shape", "vs"), [
    ([[4, 20, 2], [30, 22, 3]], "voxel", 1.0, (6, 40, 40), VS),  # voxel units, anisotropic voxels
    ([[0, 0, 0]], "um", 2.0, (6, 10, 12), (1.0, 1.0, 1.0)),  # at the low corner: clipped to the image
    ([[11, 9, 5]], "um", 2.0, (6, 10, 12), (1.0, 1.0, 1.0)),  # at the high corner
    ([[5.5, 4.5, 3.5], [7, 6, 4]], "um", 2.0, (6, 10, 12), (2.0, 1.0, 1.0)),  # high corner, 2 µm slices
    ([[3, 3, 0]], "um", 1.0, (1, 8, 8), (1.0, 1.0, 1.0)),  # a single-slice image
])
def test_rendered_foreground_is_that_of_the_full_mask(points, units, radius, shape, vs):
    # x__rendered_foreground__mutmut_2/5/6/7/43/48/51/55/61/63/64/83/84
    m = morph(points, units=units, radius=radius)
    full = int(render_mask(m, shape, vs).sum())
    assert full > 0
    assert _rendered_foreground(m, shape, vs) == full


def test_rendered_foreground_outside_the_image_is_zero():
    # x__rendered_foreground__mutmut_65: 2 voxels left of the image, within the placement slack
    assert _rendered_foreground(morph([[-2, 3, 3]]), (4, 8, 8), (1.0, 1.0, 1.0)) == 0
    assert _rendered_foreground(morph([[3, 3, 3]]), (4, 8, 8), (1.0, 1.0, 1.0)) == 1


# ============================================================================ _check_spacing
@pytest.mark.parametrize(("n_main", "listed"), [
    (7, "a1, a2, a3, a4, a5, a6 ..."), (6, "a1, a2, a3, a4, a5, a6"), (1, "a1"),
])
def test_check_spacing_names_the_main_group(n_main, listed):
    # x__check_spacing__mutmut_23/26/27/28/29/30/31/32/33/36/40/41/44/45
    cases = [Case(f"a{i + 1}", voxel_size=VS) for i in range(n_main)] + [Case("odd", voxel_size=(2.0, 1.0, 1.0))]
    cases += [Case("unknown")]
    if n_main == 1:
        cases = cases[::-1]  # a tie: the first group (in the given order) is the reference
    ref = _check_spacing(cases)
    assert ref == ((2.0, 1.0, 1.0) if n_main == 1 else VS)
    bad = [c for c in cases if c.problems]
    if n_main == 1:
        assert [c.name for c in bad] == ["a1"]
        return
    assert [c.name for c in bad] == ["odd"]
    assert bad[0].problems == [("voxel size", "voxel size 2 x 1 x 1 µm differs by more than 10 % from "
                                              f"1 x 0.5 x 0.5 µm ({listed}); a dataset has one voxel size: "
                                              "resample this image or prepare it as a separate dataset")]


def test_check_spacing_within_ten_percent_is_one_group():
    cases = [Case("a", voxel_size=VS), Case("b", voxel_size=(1.09, 0.545, 0.455))]
    assert _check_spacing(cases) == VS and all(c.problems == [] for c in cases)
    assert _check_spacing([Case("x")]) is None


# ============================================================================ _check_fractions
def test_check_fractions_normalises():
    # x__check_fractions__mutmut_13/25
    assert _check_fractions((1, 1, 2)) == (0.25, 0.25, 0.5)
    assert _check_fractions(("3", 0, 0)) == (1.0, 0.0, 0.0)


@pytest.mark.parametrize("split", ["abc", (0.5, 0.5), (0.6, -0.1, 0.5), (float("inf"), 1, 1),
                                   (float("nan"), 1, 1), (0, 0, 0), None])
def test_check_fractions_rejects(split):
    # x__check_fractions__mutmut_4/5/6/11/16/19/20
    with pytest.raises(DatasetError) as e:
        _check_fractions(split)
    assert str(e.value) == ("--split must be three fractions TRAIN VAL TEST >= 0, not all 0 (e.g. 0.6 0.2 0.2), "
                            f"got {split!r}")


# ============================================================================ assign_splits
def counts(split: dict[str, str]) -> tuple[int, int, int]:
    values = list(split.values())
    return values.count("train"), values.count("val"), values.count("test")


def test_assign_splits_is_a_fixed_seeded_permutation():
    # pins the seeded order (no surviving mutant; guards the documented split of a written dataset)
    names = ["e", "d", "c", "b", "a"]
    # default_rng(0).permutation(5) = [2, 4, 3, 0, 1] of the sorted names: val first, then test, then train
    assert assign_splits(names, (0.6, 0.2, 0.2), 0) == {"c": "val", "e": "test", "d": "train", "a": "train",
                                                         "b": "train"}
    assert assign_splits(names, (0.6, 0.2, 0.2), 1) == {"e": "val", "a": "test", "b": "train", "c": "train",
                                                         "d": "train"}


@pytest.mark.parametrize(("n", "fractions", "expected"), [
    (10, (0.6, 0.2, 0.2), (6, 2, 2)),  # rounding to nearest
    (10, (0.5, 0.25, 0.25), (4, 3, 3)),  # 2.5 rounds up
    (5, (0.8, 0.2, 0.0), (4, 1, 0)),  # a zero fraction stays empty
    (4, (0.0, 0.5, 0.5), (0, 2, 2)),  # no train fraction: no train case kept back
    (4, (0.1, 0.45, 0.45), (1, 2, 1)),  # one train case kept: the tie takes from test
    (10, (0.05, 0.0, 0.95), (1, 0, 9)),
    (10, (0.05, 0.95, 0.0), (1, 9, 0)),
    (3, (0.8, 0.1, 0.1), (1, 1, 1)),  # >= 3 cases: at least one each
    (1, (0.1, 0.9, 0.0), (1, 0, 0)),  # one case goes to train
])
def test_assign_splits_counts(n, fractions, expected):
    # x_assign_splits__mutmut_8/9/21/27/28/30/31/32/34/36/37/38/39/41/42/44; 40/43 (n -= 1 → += 1) loop forever
    # here: killed as timeouts
    assert counts(assign_splits([f"n{i}" for i in range(n)], fractions, 0)) == expected


# ============================================================================ _place / _check_out
def test_place_copies_into_new_folders_and_follows_links(tmp_path):
    # x__place__mutmut_1/3/5/13
    src = touch(tmp_path / "a.tif", "pixels")
    dst = tmp_path / "out" / "images" / "a.tif"
    _place(src, dst, copy=True)
    assert dst.read_text() == "pixels" and not dst.is_symlink()

    folder = tmp_path / "z.ome.zarr"
    touch(folder / "0" / "chunk", "data")
    os.symlink(folder / "0" / "chunk", folder / "link")
    _place(folder, tmp_path / "out2" / "deep" / "z.ome.zarr", copy=True)
    copied = tmp_path / "out2" / "deep" / "z.ome.zarr" / "link"
    assert copied.read_text() == "data" and not copied.is_symlink()

    _place(folder, tmp_path / "out3" / "deeper" / "z.ome.zarr", copy=False)
    linked = tmp_path / "out3" / "deeper" / "z.ome.zarr"
    assert linked.is_symlink() and linked.resolve() == folder.resolve() and (linked / "0" / "chunk").is_file()


def test_place_names_the_link_it_cannot_make(tmp_path, monkeypatch):
    # x__place__mutmut_25/26
    def no_links(*args, **kwargs):
        raise OSError("not permitted")

    monkeypatch.setattr(prep.os, "symlink", no_links)
    src, dst = touch(tmp_path / "a.tif"), tmp_path / "out" / "a.tif"
    with pytest.raises(DatasetError) as e:
        _place(src, dst, copy=False)
    assert str(e.value) == (f"{dst}: cannot create a symbolic link to {src} (not permitted); pass --copy to copy "
                            "the files instead")


def test_check_out_messages(tmp_path):
    # x__check_out__mutmut_3/17/18
    out = touch(tmp_path / "out")
    with pytest.raises(DatasetError) as e:
        _check_out(out, [], overwrite=True)
    assert str(e.value) == f"--out {out} is a file; give a folder name"
    src = tmp_path / "src"
    swc = touch(src / "a.swc")
    with pytest.raises(DatasetError) as e:
        _check_out(src, [Case("a", swc=swc)], overwrite=True)
    assert str(e.value) == (f"--out {src} holds the input {swc}; --overwrite would delete it: write the dataset "
                            "to another folder")
    _check_out(tmp_path / "new", [Case("a", swc=swc)], overwrite=False)  # a new folder is fine


def test_rendered_foreground_of_a_tree_wholly_outside_the_image_is_zero():
    # x__rendered_foreground__mutmut_65 (the early return for a box that misses the image)
    far = Morphology([[500.0, 500.0, 500.0], [510.0, 500.0, 500.0]], [1.0, 1.0], [3, 3], [-1, 0])
    assert _rendered_foreground(far, (8, 16, 16), (1.0, 1.0, 1.0)) == 0
    near = far.translate((-500.0, -492.0, -496.0))  # the same tree moved inside: it does render
    assert _rendered_foreground(near, (8, 16, 16), (1.0, 1.0, 1.0)) > 0
