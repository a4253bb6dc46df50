"""Targeted tests that kill mutants of neurovit/data/prepare.py which survived the rest of the suite.

They cover the `neurovit prepare` command line (its help text, pinned by a snapshot, its defaults and types),
the lines it prints and its exit codes, the report table, the arguments `prepare_dataset` accepts, what
`dataset.yaml` records, and how the dataset folder is written and replaced (nothing half-written, the old
dataset kept when the new one cannot be put in place). The other half of the module's survivors (the checks)
is in tests/test_mutation_kills_prepare_checks.py. The mutants they kill are named in the comments
(mutmut's names, `python tests/mutation.py prepare` lists them); equivalent mutants are documented in
tests/mutation_equivalent.txt instead.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

import neurovit.data.prepare as prep
from neurovit.data.prepare import PrepareReport, add_prepare_parser, assign_splits, prepare_dataset
from neurovit.data.volumes import write_volume
from neurovit.errors import DatasetError

SNAPSHOT = Path(__file__).parent / "snapshots" / "prepare_help.txt"
VS = (1.0, 0.5, 0.5)  # z, y, x µm
SHAPE = (6, 16, 16)
# Two nodes along x (x 2..6, y 4, z 3): inside the 6 × 16 × 16 image read as µm and read as voxels.
SWC = "# two nodes\n1 1 2 4 3 1 -1\n2 3 6 4 3 1 1\n"


def stack(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 200, SHAPE, dtype=np.uint8)


def make_case(folder: Path, name: str, *, swc: bool = True, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_volume(folder / f"{name}.tif", stack(seed), voxel_size=VS)
    if swc:
        (folder / f"{name}.swc").write_text(SWC)


def make_flat(folder: Path, names=("a", "b", "c")) -> Path:
    for i, name in enumerate(names):
        make_case(folder, name, seed=i)
    return folder


def cli_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """`neurovit` with only `prepare`, built as neurovit.cli.build_parser builds it (without its slow imports)."""
    parent = argparse.ArgumentParser(prog="neurovit")
    sub = parent.add_subparsers(dest="command", metavar="COMMAND")
    return parent, add_prepare_parser(sub)


def run_cli(*argv) -> int:
    """`neurovit prepare ARGV...`: parse and run the command (as neurovit.cli.main does)."""
    args = cli_parser()[0].parse_args(["prepare", *map(str, argv)])
    return args.func(args)


def read_meta(out: Path) -> dict:
    return yaml.safe_load((out / "dataset.yaml").read_bytes().decode("utf-8"))


# =================================================================================== add_prepare_parser
def test_prepare_help_matches_the_snapshot(monkeypatch):
    """`neurovit --help`'s line for prepare and `neurovit prepare --help`, compared with
    tests/snapshots/prepare_help.txt.

    After an intended change of the help text, regenerate the snapshot with
    `NEUROVIT_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_mutation_kills_prepare.py -k snapshot`
    and review the diff of tests/snapshots/prepare_help.txt.
    """
    # x_add_prepare_parser__mutmut_*: every help/description text, metavar, choices and required mutant
    # (the texts as a lower/upper/XX-wrapped string or None, metavars None or renamed, --swc-units without
    # choices, --out not required, --overwrite without store_true).
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps to the terminal width
    monkeypatch.setenv("NO_COLOR", "1")  # Python >= 3.14 may colour help text
    parent, prepare = cli_parser()
    text = parent.format_help() + "=" * 20 + "\n" + prepare.format_help()
    if os.environ.get("NEUROVIT_UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text, encoding="utf-8")
    assert text == SNAPSHOT.read_text(encoding="utf-8")


def test_prepare_arguments_defaults_and_types():
    # x_add_prepare_parser__mutmut_*: src/--out/--images/--swc/--labels type=Path, --voxel-size/--split
    # type=float, the defaults of --swc-units ("UM"), --split ((1.6|0.6, 1.2|0.2, ...)) and --seed (1),
    # --out required, --swc-units choices, --overwrite a flag
    parse = cli_parser()[0].parse_args
    defaults = vars(parse(["prepare", "src", "--out", "ds"]))
    assert defaults == {"command": "prepare", "src": Path("src"), "out": Path("ds"), "images": None,
                        "swc": None, "labels": None, "swc_units": "um", "voxel_size": None,
                        "split": (0.6, 0.2, 0.2), "seed": 0, "skip_bad": False, "copy": False,
                        "overwrite": False, "no_progress": False, "func": prep._run_prepare}
    given = vars(parse(["prepare", "--images", "i", "--swc", "s", "--labels", "l", "--out", "o",
                        "--swc-units", "voxel", "--voxel-size", "1", "0.5", "2", "--split", "1", "0", "3",
                        "--seed", "7", "--skip-bad", "--copy", "--overwrite", "--no-progress"]))
    assert given == {"command": "prepare", "src": None, "out": Path("o"), "images": Path("i"),
                     "swc": Path("s"), "labels": Path("l"), "swc_units": "voxel", "voxel_size": [1.0, 0.5, 2.0],
                     "split": [1.0, 0.0, 3.0], "seed": 7, "skip_bad": True, "copy": True, "overwrite": True,
                     "no_progress": True, "func": prep._run_prepare}
    assert all(type(v) is float for v in given["voxel_size"] + given["split"])
    for bad in (["prepare", "src"], ["prepare", "src", "--out", "o", "--swc-units", "mm"],
                ["prepare", "src", "--out", "o", "--overwrite", "yes"]):
        with pytest.raises(SystemExit) as exc:
            parse(bad)
        assert exc.value.code == 2, bad


# =============================================================================== PrepareReport.format_table
def test_format_table_exact_text():
    # xǁPrepareReportǁformat_table__mutmut_2..14 (header), 21/30 (shape or "-"), 31/32/34/40..45 (voxel
    # size, "?" when the image has no voxel size, "-" when there is no image), 46/48/49/55 (fg %), 56/57/58/
    # 63/64 (nodes, 0 shown as 0), 68 (split), 71/75 (problem kinds, once each, or "ok"), 81/83/85 (left
    # aligned, two spaces, no trailing blanks), 97/99/101 (the rule under the header), 103 (lines)
    rows = [
        {"name": "alpha", "shape": (10, 40, 40), "voxel_size": (1.0, 0.5, 0.25), "foreground": 0.0123456,
         "swc_nodes": 6, "split": "train", "kinds": []},
        {"name": "b", "shape": (3, 4, 5), "voxel_size": None, "foreground": None, "swc_nodes": 0,
         "split": None, "kinds": ["voxel size"]},
        {"name": "long.name.x", "shape": None, "voxel_size": None, "foreground": 0.0, "swc_nodes": None,
         "split": None, "kinds": ["no image", "no image", "swc"]},
    ]
    table = PrepareReport(rows, [], [], None).format_table()
    assert table == (
        "name         shape (z,y,x)  voxel µm (z,y,x)  fg %   nodes  split  problems\n"
        "-----------  -------------  ----------------  -----  -----  -----  -------------\n"
        "alpha        10x40x40       1 0.5 0.25        1.235  6      train  ok\n"
        "b            3x4x5          ?                 -      0      -      voxel size\n"
        "long.name.x  -              -                 0.000  -      -      no image, swc"
    )


# ================================================================================== prepare_dataset
def test_swc_units_aliases_and_the_message_for_others(tmp_path):
    # x_prepare_dataset__mutmut_15..22 ("µm" micro sign, "μm" Greek mu), 27..30 ("voxels"), 36 (message),
    # 99/105 (the report's units)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.swc").write_text(SWC)  # no image: a quick, failing run that still reports the units
    for given, units in (("µm", "um"), ("μm", "um"), ("UM", "um"), ("voxels", "voxel"), ("Voxel", "voxel")):
        report = prepare_dataset(tmp_path / "ds", src=src, swc_units=given)
        assert report.swc_units == units, given
        assert report.out is None and report.skipped == [] and not (tmp_path / "ds").exists()
    with pytest.raises(DatasetError) as exc:
        prepare_dataset(tmp_path / "ds", src=src, swc_units="mm")
    assert str(exc.value) == "--swc-units must be 'um' or 'voxel', got 'mm'"


def test_bad_voxel_size_names_the_option(tmp_path):
    # x_prepare_dataset__mutmut_40/42/43/44/45/46
    with pytest.raises(DatasetError) as exc:
        prepare_dataset(tmp_path / "ds", src=make_flat(tmp_path / "src", ("a",)), voxel_size=(1, 0, 1))
    assert str(exc.value) == "--voxel-size must be three positive numbers (z, y, x) in µm, got (1, 0, 1)"


def test_defaults_are_recorded_and_no_progress_bar(tmp_path, capsys):
    # x_prepare_dataset__mutmut_3 (seed 0), 7/73 (no progress bar by default), 123/124/128/129/135/136/142/
    # 143 (the `prepare` record), 137/138/141 ("image metadata" without --voxel-size)
    src = make_flat(tmp_path / "src", ("a", "b", "c"))
    out = tmp_path / "ds"
    report = prepare_dataset(out, src=src)
    assert report.out == out and report.swc_units == "um"
    assert capsys.readouterr().err == ""
    meta = read_meta(out)
    assert meta["prepare"] == {"layout": f"flat folder {src}", "seed": 0, "split_fractions": [0.6, 0.2, 0.2],
                               "voxel_size_from": "image metadata", "linked": True, "skipped": []}
    assert {r["name"]: r["split"] for r in report.rows} == assign_splits(["a", "b", "c"], (0.6, 0.2, 0.2), 0)


def test_given_voxel_size_seed_and_split_are_recorded(tmp_path):
    # x_prepare_dataset__mutmut_131..134 (fractions rounded to 6 digits), 137..141 ("--voxel-size")
    src = make_flat(tmp_path / "src", ("a", "b", "c"))
    out = tmp_path / "ds"
    prepare_dataset(out, src=src, voxel_size=VS, split=(1, 1, 1), seed=5)
    assert read_meta(out)["prepare"] == {
        "layout": f"flat folder {src}", "seed": 5, "split_fractions": [0.333333, 0.333333, 0.333333],
        "voxel_size_from": "--voxel-size", "linked": True, "skipped": []}


def test_progress_bar_names_the_step_and_counts_cases(tmp_path, capsys):
    # x_prepare_dataset__mutmut_67..78 (tqdm's desc "prepare", unit "case", shown when progress=True even
    # when stderr is not a terminal)
    report = prepare_dataset(tmp_path / "ds", src=make_flat(tmp_path / "src", ("a", "b")), progress=True)
    assert report.out is not None
    err = capsys.readouterr().err
    last = re.split(r"[\r\n]+", err.strip())[-1]
    assert re.fullmatch(r"prepare: 100%\|.*\| 2/2 \[.*, [\d.?]+(case/s|s/case)\]", last), err


def test_missing_partner_message_says_label_only_when_labels_are_given(tmp_path):
    # x_prepare_dataset__mutmut_82/87 (has_labels), 110 (skipped is [] when nothing is written)
    src = make_flat(tmp_path / "src", ("a", "b"))
    (src / "b.swc").unlink()
    report = prepare_dataset(tmp_path / "ds", src=src)
    assert report.errors == ["b: b.tif has no SWC (expected b.swc)"] and report.skipped == []

    labels = tmp_path / "labels"
    mask = np.zeros(SHAPE, np.uint8)
    mask[3, 8, 4:8] = 1
    write_volume(labels / "a.tif", mask, voxel_size=VS)
    report = prepare_dataset(tmp_path / "ds", images=src, labels=labels)
    assert report.errors == ["b: b.tif has no SWC or label (expected b.swc)"] and report.skipped == []
    assert report.out is None and not (tmp_path / "ds").exists()


# ====================================================================================== _run_prepare
def test_cli_passes_every_option_and_prints_the_summary(tmp_path, capsys):
    # x__run_prepare__mutmut_6/19 (--labels), 8/21 (--voxel-size), 20 (--swc-units), 12/25 (--copy),
    # 13/26 (--overwrite), 14/27/29 (progress bar unless --no-progress), 75..78 ("copied"), 94/97 (no note
    # when val and test have volumes); x__write__mutmut_40 (labels are copied with --copy)
    images, swc, labels = tmp_path / "img", tmp_path / "swc", tmp_path / "lab"
    images.mkdir()
    for i, name in enumerate(("a", "b", "c")):
        tifffile.imwrite(images / f"{name}.tif", stack(i))  # no voxel size in the files
    swc.mkdir()
    for name in ("a", "b"):
        (swc / f"{name}.swc").write_text(SWC)
    labels.mkdir()
    mask = np.zeros(SHAPE, np.uint8)
    mask[3, 8, 4:8] = 1
    tifffile.imwrite(labels / "c.tif", mask)
    out = tmp_path / "ds"
    out.mkdir()
    (out / "old.txt").write_text("old")

    assert run_cli("--images", images, "--swc", swc, "--labels", labels, "--out", out, "--voxel-size", "1",
                   "0.5", "0.5", "--swc-units", "voxel", "--copy", "--overwrite") == 0
    captured = capsys.readouterr()
    assert captured.out.split("\n\n", 1)[1] == (
        f"wrote 3 volumes to {out} (train 1, val 1, test 1); voxel size 1 x 0.5 x 0.5 µm; SWC units voxel; "
        "images copied\n")
    assert re.search(r"prepare: 100%\|.*\| 3/3 ", captured.err)
    assert not (out / "old.txt").exists()
    for path in (out / "images" / "a.tif", out / "labels" / "c.tif"):
        assert path.is_file() and not path.is_symlink()
    assert tifffile.imread(out / "labels" / "c.tif").sum() == 4
    meta = read_meta(out)
    assert meta["swc_units"] == "voxel" and meta["prepare"]["voxel_size_from"] == "--voxel-size"


def test_cli_linked_with_two_cases_notes_the_empty_splits(tmp_path, capsys):
    # x__run_prepare__mutmut_29 (no bar with --no-progress), 79/80 ("linked"), 84/96/98/100/101 (the note)
    src = make_flat(tmp_path / "src", ("a", "b"))
    out = tmp_path / "ds"
    assert run_cli(src, "--out", out, "--no-progress") == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.split("\n\n", 1)[1] == (
        f"wrote 2 volumes to {out} (train 2, val 0, test 0); voxel size 1 x 0.5 x 0.5 µm; SWC units um; "
        "images linked\n"
        "note: no val or test volumes: with fewer than 3 cases every case goes to train\n")


def test_cli_one_problem_writes_nothing(tmp_path, capsys):
    # x__run_prepare__mutmut_31..34/36/37/38/39/41 ("1 problem:" on stderr), 58/59 (the advice)
    src = make_flat(tmp_path / "src", ("a", "b"))
    (src / "b.swc").unlink()
    out = tmp_path / "ds"
    assert run_cli(src, "--out", out, "--no-progress") == 2
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].startswith("name ")  # the table
    assert captured.err == (
        "\n1 problem:\n"
        "  b: b.tif has no SWC (expected b.swc)\n"
        f"nothing written to {out}: fix the problems above, or pass --skip-bad to leave those cases out\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_cli_skip_bad_lists_the_cases_left_out(tmp_path, capsys):
    # x__run_prepare__mutmut_35/40 ("2 problems:"), 48..53 (nothing passed), 83 (", " between names),
    # 95 (no note for a split fraction of 0)
    src = make_flat(tmp_path / "src", ("a", "b", "c"))
    (src / "b.swc").unlink()
    (src / "c.swc").unlink()
    problems = "\n2 problems:\n  b: b.tif has no SWC (expected b.swc)\n  c: c.tif has no SWC (expected c.swc)\n"
    out = tmp_path / "ds"
    assert run_cli(src, "--out", out, "--no-progress", "--skip-bad", "--split", "1", "0", "0") == 0
    captured = capsys.readouterr()
    assert captured.err == problems
    assert captured.out.split("\n\n", 1)[1] == (
        f"wrote 1 volumes to {out} (train 1, val 0, test 0); voxel size 1 x 0.5 x 0.5 µm; SWC units um; "
        "images linked\n"
        "left out (--skip-bad): b, c\n")

    (src / "a.swc").unlink()
    (src / "b.swc").write_text("1 1 2 3\n")  # 4 columns
    (src / "c.swc").write_text(SWC)
    (src / "c.tif").unlink()
    assert run_cli(src, "--out", tmp_path / "ds2", "--no-progress", "--skip-bad") == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("\n3 problems:\n")
    assert captured.err.endswith("\nnothing written: no case passed the checks\n")
    assert not (tmp_path / "ds2").exists()


# =========================================================================================== _write
def test_dataset_yaml_records_each_volume(tmp_path):
    # x__write__mutmut_71..78 (foreground_fraction rounded to 6 digits), 81/82 (voxel_size_zyx_um),
    # 84..92 (source paths)
    images, labels, swc = tmp_path / "img", tmp_path / "lab", tmp_path / "swc"
    make_case(images, "a", swc=False)
    make_case(images, "c", swc=False, seed=2)
    swc.mkdir()
    (swc / "a.swc").write_text(SWC)
    mask = np.zeros(SHAPE, np.uint8)
    mask[3, 8, 4:7] = 1  # 3 of 1536 voxels: 0.001953125
    write_volume(labels / "c.tif", mask, voxel_size=VS)
    out = tmp_path / "ds"
    report = prepare_dataset(out, images=images, swc=swc, labels=labels, split=(1, 0, 0))
    fg_a = next(r["foreground"] for r in report.rows if r["name"] == "a")
    volumes = read_meta(out)["volumes"]
    assert volumes == [
        {"name": "a", "image": "images/a.tif", "swc": "swc/a.swc", "shape": list(SHAPE), "split": "train",
         "foreground_fraction": round(fg_a, 6), "swc_nodes": 2, "voxel_size_zyx_um": list(VS),
         "source": {"image": str((images / "a.tif").resolve()), "swc": str((swc / "a.swc").resolve())}},
        {"name": "c", "image": "images/c.tif", "label": "labels/c.tif", "shape": list(SHAPE), "split": "train",
         "foreground_fraction": 0.001953, "voxel_size_zyx_um": list(VS),
         "source": {"image": str((images / "c.tif").resolve()), "label": str((labels / "c.tif").resolve())}},
    ]


def test_dataset_yaml_is_utf8_in_file_order_whatever_the_locale(tmp_path, monkeypatch):
    # x__write__mutmut_116/118 (written as UTF-8, not in the locale's encoding), 124/127/129 (non-ASCII
    # names stay readable), 126/128 (keys in the written order, format first)
    src = make_flat(tmp_path / "quelle", ("zelle_µ", "b"))
    real = io.text_encoding
    # A locale whose encoding is ASCII (LANG=C without UTF-8 mode): files opened without encoding are ASCII.
    monkeypatch.setattr(io, "text_encoding", lambda enc, stacklevel=2: "ascii" if enc is None else real(enc))
    out = tmp_path / "ds"
    assert prepare_dataset(out, src=src).out == out
    monkeypatch.undo()
    text = (out / "dataset.yaml").read_bytes().decode("utf-8")
    assert text.startswith("format: neurovit-dataset/1\nvoxel_size_zyx_um:\n")
    assert "- name: zelle_µ\n  image: images/zelle_µ.tif\n" in text
    meta = yaml.safe_load(text)
    assert list(meta) == ["format", "voxel_size_zyx_um", "swc_units", "split", "volumes", "prepare"]
    assert list(meta["volumes"][0]) == ["name", "image", "swc", "shape", "split", "foreground_fraction",
                                        "swc_nodes", "voxel_size_zyx_um", "source"]


def test_out_in_a_new_nested_folder(tmp_path):
    # x__write__mutmut_9/11/13 (the parents of --out are created)
    out = tmp_path / "new" / "deeper" / "ds"
    assert prepare_dataset(out, src=make_flat(tmp_path / "src", ("a",))).out == out
    assert (out / "dataset.yaml").is_file()


@pytest.mark.parametrize("appears", ["file", "folder"])
def test_out_created_while_checking_is_not_overwritten(tmp_path, monkeypatch, appears):
    # x__write__mutmut_3/8 (--out re-checked just before writing: another process may have made it)
    src = make_flat(tmp_path / "src", ("a",))
    out = tmp_path / "ds"
    real = prep._check_spacing

    def check_spacing_while_out_appears(cases):
        if appears == "file":
            out.write_text("someone else's")
        else:
            out.mkdir()
            (out / "theirs.txt").write_text("someone else's")
        return real(cases)

    monkeypatch.setattr(prep, "_check_spacing", check_spacing_while_out_appears)
    with pytest.raises(DatasetError) as exc:
        prepare_dataset(out, src=src)
    assert str(exc.value) == {
        "file": f"--out {out} is a file; give a folder name",
        "folder": f"--out {out} exists and is not empty; choose another --out or pass --overwrite"}[appears]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "src"]
    assert (out.read_text() if appears == "file" else (out / "theirs.txt").read_text()) == "someone else's"


def test_temporary_and_replaced_folders_are_named_beside_out(tmp_path, monkeypatch):
    # x__write__mutmut_17/18 (.ds.<8 hex>.tmp), 135/136 (.ds.<8 hex>.old): the names a user finds and
    # removes after a killed run
    src = make_flat(tmp_path / "src", ("a",))
    out = tmp_path / "ds"
    out.mkdir()
    (out / "old.txt").write_text("old")
    seen = []
    real_copyfile, real_rmtree = shutil.copyfile, shutil.rmtree

    def copyfile(a, b, **kw):
        seen.append(Path(b).parent.parent)  # TMP/swc/NAME.swc
        return real_copyfile(a, b, **kw)

    def rmtree(path, *a, **kw):
        seen.append(Path(path))
        return real_rmtree(path, *a, **kw)

    monkeypatch.setattr(prep.shutil, "copyfile", copyfile)
    monkeypatch.setattr(prep.shutil, "rmtree", rmtree)
    prepare_dataset(out, src=src, overwrite=True)
    assert [p.parent for p in seen] == [tmp_path, tmp_path]
    assert re.fullmatch(r"\.ds\.[0-9a-f]{8}\.tmp", seen[0].name), seen
    assert re.fullmatch(r"\.ds\.[0-9a-f]{8}\.old", seen[1].name), seen
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "src"]


@pytest.mark.parametrize("had_out", [False, True])
def test_failed_rename_into_place_keeps_the_old_dataset(tmp_path, monkeypatch, had_out):
    # x__write__mutmut_132 (no old dataset: the rename's own error), 139/140 (the old dataset is put back)
    src = make_flat(tmp_path / "src", ("a",))
    out = tmp_path / "ds"
    if had_out:
        out.mkdir()
        (out / "old.txt").write_text("old")
    real_rename = Path.rename

    def rename(self, target):
        if self.name.endswith(".tmp"):
            raise OSError("simulated: cannot rename")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError, match="simulated: cannot rename"):
        prepare_dataset(out, src=src, overwrite=True)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["ds", "src"] if had_out else ["src"])
    if had_out:
        assert [p.name for p in out.iterdir()] == ["old.txt"] and (out / "old.txt").read_text() == "old"


def locked(monkeypatch, name: str) -> None:
    """Make os.unlink fail for files called `name` (as for a file another process holds open)."""
    real_unlink = os.unlink

    def unlink(path, *a, **kw):
        if os.path.basename(path) == name:
            raise PermissionError(13, "simulated: locked", path)
        return real_unlink(path, *a, **kw)

    monkeypatch.setattr(os, "unlink", unlink)


def test_an_old_dataset_that_cannot_be_fully_removed_does_not_fail_the_run(tmp_path, monkeypatch):
    # x__write__mutmut_143/145/146 (removing the replaced dataset ignores errors)
    src = make_flat(tmp_path / "src", ("a",))
    out = tmp_path / "ds"
    out.mkdir()
    (out / "locked.txt").write_text("old")
    locked(monkeypatch, "locked.txt")
    with pytest.warns(UserWarning, match=r"ds: written, but the dataset it replaced could not be removed") as rec:
        assert prepare_dataset(out, src=src, overwrite=True).out == out
    monkeypatch.undo()
    assert (out / "dataset.yaml").is_file() and not (out / "locked.txt").exists()
    leftover = [p.name for p in tmp_path.iterdir() if p.name.endswith(".old")]
    assert len(leftover) == 1 and (tmp_path / leftover[0] / "locked.txt").read_text() == "old"
    assert str(rec[0].message).endswith(f"; delete {tmp_path / leftover[0]}")  # the user is told what is left


def test_a_failed_write_reports_its_own_error_even_if_cleaning_up_fails(tmp_path, monkeypatch):
    # x__write__mutmut_148/150/151 (removing the temporary folder ignores errors, the cause is raised)
    src = make_flat(tmp_path / "src", ("locked", "other"))
    real_symlink = os.symlink

    def symlink(a, b, **kw):
        if Path(b).name == "other.tif":
            raise OSError("simulated: no links here")
        return real_symlink(a, b, **kw)

    monkeypatch.setattr(prep.os, "symlink", symlink)
    locked(monkeypatch, "locked.tif")
    with pytest.raises(DatasetError, match="cannot create a symbolic link to .*other.tif .*pass --copy"):
        prepare_dataset(tmp_path / "ds", src=src)
    monkeypatch.undo()
    assert not (tmp_path / "ds").exists()
