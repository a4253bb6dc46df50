"""Bad input, faults and interruptions: one-line errors, nothing half-written, nothing silently wrong."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_fit_args

from neurovit.cli import main
from neurovit.data.volumes import write_volume
from neurovit.predict import load_model

REPO = Path(__file__).resolve().parents[1]


def fit_args(data: Path, root: Path, *extra: str) -> list[str]:
    return tiny_fit_args(data, root, *extra)


@pytest.fixture(scope="module")
def dataset(tiny_run) -> Path:
    return tiny_run[0]


@pytest.fixture(scope="module")
def checkpoint(tiny_run) -> Path:
    return tiny_run[1]


def one_line_error(capsys, *parts: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err, err
    last = err.splitlines()[-1]
    for p in parts:
        assert p in err, err
    return last


# ----------------------------------------------------------------------------------------- non-finite voxels
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nonfinite_voxel_is_counted_and_does_not_spread(checkpoint, bad):
    model = load_model(checkpoint)
    stack = np.random.default_rng(0).uniform(100, 900, size=(6, 40, 40)).astype(np.float32)
    clean = model.predict_probabilities(stack, (2.0, 1.0, 1.0))
    broken = stack.copy()
    broken[3, 20, 20] = bad
    with pytest.warns(UserWarning, match=r"1 voxel\(s\) of the stack are NaN or infinite"):
        prob = model.predict_probabilities(broken, (2.0, 1.0, 1.0))
    assert np.isfinite(prob).all()
    # one voxel set to background: the prediction barely moves (attention is global, so not exactly)
    assert np.abs(prob - clean).mean() < 0.005 and np.abs(prob - clean).max() < 0.2
    assert model.last_predict_info["nonfinite_voxels"] == 1


def test_an_all_nan_stack_is_refused(checkpoint):
    model = load_model(checkpoint)
    with pytest.raises(Exception, match="no finite voxels"):
        model.predict_probabilities(np.full((6, 40, 40), np.nan, np.float32), (2.0, 1.0, 1.0))


def test_a_stack_smaller_than_a_block_warns(checkpoint, tmp_path):
    model = load_model(checkpoint)
    with pytest.warns(UserWarning, match=r"smaller than one model block \(5 x 32 x 32\): 2 slices < 5, 20 rows < 32"):
        prob = model.predict_probabilities(np.zeros((2, 20, 20), np.uint16) + 100, (2.0, 1.0, 1.0))
    assert prob.shape == (2, 20, 20)


# ----------------------------------------------------------------------------------------- checkpoints
def test_things_that_are_not_checkpoints_get_one_line(checkpoint, tmp_path, capsys):
    stack = tmp_path / "s.tif"
    write_volume(stack, np.zeros((4, 16, 16), np.uint16))
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:5000])
    text = tmp_path / "notes.ckpt"
    text.write_text("hello\n")
    plain = tmp_path / "plain.ckpt"
    torch.save(load_model(checkpoint).net.state_dict(), plain)
    for bad, why in ((truncated, "torch cannot read it"), (text, "torch cannot read it"),
                     (plain, "a plain dict with keys")):
        assert main(["predict", "--ckpt", str(bad), "--input", str(stack), "--out", str(tmp_path / "o")]) == 2
        one_line_error(capsys, f"{bad} is not a neurovit checkpoint", why, "last.ckpt")
    assert not (tmp_path / "o").exists()


def test_a_config_whose_network_differs_from_the_checkpoint_is_an_error(dataset, checkpoint, tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    rc = main(["validate", "--config", "base", "--config", "demo", "--config", "allslices",
               "--data.data_dir", str(dataset), "--data.block_size", "32",
               "--trainer.default_root_dir", str(tmp_path / "v"), "--ckpt_path", str(checkpoint)])
    assert rc == 2
    one_line_error(capsys, "trained with another network than this config", "net.init_args.out_slices",
                   "checkpoint 'center', config 'all'")


def test_fit_needs_a_data_dir(tmp_path, capsys, monkeypatch):
    (tmp_path / "demo_out" / "data").mkdir(parents=True)  # no silent fallback to a folder in the working dir
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", "base", "--config", "demo"])
    assert exit_info.value.code == 2 and "data_dir" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- run folders
@pytest.mark.slow
def test_ckpt_path_last_resumes_and_a_second_run_is_refused(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    root = tmp_path / "run"
    assert main(["fit", "--config", "base", "--config", "demo", "--data.data_dir", str(dataset),
                 "--trainer.default_root_dir", str(root), "--ckpt_path", "last"]) == 2
    one_line_error(capsys, "--ckpt_path last", "no earlier run")
    assert main(fit_args(dataset, root)) == 0
    first = torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)
    capsys.readouterr()
    assert main(fit_args(dataset, root)) == 2  # a new run into the same folder: refused, nothing touched
    one_line_error(capsys, "already holds a run", "--ckpt_path last")
    assert main(fit_args(dataset, root, "--trainer.max_epochs", "2", "--ckpt_path", "last")) == 0
    resumed = torch.load(root / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == 2 * first["global_step"]
    assert sorted(p.name for p in (root / "checkpoints").glob("last*.ckpt")) == ["last.ckpt"]  # no last-v1


# ----------------------------------------------------------------------------------------- batches and outputs
def test_a_bad_file_in_a_folder_is_reported_and_the_others_predicted(checkpoint, tmp_path, capsys):
    src = tmp_path / "in"
    rng = np.random.default_rng(1)
    write_volume(src / "a.tif", rng.integers(100, 900, (4, 40, 40)).astype(np.uint16), voxel_size=(2, 1, 1))
    (src / "b.tif").write_text("not a tiff")
    write_volume(src / "c.tif", rng.integers(100, 900, (4, 40, 40)).astype(np.uint16), voxel_size=(2, 1, 1))
    out = tmp_path / "out"
    assert main(["predict", "--ckpt", str(checkpoint), "--input", str(src), "--out", str(out), "--no-trace",
                 "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["a_prob.tif", "c_prob.tif"]
    assert "b.tif: FAILED: " in captured.err and "not a TIFF file" in captured.err
    assert "predicted 2 of 3 stack(s)" in captured.out and "1 failed" in captured.out


def test_out_that_is_a_file_or_not_writable(checkpoint, tmp_path, capsys, monkeypatch):
    stack = tmp_path / "s.tif"
    write_volume(stack, np.zeros((4, 16, 16), np.uint16))
    (tmp_path / "file").write_text("x")
    assert main(["predict", "--ckpt", str(checkpoint), "--input", str(stack), "--out", str(tmp_path / "file")]) == 2
    one_line_error(capsys, "is an existing file")
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", denied)
    assert main(["predict", "--ckpt", str(checkpoint), "--input", str(stack), "--out", str(tmp_path / "ro")]) == 2
    one_line_error(capsys, "cannot write to --out", "Permission denied")


def test_a_full_disk_is_refused_early_or_reported_without_leftovers(checkpoint, tmp_path, capsys, monkeypatch):
    import shutil

    stack = tmp_path / "s.tif"
    write_volume(stack, np.zeros((4, 16, 16), np.uint16), voxel_size=(2, 1, 1))
    out = tmp_path / "out"
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    assert main(["predict", "--ckpt", str(checkpoint), "--input", str(stack), "--out", str(out), "--no-progress"]) == 1
    assert "need 0.00 GB but" in capsys.readouterr().err
    monkeypatch.setattr(shutil, "disk_usage", real)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    assert main(["predict", "--ckpt", str(checkpoint), "--input", str(stack), "--out", str(out), "--no-progress"]) == 1
    assert "the disk is full" in capsys.readouterr().err
    assert list(out.iterdir()) == []  # no output, no temporary file


@pytest.mark.parametrize("pred_fg, gold_fg", [(False, True), (True, False), (False, False), (True, True)])
def test_training_logs_and_evaluate_score_empty_masks_alike(pred_fg, gold_fg):
    from neurovit.lit.module import volume_scores
    from neurovit.metrics import voxel_scores

    pred, gold = np.zeros((3, 8, 8), bool), np.zeros((3, 8, 8), bool)
    pred[1, 2:4, 2:4] = pred_fg
    gold[1, 3:6, 3:6] = gold_fg
    logged = volume_scores(torch.from_numpy(pred), torch.from_numpy(gold))
    scored = voxel_scores(pred, gold)
    assert logged == {k: scored[k] for k in ("dice", "precision", "recall")}
    if not pred_fg and gold_fg:
        assert logged["precision"] == 0.0  # nothing predicted on a neuron is not a perfect precision


def test_text_outputs_are_atomic_and_clean_up_on_failure(tmp_path, monkeypatch):
    from neurovit import atomic

    target = tmp_path / "metrics.json"
    atomic.write_json(target, {"a": 1})
    real = os.replace

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space"):
        atomic.write_json(target, {"a": 2})
    monkeypatch.setattr(os, "replace", real)
    assert target.read_text() == '{\n  "a": 1\n}\n'  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # and no temporary file is left


@pytest.mark.slow
def test_best_checkpoint_is_the_epoch_with_the_highest_val_dice(dataset, tmp_path, monkeypatch):
    import csv

    monkeypatch.setenv("WANDB_MODE", "disabled")
    root = tmp_path / "run"
    assert main(tiny_fit_args(dataset, root, "--trainer.max_epochs", "4", "--trainer.limit_val_batches", "1.0",
                              "--trainer.check_val_every_n_epoch", "1", "--trainer.logger",
                              "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(tmp_path / "log"),
                              "--reconstruction.every_n_epochs", "100")) == 0
    rows = list(csv.DictReader(next((tmp_path / "log").rglob("metrics.csv")).open()))
    dice = {int(r["epoch"]): float(r["val/dice"]) for r in rows if r.get("val/dice")}
    assert len(dice) == 4
    best = next((root / "checkpoints").glob("best-*.ckpt"))
    epoch = int(best.name.split("epoch")[1][:3])
    assert dice[epoch] == max(dice.values()), (best.name, dice)
    assert f"dice{max(dice.values()):.4f}" in best.name
    # and the file holds that epoch's weights: its epoch counter says so
    assert torch.load(best, map_location="cpu", weights_only=False)["epoch"] == epoch
