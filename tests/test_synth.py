"""Synthetic microscopy: forward model, reproducibility, dataset folder, CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml

from neurovit.cli import main
from neurovit.data.morphogen import GrowthParams, random_morphology
from neurovit.data.synth import MicroscopeParams, SynthConfig, simulate, snr_signal_level, synthesize_dataset
from neurovit.data.tiff import read_stack, read_voxel_size
from neurovit.errors import DatasetError

SMALL = SynthConfig(n_volumes=3, shape=(12, 48, 40), seed=3)


def test_snr_signal_level_solves_the_definition():
    for snr, b in [(4.0, 60.0), (10.0, 5.0), (0.5, 200.0)]:
        s = snr_signal_level(snr, b)
        assert (s - b) / np.sqrt(s) == pytest.approx(snr)


def test_procedural_morphology_is_a_valid_tree_inside_the_box():
    m = random_morphology(np.random.default_rng(0), (100.0, 80.0, 30.0), GrowthParams())
    assert len(m.roots) == 1 and m.types[0] == 1
    assert (m.parent < np.arange(m.n_nodes)).all()
    assert m.n_branch_points >= 1 and m.n_nodes > 50
    assert (m.xyz >= -5).all() and (m.xyz <= np.array([100, 80, 30]) + 5).all()
    child = np.flatnonzero(m.parent > 0)  # neurite nodes whose parent is not the soma
    assert (m.radius[child] <= m.radius[m.parent[child]] + 1e-12).all()  # radii taper away from the soma
    assert (m.radius > 0).all()


def test_simulate_is_seeded_and_has_the_requested_statistics():
    m = random_morphology(np.random.default_rng(1), (47.0, 47.0, 22.0))
    p = dataclasses.replace(MicroscopeParams(), snr=(6.0, 6.0), read_noise=0.0, offset=0.0, bg_variation=0.0,
                            gap_rate=0.0)
    img1, mask1, facts = simulate(m, (12, 48, 48), p, np.random.default_rng(5))
    img2, mask2, _ = simulate(m, (12, 48, 48), p, np.random.default_rng(5))
    img3, _, _ = simulate(m, (12, 48, 48), p, np.random.default_rng(6))
    np.testing.assert_array_equal(img1, img2)
    np.testing.assert_array_equal(mask1, mask2)
    assert not np.array_equal(img1, img3)
    assert img1.dtype == np.uint16 and mask1.dtype == np.uint8
    assert facts["snr"] == 6.0 and 0 < facts["foreground_fraction"] < 0.2
    far = ~np.asarray(mask1, bool)
    from scipy import ndimage
    far = ndimage.binary_erosion(far, iterations=4)
    assert img1[far].mean() == pytest.approx(p.background, rel=0.05)  # Poisson mean of the background
    assert img1[mask1 > 0].mean() > img1[far].mean() + 3 * np.sqrt(p.background)


def test_psf_is_anisotropic():
    # A single bright point: the blur must extend further (in µm) along z than in x/y.
    from neurovit.data.swc import Morphology
    m = Morphology(np.array([[20.0, 20.0, 20.0]]), np.array([0.5]), np.array([3]), np.array([-1]))
    p = dataclasses.replace(MicroscopeParams(), voxel_size=(1.0, 1.0, 1.0), snr=(200.0, 200.0),
                            background=1.0, bg_variation=0.0, read_noise=0.0, offset=0.0)
    img, _, _ = simulate(m, (41, 41, 41), p, np.random.default_rng(0))
    prof_z = img[:, 20, 20].astype(float)
    prof_x = img[20, 20, :].astype(float)
    assert (prof_z > prof_z.max() / 2).sum() > (prof_x > prof_x.max() / 2).sum()


def test_dataset_folder_layout_and_reproducibility(tmp_path):
    out = synthesize_dataset(tmp_path / "ds", SMALL, progress=False)
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    assert meta["voxel_size_zyx_um"] == [2.0, 1.0, 1.0]
    assert meta["swc_units"] == "voxel"
    names = [v["name"] for v in meta["volumes"]]
    assert sorted(sum(meta["split"].values(), [])) == sorted(names)
    assert all(meta["split"][k] for k in ("train", "val", "test"))
    for v in meta["volumes"]:
        img = read_stack(out / v["image"])
        lab = read_stack(out / v["label"])
        assert img.shape == lab.shape == (12, 48, 40)
        assert img.dtype == np.uint16 and set(np.unique(lab)) <= {0, 1}
        assert read_voxel_size(out / v["image"]) == pytest.approx((2.0, 1.0, 1.0))
        swc = (out / v["swc"]).read_text()
        assert "voxel indices" in swc and "# units: voxel" in swc
    assert (out / "preview.png").stat().st_size > 1000
    again = synthesize_dataset(tmp_path / "ds2", SMALL, progress=False)
    for v in meta["volumes"]:
        np.testing.assert_array_equal(read_stack(out / v["image"]), read_stack(again / v["image"]))


def test_swc_in_voxel_units_renders_back_to_the_label(tmp_path):
    from neurovit.data.render import render_mask
    from neurovit.data.swc import read_swc
    out = synthesize_dataset(tmp_path / "ds", dataclasses.replace(SMALL, n_volumes=1), progress=False)
    meta = yaml.safe_load((out / "dataset.yaml").read_text())
    v = meta["volumes"][0]
    lab = read_stack(out / v["label"]) > 0
    m = read_swc(out / v["swc"], units="voxel")
    again = render_mask(m.resample(1.0), lab.shape, meta["voxel_size_zyx_um"])
    assert (again == lab).mean() > 0.999  # same mask up to the SWC's 4-decimal rounding


def test_existing_output_is_not_overwritten_without_flag(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="exists and is not empty"):
        synthesize_dataset(tmp_path / "ds", SMALL, progress=False)
    assert (tmp_path / "ds" / "keep.txt").read_text() == "mine"


def test_failed_run_leaves_nothing_half_written(tmp_path, monkeypatch):
    import neurovit.data.synth as synth

    calls = {"n": 0}
    real = synth.simulate

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(synth, "simulate", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        synthesize_dataset(tmp_path / "ds", SMALL, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cli_synth_from_swc_folder_uses_split_headers(tmp_path, tiny_swc, capsys):
    swc_dir = tmp_path / "swcs"
    swc_dir.mkdir()
    text = tiny_swc.read_text()
    (swc_dir / "a.swc").write_text("# split: val\n" + text)
    (swc_dir / "b.swc").write_text(text)
    rc = main(["synth", "--out", str(tmp_path / "ds"), "--swc-dir", str(swc_dir), "--voxel-size", "1", "0.5", "0.5",
               "--no-progress"])
    assert rc == 0
    meta = yaml.safe_load((tmp_path / "ds" / "dataset.yaml").read_text())
    assert meta["split"]["val"] == ["a"]
    assert "wrote 2 volumes" in capsys.readouterr().out


def test_cli_reports_input_errors_in_one_line(tmp_path, capsys):
    bad = tmp_path / "swcs"
    bad.mkdir()
    (bad / "x.swc").write_text("1 1 0 0 0 1 -1\n2 3 0 0 0 1 9\n")
    rc = main(["synth", "--out", str(tmp_path / "ds"), "--swc-dir", str(bad), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "x.swc:2: parent id 9 of node 2 does not exist" in err
    assert "Traceback" not in err
    assert not (tmp_path / "ds").exists()


def test_cli_reads_argument_files(tmp_path):
    args = tmp_path / "demo.args"
    args.write_text("--n-volumes 1  # one volume\n--shape 8 32 32\n--seed 4\n")
    assert main(["synth", f"@{args}", "--out", str(tmp_path / "ds"), "--no-progress"]) == 0
    meta = yaml.safe_load((tmp_path / "ds" / "dataset.yaml").read_text())
    assert len(meta["volumes"]) == 1 and meta["volumes"][0]["shape"] == [8, 32, 32]


@pytest.mark.slow
def test_every_shared_morphology_synthesises(tmp_path, shared_morphologies):
    rc = main(["synth", "--out", str(tmp_path / "real"), "--swc-dir", str(shared_morphologies),
               "--voxel-size", "2", "1", "1", "--max-shape", "32", "96", "96", "--no-progress"])
    assert rc == 0
    meta = yaml.safe_load((tmp_path / "real" / "dataset.yaml").read_text())
    assert len(meta["volumes"]) == len(list(shared_morphologies.glob("*.swc")))
    assert all(v["foreground_fraction"] > 0 for v in meta["volumes"])
    assert meta["split"]["val"]  # from the files' split: headers
