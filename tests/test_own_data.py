"""A user's own data: every format predicts the same, the model carries its normaliser and voxel size,
outputs keep full names, and `evaluate` scores what `predict` wrote."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from neurovit.cli import main
from neurovit.data.normalise import CHECKPOINT_KEY, Normaliser
from neurovit.data.volumes import open_volume, write_volume
from neurovit.inference import predict_volume
from neurovit.predict import load_model, segment

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tiny_run) -> Path:
    return tiny_run[0]


@pytest.fixture(scope="module")
def checkpoint(tiny_run) -> Path:
    return tiny_run[1]  # trained with --data.percentiles [5.0, 95.0]


@pytest.fixture
def stack() -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.integers(100, 900, size=(6, 36, 44)).astype(np.uint16)


def test_checkpoint_records_voxel_size_and_the_training_normaliser(checkpoint, stack):
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert ckpt[CHECKPOINT_KEY]["voxel_size_zyx_um"] == [2.0, 1.0, 1.0]  # the synthetic dataset's
    assert ckpt[CHECKPOINT_KEY]["normalisation"]["percentiles"] == [5.0, 95.0]
    model = load_model(checkpoint)
    assert model.preprocessing.normaliser.percentiles == (5.0, 95.0)
    # the Python API normalises raw stacks itself, with the checkpoint's percentiles (not the defaults)
    prob = segment(model, stack, voxel_size=(2.0, 1.0, 1.0))
    kw = dict(block_depth=model.block_depth, roi_size=model.roi_size, overlap=model.hparams.sw_overlap,
              sw_batch_size=model.hparams.sw_batch_size, z_chunk=model.hparams.z_chunk)
    expected = predict_volume(model.net, stack, normalise=Normaliser((5.0, 95.0)).fit(stack), **kw)
    default = predict_volume(model.net, stack, normalise=Normaliser().fit(stack), **kw)
    np.testing.assert_allclose(prob, expected, atol=1e-6)
    assert np.abs(prob - default).max() > 1e-3  # so the percentiles really matter here


def test_old_checkpoints_load_with_a_warning(checkpoint, tmp_path):
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    del ckpt[CHECKPOINT_KEY]
    torch.save(ckpt, tmp_path / "old.ckpt")
    with pytest.warns(UserWarning, match="records no preprocessing"):
        model = load_model(tmp_path / "old.ckpt")
    assert model.preprocessing.voxel_size is None and model.preprocessing.normaliser == Normaliser()


def test_every_format_predicts_the_same(checkpoint, stack, tmp_path):
    vs = (2.0, 1.0, 1.0)
    src = tmp_path / "in"
    write_volume(src / "s_tif.tif", stack, voxel_size=vs)
    tifffile.imwrite(src / "s_ome.ome.tif", stack, metadata={"axes": "ZYX", "PhysicalSizeZ": 2.0,
                                                             "PhysicalSizeY": 1.0, "PhysicalSizeX": 1.0})
    write_volume(src / "s_v3d.v3draw", stack)  # no voxel size in the format: the model's is assumed
    write_volume(src / "s_zarr.ome.zarr", stack, voxel_size=vs, chunks=(4, 16, 16))
    out = tmp_path / "out"
    assert main(["predict", "--ckpt", str(checkpoint), "--input", str(src), "--out", str(out), "--no-trace",
                 "--device", "cpu"]) == 0
    probs = {n: open_volume(out / f"s_{n}_prob.tif").read() for n in ("tif", "ome", "v3d", "zarr")}
    for n, p in probs.items():
        np.testing.assert_array_equal(p, probs["tif"], err_msg=n)
        assert open_volume(out / f"s_{n}_prob.tif").voxel_size == pytest.approx(vs)


def test_dotted_names_give_separate_outputs_and_evaluate_scores_predict_output(checkpoint, dataset, tmp_path, capsys):
    src = tmp_path / "in"
    images = sorted((dataset / "images").iterdir())
    for day, image in zip(("day1", "day2"), images[:2]):
        os.symlink(image, src.mkdir(exist_ok=True) or src / f"cell.{day}.tif")
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", str(checkpoint), "--input", str(src), "--out", str(out),
                 "--threshold", "0.3", "--device", "cpu", "--save", "both"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["cell.day1.swc", "cell.day1_mask.tif", "cell.day1_prob.tif",
                     "cell.day2.swc", "cell.day2_mask.tif", "cell.day2_prob.tif"]
    swc = (out / "cell.day1.swc").read_text()
    assert "# units: um" in swc and "voxel_size_zyx_um: [2.0, 1.0, 1.0] (file)" in swc
    # predict's own output, scored against the dataset it came from (names mapped back to the dataset's)
    pred = tmp_path / "scored"
    pred.mkdir()
    for day, image in zip(("day1", "day2"), images[:2]):
        for kind in ("_prob.tif", ".swc"):
            os.symlink(out / f"cell.{day}{kind}", pred / f"{image.name[:-4]}{kind}")
    capsys.readouterr()
    assert main(["evaluate", "--pred", str(pred), "--gold", str(dataset), "--units", "um"]) == 0
    report = capsys.readouterr().out
    assert "evaluated 2 volume(s)" in report
    for metric in ("dice", "esa (µm)"):
        line = next(ln for ln in report.splitlines() if ln.startswith(metric))
        assert "n/a" not in line and line.split()[-1] == "2", line


def test_predict_help_lists_its_own_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(opt in text for opt in ("--ckpt", "--input", "--out", "--voxel-size", "--format"))
    assert len(text.splitlines()) < 80  # not LightningCLI's 1,600 lines


def test_predict_without_ckpt_is_an_error_not_a_silent_run(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--config", "base"])
    assert exit_info.value.code == 2 and "--ckpt" in capsys.readouterr().err


def test_a_stack_at_another_spacing_is_resampled_and_unknown_spacing_is_assumed(checkpoint, stack, tmp_path):
    fine = tmp_path / "fine.tif"
    write_volume(fine, np.repeat(stack, 2, axis=0), voxel_size=(1.0, 1.0, 1.0))
    model = load_model(checkpoint)
    prob = model.predict_probabilities(open_volume(fine).array, (1.0, 1.0, 1.0))
    assert prob.shape == (12, 36, 44) and model.last_predict_info["resampled_to"] == (6, 36, 44)
    coarse = model.predict_probabilities(stack, (2.0, 1.0, 1.0))
    # slice pairs of the 1 µm stack average to the 2 µm stack, so predictions agree closely
    assert np.abs(prob[::2] - coarse).mean() < 0.02
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, stack, photometric="minisblack")
    with pytest.warns(UserWarning, match="assuming the model's"):
        assert main(["predict", "--ckpt", str(checkpoint), "--input", str(plain), "--out", str(tmp_path / "o"),
                     "--threshold", "0", "--device", "cpu"]) == 0
    assert "(assumed)" in (tmp_path / "o" / "plain.swc").read_text()
    assert open_volume(tmp_path / "o" / "plain_prob.tif").voxel_size == pytest.approx((2.0, 1.0, 1.0))


def test_packaged_configs_resolve_by_name(capsys):
    assert main(["config"]) == 0
    listing = capsys.readouterr().out
    assert "base" in listing and "demo" in listing
    assert main(["config", "demo"]) == 0
    assert "neurovit_tiny_patch16" in capsys.readouterr().out
    assert main(["config", "nope"]) == 2


def test_spacing_benchmark_prints_every_row(checkpoint, capsys):
    from neurovit.benchmarks.spacing import main as spacing

    spacing(["--ckpt", str(checkpoint), "--shape", "6", "40", "40", "--n-volumes", "3"])
    text = capsys.readouterr().out
    for row in ("native grid", "finer z, resampled", "finer z, not resampled", "2 µm gold → 1 µm grid"):
        line = next(ln for ln in text.splitlines() if ln.startswith(row))
        mean_dice = float(line[len(row):].split(")")[1].split()[0])
        assert 0.0 <= mean_dice <= 1.0
    assert "trained at (2.0, 1.0, 1.0) µm" in text
