"""Behaviour the other tests did not back: what the fit callbacks write and log (and when), the W&B media,
the best-checkpoint rule of the base config, the Frangi + Otsu baseline, the render/info/baseline commands,
dataset folders without dataset.yaml, the 2D stand-in source, the training losses and bf16 prediction."""

from __future__ import annotations

import csv
import importlib
import json
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import MagicMock

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_fit_args

from neurovit.cli import main
from neurovit.data.synth import SynthConfig, synthesize_dataset
from neurovit.metrics import dice

REPO = Path(__file__).resolve().parents[1]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- ValidationWriter schedule
def fake_trainer(root: Path, epoch: int, *, max_epochs: int, sanity: bool = False) -> SimpleNamespace:
    return SimpleNamespace(current_epoch=epoch, max_epochs=max_epochs, sanity_checking=sanity, global_step=10 * epoch,
                           default_root_dir=str(root), is_global_zero=True)


def val_output(name: str, value: float, shape=(3, 8, 8)) -> dict:
    return {"name": name, "prob": torch.full(shape, value), "pred": torch.full(shape, value > 0.5),
            "scores": {"recall": value, "dice": value / 2, "precision": 1.0 - value}}


def run_validation(cb, trainer, outputs: list[dict]) -> None:
    cb.on_validation_epoch_start(trainer, None)
    for i, out in enumerate(outputs):
        cb.on_validation_batch_end(trainer, None, out, None, i)
    cb.on_validation_epoch_end(trainer, None)


def test_validation_writer_writes_tiffs_every_n_epochs_and_the_last_and_tables_every_validation(tmp_path):
    from neurovit.data.tiff import read_stack
    from neurovit.lit.callbacks import ValidationWriter

    root = tmp_path / "run"
    cb = ValidationWriter(every_n_epochs=3)
    outputs = [val_output("b", 0.75), val_output("a", 0.25)]
    for epoch in (0, 2, 6):  # the sanity check (at the start, or of a run resumed at a due epoch) writes nothing
        run_validation(cb, fake_trainer(root, epoch, max_epochs=7, sanity=True), outputs)
    assert not root.exists()
    tiffs_at, tables_at = [], []
    for epoch in range(7):
        run_validation(cb, fake_trainer(root, epoch, max_epochs=7), outputs)
        written = sorted(p.name for p in (root / "predictions").glob("*.tif"))
        if written:
            assert written == ["a.tif", "b.tif"]
            tiffs_at.append(epoch)
            for p in (root / "predictions").iterdir():
                p.unlink()
        summary = json.loads((root / "metrics.json").read_text())
        tables_at.append(summary["epoch"])
    assert tiffs_at == [2, 5, 6]  # every 3rd epoch (1-based) and the last one
    assert tables_at == list(range(7))  # the metric tables are rewritten at every validation
    rows = read_csv(root / "val_metrics.csv")
    assert list(rows[0]) == ["name", "dice", "precision", "recall"]
    assert [r["name"] for r in rows] == ["a", "b"]  # sorted by name
    assert [float(r["dice"]) for r in rows] == [0.125, 0.375]
    assert summary["mean"]["dice"] == pytest.approx(0.25) and summary["std"]["dice"] == pytest.approx(0.125)
    # the TIFFs hold the float32 probabilities; test volumes always write, into test_predictions/
    cb.on_test_epoch_start(fake_trainer(root, 1, max_epochs=7), None)
    cb.on_test_batch_end(fake_trainer(root, 1, max_epochs=7), None, val_output("c", 0.625), None, 0)
    cb.on_test_epoch_end(fake_trainer(root, 1, max_epochs=7), None)
    prob = read_stack(root / "test_predictions" / "c.tif")
    assert prob.dtype == np.float32 and np.all(prob == 0.625)
    assert [r["name"] for r in read_csv(root / "test_metrics.csv")] == ["c"]


def test_unbounded_training_writes_only_every_n_epochs():
    from neurovit.lit.callbacks import _epoch_due

    due = [_epoch_due(SimpleNamespace(sanity_checking=False, max_epochs=-1, current_epoch=e), 3) for e in range(6)]
    assert due == [False, False, True, False, False, True]


# --------------------------------------------------------------------------- a real fit with validation
@pytest.fixture(scope="module")
def validated_fit(tmp_path_factory):
    """A 3-epoch tiny fit validating 2 volumes every epoch, predictions and reconstructions every 2nd epoch,
    metrics logged to CSV; returns (dataset, run folder, logged rows, prediction TIFF writes)."""
    import neurovit.data.tiff as tiff

    tmp = tmp_path_factory.mktemp("validated")
    synthesize_dataset(tmp / "ds", SynthConfig(n_volumes=4, shape=(8, 40, 40), seed=1, split=(0.5, 0.5, 0.0)),
                       progress=False)
    writes = []
    real = tiff.write_stack

    def spy(path, array, **kw):
        if Path(path).parent.name == "predictions":
            writes.append(Path(path).name)
        return real(path, array, **kw)

    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "disabled")
    mp.setattr(tiff, "write_stack", spy)
    try:
        assert main(tiny_fit_args(tmp / "ds", tmp / "run", "--trainer.max_epochs", "3",
                                  "--trainer.limit_val_batches", "1.0", "--trainer.check_val_every_n_epoch", "1",
                                  "--outputs.every_n_epochs", "2", "--reconstruction.every_n_epochs", "2",
                                  "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
                                  "--trainer.logger.save_dir", str(tmp / "log"), "--model.sw_batch_size", "64")) == 0
    finally:
        mp.undo()
    logged = read_csv(next((tmp / "log").rglob("metrics.csv")))
    return tmp / "ds", tmp / "run", logged, writes


def logged_at(logged: list[dict], key: str) -> dict[int, float]:
    return {int(r["epoch"]): float(r[key]) for r in logged if r.get(key)}


def test_fit_metric_table_and_prediction_tiffs_match_what_the_module_logged(validated_fit):
    from neurovit.data.folder import open_dataset
    from neurovit.data.tiff import read_stack

    data, run, logged, writes = validated_fit
    val = {r.name: r for r in open_dataset(data).volumes("val")}
    assert len(val) == 2
    # 2 volumes at epochs 2 and 3 (every 2nd and the last), none at epoch 1 or in the sanity check
    assert sorted(writes) == sorted(2 * [f"{n}.tif" for n in val])
    rows = read_csv(run / "val_metrics.csv")
    assert [r["name"] for r in rows] == sorted(val)  # one row per validation volume
    dice_logged = logged_at(logged, "val/dice")
    assert sorted(dice_logged) == [0, 1, 2]
    assert np.mean([float(r["dice"]) for r in rows]) == pytest.approx(dice_logged[2], abs=1e-6)
    for r in rows:  # the TIFF holds the probabilities the row was scored from
        prob = read_stack(run / "predictions" / f"{r['name']}.tif")
        truth = read_stack(val[r["name"]].label) > 0
        assert prob.dtype == np.float32 and prob.shape == truth.shape
        assert dice(prob > 0.5, truth) == pytest.approx(float(r["dice"]), abs=1e-9)


def test_fit_reconstructions_are_swc_files_and_their_esa_is_logged_every_n_epochs(validated_fit):
    from neurovit.data.swc import read_swc

    _, run, logged, _ = validated_fit
    esa_logged = logged_at(logged, "val/esa")
    assert sorted(esa_logged) == [1, 2]  # every 2nd epoch (1-based) and the last; not epoch 0
    rows = read_csv(run / "val_reconstruction.csv")
    assert len(rows) == 2 and all(int(r["nodes"]) >= 2 for r in rows)
    assert np.mean([float(r["esa"]) for r in rows]) == pytest.approx(esa_logged[2], rel=1e-5)
    for r in rows:
        path = run / "reconstructions" / "val" / f"{r['name']}.swc"
        text = path.read_text()
        assert "# units: voxel" in text and "# epoch 2" in text  # voxel units (docstring), the last epoch's trace
        tree = read_swc(path)
        assert tree.units == "voxel" and tree.n_nodes == int(r["nodes"])
        assert (tree.xyz >= -0.5).all() and (tree.xyz[:, :2] <= 40).all() and (tree.xyz[:, 2] <= 8).all()


# --------------------------------------------------------------------------- best checkpoint of the base config
class ScriptedDice(L.LightningModule):
    """Logs a given val/dice at each epoch (no data, one parameter)."""

    def __init__(self, values: list[float]):
        super().__init__()
        self.values = values
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w - 1).pow(2).sum() + 0 * batch.sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/dice", self.values[self.current_epoch], batch_size=1)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.zeros(2, 1), batch_size=1)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.zeros(2, 1), batch_size=1)


def test_base_config_keeps_the_checkpoint_of_the_highest_val_dice(tmp_path):
    callbacks = []
    for spec in yaml.safe_load((REPO / "experiments/base.yaml").read_text())["trainer"]["callbacks"]:
        module, name = spec["class_path"].rsplit(".", 1)
        if name == "RunCheckpoint":
            callbacks.append(getattr(importlib.import_module(module), name)(**spec.get("init_args", {})))
    assert len(callbacks) == 2
    values = [0.2, 0.7, 0.5, 0.65]
    trainer = L.Trainer(default_root_dir=str(tmp_path), max_epochs=4, callbacks=callbacks, logger=False,
                        accelerator="cpu", devices=1, num_sanity_val_steps=0, enable_progress_bar=False,
                        enable_model_summary=False, log_every_n_steps=1)
    trainer.fit(ScriptedDice(values))
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == ["best-epoch001-dice0.7000.ckpt", "last.ckpt"]  # the max, named by its epoch and Dice
    best = torch.load(tmp_path / "checkpoints" / files[0], map_location="cpu", weights_only=False)
    assert best["epoch"] == 1
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 3
    assert trainer.checkpoint_callback.best_model_score == pytest.approx(0.7)


# --------------------------------------------------------------------------- W&B media
def media_batch(seed: int, shape=(4, 12, 16)):
    rng = np.random.default_rng(seed)
    image = torch.from_numpy(rng.random(shape, dtype=np.float32))
    label = torch.from_numpy(rng.random(shape) > 0.8).to(torch.uint8)
    pred = torch.from_numpy(rng.random(shape) > 0.7)
    scores = {"recall": 0.1 * seed, "dice": 0.2 + 0.1 * seed, "precision": 0.3}
    return {"image": image[None, None], "label": label[None, None]}, {"name": f"vol{seed}", "pred": pred,
                                                                        "scores": scores, "prob": pred.float()}


def test_wandb_media_logs_overlays_of_the_first_volumes_and_a_table_of_all(tmp_path):
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    from neurovit.lit.callbacks import WandbMedia
    from neurovit.viz import overlay_panel

    logger = MagicMock(spec=WandbLogger)
    cb = WandbMedia(n_volumes=2)
    batches = [media_batch(i) for i in range(3)]
    for step in (7, 14):  # a second epoch starts afresh
        trainer = SimpleNamespace(loggers=[logger], sanity_checking=False, global_step=step)
        cb.on_validation_epoch_start(trainer, None)
        for i, (batch, out) in enumerate(batches):
            cb.on_validation_batch_end(trainer, None, out, batch, i)
        cb.on_validation_epoch_end(trainer, None)
    assert logger.log_image.call_count == 2 and logger.log_table.call_count == 2
    kw = logger.log_table.call_args.kwargs
    assert kw["key"] == "val/volumes" and kw["step"] == 14
    assert kw["columns"] == ["name", "dice", "precision", "recall"]
    assert kw["data"] == [[f"vol{i}", 0.2 + 0.1 * i, 0.3, 0.1 * i] for i in range(3)]
    kw = logger.log_image.call_args.kwargs
    assert kw["key"] == "val/mip" and kw["step"] == 14 and len(kw["images"]) == len(kw["caption"]) == 2
    for i, (panel, caption) in enumerate(zip(kw["images"], kw["caption"], strict=True)):
        batch, out = batches[i]
        want = overlay_panel(batch["image"][0, 0].numpy(), batch["label"][0, 0].numpy(), out["pred"].numpy())
        assert panel.shape == (12, 48, 3) and np.array_equal(panel, want)  # image | truth | prediction
        assert caption.startswith(f"vol{i}: Dice {0.2 + 0.1 * i:.3f}")
    # nothing in the sanity check, and nothing without a W&B logger
    logger.reset_mock()
    sanity = SimpleNamespace(loggers=[logger], sanity_checking=True, global_step=0)
    cb.on_validation_epoch_start(sanity, None)
    cb.on_validation_batch_end(sanity, None, batches[0][1], batches[0][0], 0)
    cb.on_validation_epoch_end(sanity, None)
    other = SimpleNamespace(loggers=[CSVLogger(str(tmp_path))], sanity_checking=False, global_step=0)
    cb.on_validation_epoch_start(other, None)
    cb.on_validation_batch_end(other, None, batches[0][1], batches[0][0], 0)
    cb.on_validation_epoch_end(other, None)
    assert cb.rows == [] and not logger.log_image.called and not logger.log_table.called


# --------------------------------------------------------------------------- Frangi + Otsu baseline
def tube_volume(seed: int, *, tube: bool = True):
    shape = (16, 48, 48)
    zz, yy, xx = np.indices(shape)
    mask = ((zz - 8) ** 2 + (yy - 24) ** 2 <= 4) & (xx >= 4) & (xx < 44)  # radius 2 along x
    image = 100.0 + 60.0 * (mask if tube else 0) + np.random.default_rng(seed).normal(0, 10, shape)
    return image.astype(np.float32), mask


def test_frangi_otsu_finds_a_bright_tube_in_noise_and_little_in_noise_alone():
    from neurovit.baselines import frangi_otsu

    image, tube = tube_volume(0)
    found = frangi_otsu(image)
    assert found.dtype == bool and found.shape == tube.shape
    assert dice(found, tube) > 0.6  # measured 0.73-0.80 over seeds 0-3
    noise, _ = tube_volume(0, tube=False)
    assert dice(frangi_otsu(noise), tube) < 0.1  # measured 0.01-0.03
    dark = 200.0 - image  # a dark tube is not a bright ridge
    assert dice(frangi_otsu(dark), tube) < 0.1


# --------------------------------------------------------------------------- render / info / baseline commands
def test_cli_render_writes_the_rendered_mask_with_its_voxel_size(tiny_swc, tmp_path, capsys):
    from neurovit.data.render import fit_to_volume, render_mask
    from neurovit.data.swc import read_swc
    from neurovit.data.volumes import open_volume

    out = tmp_path / "mask.tif"
    vs = (2.0, 0.5, 1.0)
    assert main(["render", "--swc", str(tiny_swc), "--out", str(out), "--voxel-size", *map(str, vs),
                 "--margin", "3"]) == 0
    m, shape = fit_to_volume(read_swc(tiny_swc), vs, 3.0)
    want = render_mask(m, shape, vs)
    vol = open_volume(out)
    got = vol.read()
    assert vol.shape == shape and vol.voxel_size == pytest.approx(vs) and got.dtype == np.uint8
    assert np.array_equal(got > 0, want) and set(np.unique(got)) == {0, 1}
    # the tree spans 8 µm in x and 3 µm in y (plus radii), with 3 µm margins
    assert shape[2] >= (8 + 6) / vs[2] and shape[1] >= (3 + 6) / vs[1]
    printed = capsys.readouterr().out
    assert f"{int(want.sum())} foreground voxels" in printed and "6 nodes" in printed and str(out) in printed


def test_cli_info_prints_each_files_counts(tiny_swc, write_swc_text, capsys):
    line = write_swc_text("# units: voxel\n1 1 0 0 0 1 -1\n2 3 3 4 0 1 1\n", name="line.swc")
    assert main(["info", str(tiny_swc), str(line)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "tiny.swc: nodes 6, roots 1, branch_points 2, branches 4, tips 3, length 10.236, units um",
        "line.swc: nodes 2, roots 1, branch_points 0, branches 1, tips 1, length 5.0, units voxel"]


def test_cli_baseline_prints_the_dice_of_the_masks_it_writes(tiny_dataset, tmp_path, capsys):
    from neurovit.baselines import frangi_otsu
    from neurovit.data.folder import open_dataset
    from neurovit.data.volumes import open_volume

    assert main(["baseline", "--data", str(tiny_dataset), "--split", "test", "--out", str(tmp_path / "m")]) == 0
    lines = capsys.readouterr().out.splitlines()
    ds = open_dataset(tiny_dataset)
    records = ds.volumes("test")
    assert len(lines) == len(records) + 1
    scores = []
    for r, text in zip(records, lines, strict=False):
        mask = frangi_otsu(open_volume(r.image).read())
        scores.append(dice(mask, open_volume(r.label).read() > 0))
        assert text == f"{r.name}: Frangi + Otsu Dice {scores[-1]:.4f}"
        written = open_volume(tmp_path / "m" / f"{r.name}.tif")
        assert np.array_equal(written.read() > 0, mask) and written.voxel_size == pytest.approx(ds.voxel_size)
    assert 0.0 < scores[0] < 1.0
    assert lines[-1] == f"Frangi + Otsu baseline, test split: mean Dice {np.mean(scores):.4f} over {len(scores)} volumes"


@pytest.mark.parametrize("command", ["render", "info", "baseline"])
def test_cli_missing_input_is_a_one_line_error_naming_it(command, tmp_path, capsys):
    missing = tmp_path / ("no_dataset" if command == "baseline" else "nothing_here.swc")
    argv = {"render": ["render", "--swc", str(missing), "--out", str(tmp_path / "m.tif")],
            "info": ["info", str(missing)],
            "baseline": ["baseline", "--data", str(missing)]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"neurovit {command}: error: ")
    assert str(missing) in err and "Traceback" not in err
    assert not (tmp_path / "m.tif").exists()


def test_cli_baseline_of_an_empty_split_is_an_error(tmp_path, capsys):
    synthesize_dataset(tmp_path / "ds", SynthConfig(n_volumes=2, shape=(6, 24, 24), seed=2, split=(1.0, 0.0, 0.0)),
                       progress=False)
    assert main(["baseline", "--data", str(tmp_path / "ds"), "--split", "val"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == f"neurovit baseline: {tmp_path / 'ds'} has no val volumes"


# --------------------------------------------------------------------------- dataset folder without dataset.yaml
def layout_folder(root: Path, names=("a", "b", "c", "d", "e"), *, vs=(2.0, 1.0, 1.0), swc_only=("e",),
                  unlabeled=()) -> Path:
    from neurovit.data.tiff import write_stack

    for n in names:
        write_stack(root / "images" / f"{n}.tif", np.full((4, 10, 10), 7, np.uint8), voxel_size=vs)
        if n in unlabeled:
            continue
        if n not in swc_only:
            write_stack(root / "labels" / f"{n}.tif", np.ones((4, 10, 10), np.uint8), voxel_size=vs)
        if n in swc_only or n == "a":
            (root / "swc").mkdir(parents=True, exist_ok=True)
            (root / "swc" / f"{n}.swc").write_text("1 1 2 2 1 1 -1\n2 3 6 2 1 1 1\n")
    return root


def test_folder_without_dataset_yaml_indexes_images_matches_ground_truth_and_splits(tmp_path):
    from neurovit.data.folder import SPLITS, open_dataset

    root = layout_folder(tmp_path / "ds")
    assert not (root / "dataset.yaml").exists()
    ds = open_dataset(root)
    assert [r.name for r in ds.records] == ["a", "b", "c", "d", "e"]  # every images/*.tif, sorted
    by = {r.name: r for r in ds.records}
    assert by["a"].label == root / "labels" / "a.tif" and by["a"].swc == root / "swc" / "a.swc"
    assert by["b"].label == root / "labels" / "b.tif" and by["b"].swc is None
    assert by["e"].label is None and by["e"].swc == root / "swc" / "e.swc"  # SWC-only: rendered when needed
    assert all(r.image == root / "images" / f"{r.name}.tif" for r in ds.records)
    assert ds.voxel_size == pytest.approx((2.0, 1.0, 1.0))  # from the images' metadata
    counts = {s: len(ds.volumes(s)) for s in SPLITS}
    assert counts == {"train": 3, "val": 1, "test": 1}  # default split fractions 0.6 / 0.2 / 0.2
    again = open_dataset(root)
    assert [r.split for r in again.records] == [r.split for r in ds.records]  # seeded: the same every time
    splits = {seed: tuple(r.split for r in open_dataset(root, seed=seed).records) for seed in range(8)}
    assert len(set(splits.values())) > 1  # and the seed draws it
    wide = open_dataset(root, split_fractions=(0.2, 0.4, 0.4))
    assert {s: len(wide.volumes(s)) for s in SPLITS} == {"train": 1, "val": 2, "test": 2}
    three = open_dataset(layout_folder(tmp_path / "three", names=("a", "b", "c")))
    assert sorted(r.split for r in three.records) == ["test", "train", "val"]  # at least one held out of each


def test_folder_without_dataset_yaml_small_unlabeled_and_no_voxel_size(tmp_path):
    import tifffile

    from neurovit.data.folder import open_dataset
    from neurovit.errors import DatasetError

    two = open_dataset(layout_folder(tmp_path / "two", names=("a", "b")))
    assert [r.split for r in two.records] == ["train", "train"]  # too few volumes to hold any out
    with pytest.raises(DatasetError, match="no labels/NAME.tif or swc/NAME.swc for: c"):
        open_dataset(layout_folder(tmp_path / "bad", unlabeled=("c",)))
    with pytest.raises(DatasetError, match="no dataset.yaml and no images"):
        open_dataset(tmp_path / "two" / "labels")
    plain = layout_folder(tmp_path / "plain", names=("a", "b", "c"))
    tifffile.imwrite(plain / "images" / "a.tif", np.zeros((4, 10, 10), np.uint8), photometric="minisblack")  # no voxel size recorded
    with pytest.warns(UserWarning, match="assuming 1 x 1 x 1"):
        ds = open_dataset(plain)
    assert ds.voxel_size == (1.0, 1.0, 1.0)


def test_a_swc_header_in_um_is_honoured_when_its_mask_is_rendered(tmp_path):
    from neurovit.data.folder import ensure_label, open_dataset
    from neurovit.data.render import render_mask
    from neurovit.data.swc import read_swc
    from neurovit.data.tiff import read_stack
    from neurovit.evaluate import _read_tree

    root = layout_folder(tmp_path / "ds", names=("a",), swc_only=("a",), vs=(2.0, 1.0, 1.0))
    (root / "swc" / "a.swc").write_text("# units: um\n1 1 2 5 2 1 -1\n2 3 8 5 6 1 1\n")
    tree = read_swc(root / "swc" / "a.swc")
    assert tree.units == "um" and _read_tree(root / "swc" / "a.swc", "voxel").units == "um"  # as evaluate reads it
    ds = open_dataset(root)
    mask = read_stack(ensure_label(ds.records[0], ds)) > 0
    np.testing.assert_array_equal(mask, render_mask(tree, mask.shape, ds.voxel_size))


# --------------------------------------------------------------------------- the 2D stand-in source
def test_pretrain_mim_lowers_the_masked_patch_loss():
    from neurovit.ablate.source2d import pretrain_mim
    from neurovit.models import build_vit2d

    torch.manual_seed(0)
    vit = build_vit2d("neurovit_tiny_patch16", img_size=32)
    losses = pretrain_mim(vit, 30, batch_size=16, seed=0)
    assert len(losses) == 30 and all(np.isfinite(losses))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.85 * first, (first, last)  # measured 1.15 → 0.85


def test_make_source_2d_is_seeded_reuses_its_file_and_pretraining_changes_the_weights(tmp_path):
    from neurovit.ablate.source2d import make_source_2d

    def weights(path):
        return torch.load(path, map_location="cpu", weights_only=True)

    kw = dict(img_size=32, batch_size=8, verbose=False)
    a = make_source_2d(tmp_path / "a.pth", seed=3, **kw)
    b = make_source_2d(tmp_path / "b.pth", seed=3, **kw)
    c = make_source_2d(tmp_path / "c.pth", seed=4, **kw)
    wa, wb, wc = weights(a), weights(b), weights(c)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)  # same seed: same weights
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    trained = weights(make_source_2d(tmp_path / "t.pth", seed=3, pretrain_steps=6, **kw))
    changed = [k for k in wa if not torch.equal(wa[k], trained[k])]
    assert "patch_embed.proj.weight" in changed and len(changed) > len(wa) // 2
    stamp, data = a.stat().st_mtime_ns, a.read_bytes()
    assert make_source_2d(a, seed=99, pretrain_steps=6, **kw) == a  # an existing file is reused as it is
    assert a.stat().st_mtime_ns == stamp and a.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pth", "b.pth", "c.pth", "t.pth"]  # no temporary left


# --------------------------------------------------------------------------- losses
def cross(shape=(2, 1, 32, 32)) -> torch.Tensor:
    t = torch.zeros(shape)
    t[..., 14:18, 4:28] = 1
    t[..., 4:28, 14:18] = 1
    return t


def logits_of(mask: torch.Tensor, scale: float = 8.0) -> torch.Tensor:
    return (2 * mask - 1) * scale


@pytest.mark.parametrize("kind", ["dicece", "dicefocal", "dice"])
@pytest.mark.parametrize("cldice_weight", [0.0, 0.5])
def test_losses_rank_a_perfect_prediction_below_a_shifted_one_below_an_empty_one(kind, cldice_weight):
    from neurovit.lit.module import SegmentationModule

    loss = SegmentationModule._make_loss(kind, cldice_weight)
    t = cross()
    perfect = float(loss(logits_of(t), t))
    shifted = float(loss(logits_of(torch.roll(t, 3, dims=-1)), t))
    empty = float(loss(logits_of(torch.zeros_like(t)), t))
    assert perfect < shifted < empty
    assert perfect < 0.05 + 0.5 * cldice_weight  # the Dice part of a perfect prediction is ~0
    logits = logits_of(torch.roll(t, 3, dims=-1)).requires_grad_()
    loss(logits, t).backward()
    missed = (t > 0) & (torch.roll(t, 3, dims=-1) == 0)
    assert (logits.grad[missed] < 0).float().mean() > 0.9  # descent raises the logits of missed foreground


def test_cldice_term_is_added_with_its_weight():
    from neurovit.lit.module import SegmentationModule

    t = cross()
    pred = logits_of(torch.roll(t, 2, dims=-2))
    base = float(SegmentationModule._make_loss("dicece", 0.0)(pred, t))
    one = float(SegmentationModule._make_loss("dicece", 1.0)(pred, t)) - base
    two = float(SegmentationModule._make_loss("dicece", 2.0)(pred, t)) - base
    assert one > 0.05 and two == pytest.approx(2 * one, rel=1e-5)
    # a broken line keeps most voxels (Dice barely drops) but loses the topology: clDice sees it
    line = torch.zeros(1, 1, 32, 32)
    line[..., 15:17, 2:30] = 1
    broken = line.clone()
    broken[..., 14:17] = 0
    term = SegmentationModule._make_loss("dice", 1.0)
    plain = SegmentationModule._make_loss("dice", 0.0)
    assert float(term(logits_of(broken), line)) - float(plain(logits_of(broken), line)) > \
        float(term(logits_of(line), line)) - float(plain(logits_of(line), line))


def test_cldice_term_of_a_perfect_prediction_is_zero():
    from neurovit.lit.module import SegmentationModule

    t = cross()
    term = float(SegmentationModule._make_loss("dice", 1.0)(logits_of(t, 30.0), t)) - \
        float(SegmentationModule._make_loss("dice", 0.0)(logits_of(t, 30.0), t))
    assert term == pytest.approx(0.0, abs=0.01)


# --------------------------------------------------------------------------- bf16 prediction
def test_predict_bf16_is_close_to_fp32_but_really_runs_in_bf16(tiny_run, tmp_path):
    from neurovit.data.tiff import read_stack

    data, ckpt = tiny_run
    image = next((data / "images").glob("*.tif"))
    common = ["predict", "--ckpt", str(ckpt), "--input", str(image), "--no-trace", "--no-progress", "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "fp32")]) == 0
    assert main([*common, "--out", str(tmp_path / "bf16"), "--bf16"]) == 0
    a = read_stack(tmp_path / "fp32" / f"{image.stem}_prob.tif")
    b = read_stack(tmp_path / "bf16" / f"{image.stem}_prob.tif")
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
    diff = np.abs(a.astype(np.float64) - b)
    # measured on the tiny model's stacks: max 0.0046-0.0051, mean 0.0006; exactly 0 would mean fp32 ran
    assert 0 < diff.max() < 0.02 and diff.mean() < 0.002, (diff.max(), diff.mean())
    assert ((a > 0.5) != (b > 0.5)).mean() < 0.01  # measured 0.3-0.4 % (the tiny model's probabilities sit near 0.5)
