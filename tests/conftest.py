"""Shared fixtures: tiny SWC trees written by the tests, and the optional real morphologies."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from tqdm import tqdm

from neurovit.data.swc import Morphology


def tree(xyz, parent, units="voxel") -> Morphology:
    """A tree with radius 1 and type 3 at every node (voxel units unless told)."""
    xyz = np.asarray(xyz, dtype=float)
    return Morphology(xyz, np.ones(len(xyz)), np.full(len(xyz), 3), np.asarray(parent), units=units)


def line(a, b, units="voxel") -> Morphology:
    """One edge from `a` to `b` (x, y, z)."""
    return tree([a, b], [-1, 0], units)


EMPTY_TREE = Morphology(np.empty((0, 3)), [], [], [], units="voxel")


# No tqdm monitor thread: tests/mutation.py (mutmut) forks one child per mutant from the test process, and a
# thread alive at the fork can leave a lock held forever in the child (the mutant then "times out").
tqdm.monitor_interval = 0

SHARED_MORPHOLOGIES = Path(__file__).resolve().parents[1].parent / "shared" / "morphologies"

# A soma, a fork and three branches; ids start at 10 with gaps, parents listed after children.
TINY_SWC = """\
# a tiny test neuron
##n,type,x,y,z,radius,parent
13 3 6.0 2.0 1.0 0.5 12
10 1 2.0 2.0 1.0 1.5 -1
12 3 4.0 2.0 1.0 0.6 10
15 3 6.0 4.0 1.0 0.4 13
16 3 8.0 1.0 1.0 0.4 13
20 2 0.0 2.0 1.0 0.5 10
"""


@pytest.fixture
def tiny_swc(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.swc"
    path.write_text(TINY_SWC)
    return path


@pytest.fixture
def write_swc_text(tmp_path: Path):
    """Write SWC text to a file and return its path."""
    def write(text: str, name: str = "test.swc") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path
    return write


@pytest.fixture
def shared_morphologies() -> Path:
    if not SHARED_MORPHOLOGIES.is_dir() or not any(SHARED_MORPHOLOGIES.glob("*.swc")):
        if os.environ.get("CI"):  # CI always has ../shared beside the clone: missing there is a failure
            pytest.fail(f"CI=true but {SHARED_MORPHOLOGIES} holds no *.swc files")
        pytest.skip("../shared/morphologies is not available")
    return SHARED_MORPHOLOGIES


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A 4-volume synthetic dataset (8 × 40 × 40; 2 train, 1 val, 1 test) shared read-only by the tests."""
    from neurovit.data.synth import SynthConfig, synthesize_dataset

    out = tmp_path_factory.mktemp("data") / "ds"
    synthesize_dataset(out, SynthConfig(n_volumes=4, shape=(8, 40, 40), seed=1, split=(0.5, 0.25, 0.25)),
                       progress=False)
    return out


def tiny_fit_args(data: Path, root: Path, *extra: str) -> list[str]:
    """`neurovit fit` of the packaged demo config shrunk to seconds (no validation, 32 px blocks)."""
    return ["fit", "--config", "base", "--config", "demo", "--data.data_dir", str(data), "--data.block_size", "32",
            "--data.batch_size", "2", "--data.blocks_per_epoch", "4", "--trainer.max_epochs", "1",
            "--trainer.limit_val_batches", "0", "--trainer.default_root_dir", str(root),
            "--trainer.enable_progress_bar", "false", *extra]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset, checkpoint) of one tiny fit shared by the prediction tests; trained with percentiles
    (5, 95) so tests can tell the checkpoint's normaliser from the default one."""
    from neurovit.cli import main
    from neurovit.data.synth import SynthConfig, synthesize_dataset

    tmp = tmp_path_factory.mktemp("tiny-run")
    synthesize_dataset(tmp / "ds", SynthConfig(n_volumes=3, shape=(8, 40, 40), seed=3), progress=False)
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "disabled")
    try:
        assert main(tiny_fit_args(tmp / "ds", tmp / "run", "--data.percentiles", "[5.0, 95.0]")) == 0
    finally:
        mp.undo()
    return tmp / "ds", tmp / "run" / "checkpoints" / "last.ckpt"
