"""Ablation over 2D sources: the source registry, rows strategy+source, cached/resumed DINO sources, the
by-source figure, the offline picture gatherer and synth's own splits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from neurovit.ablate import aggregate, config_from_dict, expand_grid, run_grid
from neurovit.ablate.grid import AblationConfigError, Cell, build_fit_command, row_init_strategy, split_row
from neurovit.ablate.sources import SOURCE_KINDS, DinoSource, SourceError, make_source

REPO = Path(__file__).resolve().parents[1]
ROWS = ("scratch", "center", "vit2d", "unet3d")


def make_cfg(tmp_path: Path, **overrides):
    raw = {"name": "src-test", "out_dir": str(tmp_path / "out"), "data_dir": str(tmp_path / "data"),
           "base_configs": [str(REPO / "experiments/base.yaml"), str(REPO / "experiments/demo.yaml")],
           "strategies": {s: [str(REPO / f"experiments/{s}.yaml")] for s in ROWS},
           "sources": {"file": {"kind": "file", "path": str(tmp_path / "w.pth")},
                       "photos": {"kind": "dino", "data": str(tmp_path / "photos"), "data_kind": "images",
                                  "args": ["--trainer.max_epochs", "1"]}},
           "seeds": [0, 1], "fractions": [0.5, 1.0], "wandb": {"enabled": False}, **overrides}
    return config_from_dict(raw, tmp_path)


def test_transfer_rows_cross_every_source_and_the_others_run_once(tmp_path):
    cfg = make_cfg(tmp_path)
    assert cfg.transfer_rows == {"center", "vit2d"}  # from the rows' config files: unet3d/scratch are scratch
    assert row_init_strategy(cfg, "unet3d") == "scratch" and row_init_strategy(cfg, "vit2d") == "center"
    cells = expand_grid(cfg)
    rows = list(dict.fromkeys(c.row for c in cells))
    assert rows == ["scratch", "center+file", "center+photos", "vit2d+file", "vit2d+photos", "unet3d"]
    assert len(cells) == 6 * 2 * 2 and len({c.id for c in cells}) == len(cells)
    assert split_row("center+photos") == ("center", "photos") and split_row("scratch") == ("scratch", None)

    def init_source(cell):
        cmd = build_fit_command(cfg, cell)
        return cmd[cmd.index("--init.source") + 1] if "--init.source" in cmd else None

    assert init_source(Cell("scratch", 1.0, 0)) is None and init_source(Cell("unet3d", 1.0, 0)) is None
    assert init_source(Cell("center", 1.0, 0, "file")) == str(tmp_path / "w.pth")
    assert init_source(Cell("vit2d", 0.5, 1, "photos")) == str(tmp_path / "out/sources/photos/backbone.pth")
    assert "center+photos-f0.5-s1" in str(Cell("center", 0.5, 1, "photos").folder(cfg))


def test_older_single_source_form_keeps_its_cell_names(tmp_path):
    cfg = make_cfg(tmp_path, sources=None, source_2d={"arch": "neurovit_tiny_patch16", "pretrain_steps": 0})
    assert {c.id for c in expand_grid(cfg)} >= {"center-f1-s0", "scratch-f1-s0"}
    cmd = build_fit_command(cfg, Cell("center", 1.0, 0))
    assert cmd[cmd.index("--init.source") + 1].endswith("source2d/neurovit_tiny_patch16-seed0-mim0.pth")


@pytest.mark.parametrize("sources, message", [
    ({"a": {"kind": "torrent"}}, "needs kind"),
    ({"a": {"kind": "dino"}}, "missing ['data']"),
    ({"a": {"kind": "mim", "colour": 1}}, "unknown key(s) ['colour']"),
    ({"a+b": {"kind": "mim"}}, "may not contain"),
    ("natural", "must map"),
])
def test_bad_source_entries_name_the_key(tmp_path, sources, message):
    with pytest.raises(SourceError, match=re.escape(message)):
        make_cfg(tmp_path, sources=sources)


def test_sources_and_source_2d_together_are_refused(tmp_path):
    with pytest.raises(AblationConfigError, match="either sources or source_2d"):
        make_cfg(tmp_path, source_2d="x.pth")


def test_dino_source_on_the_training_stacks_reads_the_train_split(tmp_path):
    cfg = make_cfg(tmp_path, sources={"indomain": {"kind": "dino", "data": "train"}})
    cmd = make_source(cfg, "indomain").command()
    assert cmd[cmd.index("--data.data_dir") + 1] == str(cfg.data_dir)
    assert cmd[cmd.index("--data.kind") + 1] == "stacks" and cmd[cmd.index("--data.splits") + 1] == "[train]"
    assert cmd[cmd.index("--trainer.logger") + 1] == "false"  # wandb disabled in this grid
    other = make_cfg(tmp_path, sources={"indomain": {"kind": "dino", "data": "train", "args": ["--x", "1"]}})
    assert make_source(other, "indomain").fingerprint() != make_source(cfg, "indomain").fingerprint()


class FakePretrain:
    """Stands in for `python -m neurovit pretrain`: writes backbone.pth/.json (and a checkpoint), records calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, cmd, log: Path, env: dict) -> int:
        cmd = [str(c) for c in cmd]
        self.calls.append(cmd)
        root = Path(cmd[cmd.index("--trainer.default_root_dir") + 1])
        (root / "checkpoints").mkdir(parents=True, exist_ok=True)
        (root / "checkpoints" / "last.ckpt").write_text("ckpt")
        torch.save({"pos_embed": torch.zeros(1, 2, 3)}, root / "backbone.pth")
        (root / "backbone.json").write_text(json.dumps({"wall_seconds": 12.5, "images_seen": 640, "steps": 20,
                                                        "trained_on": {"kind": "images", "n_files": 4}}))
        return 0


def test_dino_source_is_made_once_then_cached_and_an_interrupted_one_resumes(tmp_path, monkeypatch):
    import neurovit.ablate.runner as runner

    fake = FakePretrain()
    monkeypatch.setattr(runner, "run_logged", fake)
    cfg = make_cfg(tmp_path)
    costs = runner.prepare_sources(cfg, say=lambda s: None)
    assert len(fake.calls) == 1 and "--ckpt_path" not in fake.calls[0]  # the file source needs no run
    photos = next(c for c in costs if c["source"] == "photos")
    assert photos["wall_seconds"] == 12.5 and photos["images_seen"] == 640
    table = (cfg.out_dir / "sources.csv").read_text().splitlines()
    assert table[0].startswith("source,kind,wall_seconds,images_seen") and len(table) == 3
    runner.prepare_sources(cfg, say=lambda s: None)
    assert len(fake.calls) == 1  # cached
    (cfg.out_dir / "sources/photos/cost.json").unlink()  # as if killed after a checkpoint, before the end
    runner.prepare_sources(cfg, say=lambda s: None)
    assert fake.calls[-1][-2:] == ["--ckpt_path", "last"]
    changed = make_cfg(tmp_path, sources={"photos": {"kind": "dino", "data": str(tmp_path / "photos"),
                                                     "args": ["--trainer.max_epochs", "2"]}})
    runner.prepare_sources(changed, say=lambda s: None)
    assert len(fake.calls) == 3 and "--ckpt_path" not in fake.calls[-1]  # another configuration: made afresh


def test_a_failed_pretraining_stops_with_the_log(tmp_path, monkeypatch):
    import neurovit.ablate.runner as runner

    monkeypatch.setattr(runner, "run_logged", lambda cmd, log, env: 1)
    with pytest.raises(SourceError, match="pretrain.log"):
        DinoSource(make_cfg(tmp_path), "photos", {"data": "x"}).prepare(lambda s: None)


def test_rows_by_source_get_a_table_and_a_figure(tmp_path, tiny_dataset):
    from test_ablate import FakeRunner

    def metrics(cfg, folder):
        cell = next(c for c in expand_grid(cfg) if c.folder(cfg) == folder)
        d = 0.5 + 0.1 * (cell.source == "photos") + 0.01 * cell.seed
        return {"dice": d, "cldice": d, "esa": 1.0, "dsa": 1.0, "pds": 0.1, "node_f1": 0.5, "n_test_volumes": 1}

    cfg = make_cfg(tmp_path, data_dir=str(tiny_dataset), seeds=[0, 1, 2])
    cfg.sources = {"file": {"kind": "file", "path": "x.pth"}, "mim": {"kind": "file", "path": "y.pth"},
                   "photos": {"kind": "file", "path": "z.pth"}}
    run_grid(cfg, devices="cpu", runner=FakeRunner(), evaluator=metrics, say=lambda s: None)
    paths = aggregate(cfg, say=lambda s: None)
    md = paths["markdown"].read_text()
    assert "| center+photos | 1 (" in md and "| unet3d | 1 (" in md
    png = paths["dice_by_source"]
    import matplotlib.image as mpimg

    img = mpimg.imread(png)
    assert img.shape[1] > 2.5 * img.shape[0]  # three source panels side by side
    done = json.loads((Cell("center", 1.0, 0, "photos").folder(cfg) / "done.json").read_text())
    assert done["strategy"] == "center+photos" and done["init"] == "center" and done["source"] == "photos"


def test_registry_lists_the_kinds_in_the_help():
    import argparse

    from neurovit.ablate import add_ablate_parser

    sub = argparse.ArgumentParser().add_subparsers()
    help_text = add_ablate_parser(sub).format_help()
    assert all(k in help_text for k in SOURCE_KINDS)


def test_gather_keeps_one_file_per_picture(tmp_path):
    from PIL import Image

    from neurovit.ablate.natural import gather
    from neurovit.ablate.source2d import NATURAL_IMAGES

    walls = tmp_path / "walls"
    def picture(path: Path, size: int, seed: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        base = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(base).resize((size, size), Image.NEAREST).save(path)

    for size in (64, 128, 96):  # one Plasma wallpaper in three resolutions
        picture(walls / f"Kite/contents/images/{size}x{size}.png", size, 1)
    picture(walls / "gnome/blobs-l.png", 80, 2)  # GNOME light/dark variants of one picture
    picture(walls / "gnome/blobs-d.png", 80, 3)
    picture(walls / "city.png", 70, 4)
    picture(walls / "city-copy.png", 70, 4)  # the same pixels under another name
    (walls / "notes.txt").write_text("not a picture")
    files = gather(tmp_path / "out", max_side=100, dirs=[walls])
    names = sorted(f.name for f in files if f.name.startswith("wall_"))
    assert names == ["wall_Kite.jpg", "wall_blobs.jpg", "wall_city-copy.jpg"]  # city.png: same pixels, dropped
    assert len(files) == len(NATURAL_IMAGES) + 3
    with Image.open(tmp_path / "out" / "wall_Kite.jpg") as im:
        assert max(im.size) == 100  # the 128-px file, downscaled to max_side


def test_synth_split_names_override_the_swc_headers(tmp_path):
    from neurovit.data.synth import SynthConfig, synthesize_dataset
    from neurovit.errors import DatasetError

    swc = tmp_path / "swc"
    swc.mkdir()
    for i in range(3):
        (swc / f"n{i}.swc").write_text(f"# split: train\n1 1 {10 + i} 10 5 2 -1\n2 3 {20 + i} 12 6 1.5 1\n")
    import yaml

    out = synthesize_dataset(tmp_path / "ds", SynthConfig(swc_dir=str(swc), split_names={"n2": "test", "n1": "val"},
                                                          max_shape=None), progress=False)
    split = yaml.safe_load((out / "dataset.yaml").read_text())["split"]
    assert split == {"train": ["n0"], "val": ["n1"], "test": ["n2"]}
    with pytest.raises(DatasetError, match="unknown volumes"):
        synthesize_dataset(tmp_path / "ds2", SynthConfig(swc_dir=str(swc), split_names={"n9": "test"}), progress=False)
    from neurovit.cli import main

    (tmp_path / "split.yaml").write_text("train: [n1]\nval: [n2]\ntest: [n0]\n")
    assert main(["synth", "--swc-dir", str(swc), "--split-file", str(tmp_path / "split.yaml"), "--out",
                 str(tmp_path / "ds3"), "--no-progress", "--max-shape", "0", "0", "0"]) == 0
    split = yaml.safe_load((tmp_path / "ds3" / "dataset.yaml").read_text())["split"]
    assert split == {"train": ["n1"], "val": ["n2"], "test": ["n0"]}
    assert main(["synth", "--swc-dir", str(swc), "--split-file", str(tmp_path / "nope.yaml"), "--out",
                 str(tmp_path / "ds4")]) == 2


def test_after_an_interrupt_no_worker_starts_another_command(tmp_path):
    """Ctrl-C/SIGTERM stops the running cells; a worker thread whose fit had just finished must not start its
    test (or another cell) afterwards, or the interrupted grid would go on in the background."""
    import sys

    from neurovit.ablate import runner

    try:
        runner.stop_children()
        log = tmp_path / "cell.log"
        assert runner.run_logged([sys.executable, "-c", "open('ran', 'w')"], log, {}) == runner.INTERRUPTED_RC
        assert "not started" in log.read_text() and not (tmp_path / "ran").exists()
    finally:
        runner._STOPPING.clear()
    assert runner.run_logged([sys.executable, "-c", "pass"], tmp_path / "ok.log", {}) == 0


def test_an_interrupt_stops_the_running_cells_at_once(tmp_path):
    """With 2 workers, an interrupt (in the main thread or a worker) used to wait (in ThreadPoolExecutor's `with`) for every
    running cell to finish before stopping them: up to a quarter of an hour. It must return within seconds
    with the running command terminated."""
    import sys
    import time

    from neurovit.ablate import runner

    def cell(kind):
        if kind == "long":
            return runner.run_logged([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "long.log", {})
        while not runner._LIVE:  # the long cell has started
            time.sleep(0.05)
        raise KeyboardInterrupt

    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run_parallel(cell, [("long",), ("interrupt",)], 2)
        assert time.monotonic() - t0 < 30
        deadline = time.monotonic() + 10
        while runner._LIVE and time.monotonic() < deadline:  # the long cell's thread returns once it is killed
            time.sleep(0.05)
        assert not runner._LIVE
    finally:
        runner._STOPPING.clear()
    assert runner.run_parallel(lambda x: 2 * x, [(1,), (2,), (3,)], 2) == [2, 4, 6]
    assert runner.run_parallel(lambda x: 2 * x, [(1,)], 1) == [2]
