"""SIGKILL in the middle of `synth`, `predict` and `fit`, then the same command again: the result is the
one an uninterrupted run gives, and what the killed run left is invisible to `evaluate` and `fit`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from neurovit.data.volumes import list_volumes, open_volume

TESTS = Path(__file__).resolve().parent
pytestmark = pytest.mark.slow


def neurovit(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(TESTS)}
    r = subprocess.run([sys.executable, "-m", "neurovit", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def kill_when(args: list[str], cwd: Path, ready, timeout: float = 120.0) -> None:
    """Start `neurovit ARGS`, SIGKILL it as soon as `ready()` is true (polling), and wait for it."""
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(TESTS)}
    p = subprocess.Popen([sys.executable, "-m", "neurovit", *args], cwd=cwd, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while not ready():
        assert p.poll() is None, "finished before it could be interrupted"
        assert time.monotonic() - t0 < timeout
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    assert p.wait() == -signal.SIGKILL


SYNTH = ["synth", "--n-volumes", "3", "--shape", "16", "96", "96", "--seed", "3", "--no-progress"]


def test_synth_killed_then_rerun(tmp_path):
    neurovit(*SYNTH, "--out", "whole", cwd=tmp_path)
    kill_when([*SYNTH, "--out", "ds"], tmp_path,
              lambda: any(tmp_path.glob(".ds.tmp-*/images/*.tif")))
    assert not (tmp_path / "ds").exists()  # nothing half-written under the real name
    neurovit(*SYNTH, "--out", "ds", cwd=tmp_path)
    for sub in ("images", "labels"):
        for f in sorted((tmp_path / "whole" / sub).iterdir()):
            np.testing.assert_array_equal(open_volume(tmp_path / "ds" / sub / f.name).read(), open_volume(f).read())
    assert (tmp_path / "ds" / "dataset.yaml").read_text() == (tmp_path / "whole" / "dataset.yaml").read_text()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("interrupt")
    neurovit("synth", "--n-volumes", "3", "--shape", "8", "40", "40", "--seed", "2", "--out", "ds", "--no-progress",
             cwd=tmp)
    neurovit(*fit(tmp / "ds", tmp / "run", epochs=1), cwd=tmp)
    return tmp / "ds", tmp / "run" / "checkpoints" / "last.ckpt"


def fit(data: Path, root: Path, epochs: int, *extra: str) -> list[str]:
    return ["fit", "--config", "base", "--config", "demo", "--data.data_dir", str(data), "--data.block_size", "32",
            "--data.batch_size", "2", "--data.blocks_per_epoch", "6", "--trainer.max_epochs", str(epochs),
            "--trainer.limit_val_batches", "0", "--trainer.default_root_dir", str(root),
            "--trainer.enable_progress_bar", "false", *extra]


def test_predict_killed_then_rerun(trained, tmp_path):
    data, ckpt = trained
    big = tmp_path / "in" / "big.tif"
    from neurovit.data.volumes import write_volume

    write_volume(big, np.random.default_rng(0).integers(100, 900, (48, 200, 200)).astype(np.uint16),
                 voxel_size=(2.0, 1.0, 1.0))
    args = ["predict", "--ckpt", str(ckpt), "--input", str(big.parent), "--no-progress", "--threshold", "0.5"]
    neurovit(*args, "--out", "whole", cwd=tmp_path)
    kill_when([*args, "--out", "out"], tmp_path, lambda: any((tmp_path / "out").glob(".big_prob.tif.*.tmp")))
    assert list_volumes(tmp_path / "out") == []  # the killed run's temporary file is hidden
    neurovit(*args, "--out", "out", cwd=tmp_path)
    np.testing.assert_array_equal(open_volume(tmp_path / "out" / "big_prob.tif").read(),
                                  open_volume(tmp_path / "whole" / "big_prob.tif").read())
    assert (tmp_path / "out" / "big.swc").read_text().split("# id")[1] == \
        (tmp_path / "whole" / "big.swc").read_text().split("# id")[1]


def test_fit_killed_mid_epoch_resumes_to_the_same_weights(trained, tmp_path):
    data, _ = trained
    neurovit(*fit(data, tmp_path / "whole", epochs=3), cwd=tmp_path)
    killer = '--trainer.callbacks+={"class_path": "_killer.KillAt", "init_args": {"epoch": 2, "batch": 1}}'
    r = neurovit(*fit(data, tmp_path / "run", 3), killer, cwd=tmp_path, check=False)
    assert r.returncode == -signal.SIGKILL
    halfway = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert halfway["epoch"] < 2  # the last checkpoint is from before the kill
    neurovit(*fit(data, tmp_path / "run", 3, "--ckpt_path", "last"), cwd=tmp_path)
    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == 9
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=0, atol=1e-6, msg=k)


def test_fit_terminated_by_sigterm_exits_143_and_resumes(trained, tmp_path):
    """Lightning ends a SIGTERM'd fit at the end of the epoch with a SystemExit of status 0; `neurovit fit` must
    report it (143 and a line), or a pre-empted job would look finished."""
    data, _ = trained
    killer = ('--trainer.callbacks+={"class_path": "_killer.KillAt", "init_args": {"epoch": 1, "batch": 0, '
              f'"signum": {int(signal.SIGTERM)}}}}}')
    r = neurovit(*fit(data, tmp_path / "run", 3), killer, cwd=tmp_path, check=False)
    assert r.returncode == 143, r.stderr[-2000:]
    assert "terminated by SIGTERM" in r.stderr and "--ckpt_path last" in r.stderr
    stopped = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert stopped["global_step"] == 3  # Lightning stops after the batch; last.ckpt is the last finished epoch
    neurovit(*fit(data, tmp_path / "run", 3, "--ckpt_path", "last"), cwd=tmp_path)
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 9
