"""Chunked OME-Zarr prediction: the task plan, one vs two processes (Lightning DDP, gloo), resuming a
killed run, and agreement with the streamed TIFF path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from neurovit.cli import main
from neurovit.data.chunks import plan_tasks, rank_share
from neurovit.data.synth import SynthConfig, synthesize_dataset
from neurovit.data.volumes import is_volume_path, list_volumes, open_volume, write_volume


@pytest.mark.parametrize("shape, task, chunk, halo", [((20, 80, 90), (8, 32, 32), (8, 32, 32), (2, 16, 16)),
                                                      ((5, 300, 17), (64, 256, 256), (32, 128, 256), (4, 50, 50))])
def test_tasks_tile_the_volume_on_chunk_boundaries(shape, task, chunk, halo):
    tasks = plan_tasks(shape, task, chunk, halo)
    hits = np.zeros(shape, np.int32)
    for t in tasks:
        z0, z1, y0, y1, x0, x1 = t.core
        hits[z0:z1, y0:y1, x0:x1] += 1
        for a in range(3):
            c = min(chunk[a], shape[a])
            assert t.core[2 * a] % c == 0  # starts on an output chunk: no two tasks share a chunk
            assert t.region[2 * a] == max(t.core[2 * a] - halo[a], 0)
            assert t.region[2 * a + 1] == min(t.core[2 * a + 1] + halo[a], shape[a])
    assert (hits == 1).all()  # every voxel written exactly once
    shares = [rank_share(len(tasks), r, 3) for r in range(3)]
    assert sorted(sum(shares, [])) == list(range(len(tasks)))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_task_size_must_align_with_chunks():
    with pytest.raises(Exception, match="multiple of the output chunk"):
        plan_tasks((64, 512, 512), (64, 300, 512), (32, 256, 256), (2, 50, 50))


@pytest.fixture(scope="module")
def setup(tiny_run, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chunked")
    synthesize_dataset(tmp / "big", SynthConfig(n_volumes=1, shape=(20, 80, 90), seed=8), progress=False)
    image = open_volume(next((tmp / "big" / "images").iterdir())).read()
    stack = tmp / "in" / "s.ome.zarr"
    write_volume(stack, image, voxel_size=(2.0, 1.0, 1.0), chunks=(8, 32, 32))
    return tiny_run[1], stack


ARGS = ["--format", "ome-zarr", "--chunk", "8", "32", "32", "--device", "cpu", "--no-progress"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "neurovit", *args], cwd=cwd, capture_output=True, text=True,
                       env={**os.environ, "WANDB_MODE": "disabled"})
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def read(folder: Path, kind: str) -> np.ndarray:
    return open_volume(folder / f"s_{kind}.ome.zarr").read()


def nodes(swc: Path) -> list[str]:
    return [ln for ln in swc.read_text().splitlines() if not ln.startswith("#")]


def test_ome_zarr_output_matches_the_tiff_path_and_has_a_pyramid(setup, tmp_path):
    ckpt, stack = setup
    assert main(["predict", "--ckpt", str(ckpt), "--input", str(stack), "--out", str(tmp_path / "z"), *ARGS]) == 0
    assert main(["predict", "--ckpt", str(ckpt), "--input", str(stack), "--out", str(tmp_path / "t"),
                 "--device", "cpu", "--no-progress", "--no-trace"]) == 0
    prob = read(tmp_path / "z", "prob").astype(np.float32) / 255
    ref = open_volume(tmp_path / "t" / "s_prob.tif").read()
    assert prob.shape == ref.shape
    # halos give each voxel its whole-volume context; windows fall elsewhere, so not bit-identical
    assert np.abs(prob - ref).mean() < 0.03 and np.median(np.abs(prob - ref)) < 0.02
    mask = read(tmp_path / "z", "mask")
    assert set(np.unique(mask)) <= {0, 1}
    p8 = read(tmp_path / "z", "prob")  # the mask is p > 0.5 of the unrounded probabilities
    assert (mask[p8 >= 129] == 1).all() and (mask[p8 <= 126] == 0).all()
    vol = open_volume(tmp_path / "z" / "s_mask.ome.zarr")
    assert vol.voxel_size == pytest.approx((2.0, 1.0, 1.0))
    assert vol.metadata["levels"] == 1  # 90 px wide: already under the 256 px the pyramid stops at
    assert nodes(tmp_path / "z" / "s.swc")
    assert [p.name for p in (tmp_path / "z").iterdir() if p.name.startswith(".")] == []  # no partial left


@pytest.mark.slow
def test_two_processes_give_the_same_output_as_one(setup, tmp_path):
    ckpt, stack = setup
    run_cli("predict", "--ckpt", str(ckpt), "--input", str(stack), "--out", "one", *ARGS, cwd=tmp_path)
    r = run_cli("predict", "--ckpt", str(ckpt), "--input", str(stack), "--out", "two", *ARGS, "--devices", "2",
                cwd=tmp_path)
    assert "Starting with 2 processes" in r.stderr + r.stdout
    for kind in ("prob", "mask"):
        np.testing.assert_array_equal(read(tmp_path / "two", kind), read(tmp_path / "one", kind))
    assert nodes(tmp_path / "two" / "s.swc") == nodes(tmp_path / "one" / "s.swc")


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_output(setup, tmp_path):
    ckpt, stack = setup
    run_cli("predict", "--ckpt", str(ckpt), "--input", str(stack), "--out", "whole", *ARGS, cwd=tmp_path)
    done = tmp_path / "out" / ".s_prob.ome.zarr.partial" / ".done"
    p = subprocess.Popen([sys.executable, "-m", "neurovit", "predict", "--ckpt", str(ckpt), "--input", str(stack),
                          "--out", "out", *ARGS], cwd=tmp_path, env={**os.environ, "WANDB_MODE": "disabled"},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while not (done.is_dir() and len(list(done.iterdir())) >= 5):
        assert p.poll() is None and time.monotonic() - t0 < 120
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not is_volume_path(tmp_path / "out" / "s_prob.ome.zarr") and list_volumes(tmp_path / "out") == []
    r = run_cli("predict", "--ckpt", str(ckpt), "--input", str(stack), "--out", "out", *ARGS, cwd=tmp_path)
    skipped = int(r.stdout.split("tasks (")[1].split(" done before")[0])
    assert skipped >= 5
    for kind in ("prob", "mask"):
        np.testing.assert_array_equal(read(tmp_path / "out", kind), read(tmp_path / "whole", kind))


def test_other_settings_do_not_mix_with_an_interrupted_run(setup, tmp_path, capsys):
    ckpt, stack = setup
    from neurovit.lit import prediction

    out = tmp_path / "out"
    real = prediction.finish
    prediction.finish = lambda *a, **k: False  # "interrupted" before committing
    try:
        assert main(["predict", "--ckpt", str(ckpt), "--input", str(stack), "--out", str(out), *ARGS]) == 1
    finally:
        prediction.finish = real
    assert (out / ".s_prob.ome.zarr.partial").is_dir()
    assert main(["predict", "--ckpt", str(ckpt), "--input", str(stack), "--out", str(out), *ARGS,
                 "--threshold", "0.3"]) == 2
    assert "made with other settings" in capsys.readouterr().err


def test_chunked_benchmark_prints_memory_rows(setup, capsys):
    from neurovit.benchmarks.chunked import main as bench

    ckpt, _ = setup
    bench(["--ckpt", str(ckpt), "--plane", "64", "--slices", "8", "16", "--chunk", "8", "64", "64",
           "--ddp-slices", "0"])
    text = capsys.readouterr().out
    assert "(16, 64, 64)" in text and "peak RSS at 16 slices / at 8 slices" in text


def test_nonfinite_voxels_are_counted_in_the_chunked_path(setup, tmp_path):
    ckpt, stack = setup
    image = open_volume(stack).read().astype(np.float32)
    image[3, 10, 10] = np.nan
    image[15, 70, 80] = np.inf
    write_volume(tmp_path / "in" / "f.ome.zarr", image, voxel_size=(2.0, 1.0, 1.0), chunks=(8, 32, 32))
    with pytest.warns(UserWarning, match=r"f_prob.ome.zarr: 2 input voxel\(s\) predicted in this run are NaN"):
        assert main(["predict", "--ckpt", str(ckpt), "--input", str(tmp_path / "in" / "f.ome.zarr"),
                     "--out", str(tmp_path / "z"), *ARGS, "--no-trace"]) == 0
    assert np.isfinite(open_volume(tmp_path / "z" / "f_prob.ome.zarr").read()).all()


def test_a_full_disk_mid_run_is_one_line_and_resumable(setup, tmp_path, capsys, monkeypatch):
    import errno

    from neurovit.lit import prediction

    ckpt, stack = setup

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prediction, "predict_chunked", full)
    assert main(["predict", "--ckpt", str(ckpt), "--input", str(stack), "--out", str(tmp_path / "z"), *ARGS]) == 2
    err = capsys.readouterr().err
    assert "the disk is full" in err and "run the same command again to resume" in err and "Traceback" not in err
