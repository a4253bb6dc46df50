"""A non-editable install (wheel) runs the README's own-data commands outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_install_runs_prepare_fit_predict_evaluate(tmp_path):
    import shutil

    from neurovit.data.swc import write_swc
    from neurovit.data.synth import SynthConfig, synthesize_dataset
    from neurovit.data.volumes import open_volume, write_volume

    src = tmp_path / "src"  # build from a copy: setuptools writes build/ into the source tree
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "demo_out", "runs",
                                                             "*.egg-info", ".hypothesis", "__pycache__", ".gl"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(src)], check=True, capture_output=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # dependencies come from this environment's site-packages (a path entry: its editable-install hooks
    # are not run, so only the wheel provides neurovit)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob("neurovit-*.whl"))
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)

    # the user's own data: a flat folder of OME-TIFF stacks at 1 x 1 x 1 µm + SWC files in µm
    synth = tmp_path / "synth"
    synthesize_dataset(synth, SynthConfig(n_volumes=4, shape=(12, 48, 48), seed=4, split=(0.5, 0.25, 0.25),
                                          microscope=_microscope((1.0, 1.0, 1.0))), progress=False)
    mine = tmp_path / "mine"
    mine.mkdir()
    for image in sorted((synth / "images").iterdir()):
        name = image.name[:-4]
        write_volume(mine / f"{name}.ome.tif", open_volume(image).read(), voxel_size=(1.0, 1.0, 1.0))
        from neurovit.data.swc import read_swc

        write_swc(read_swc(synth / "swc" / f"{name}.swc", units="voxel").to_um((1.0, 1.0, 1.0)), mine / f"{name}.swc")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": ""}

    def neurovit(*args: str) -> str:
        r = subprocess.run([str(py), "-m", "neurovit", *args], cwd=work, env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"neurovit {' '.join(args)}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r.stdout

    where = subprocess.run([str(py), "-c", "import neurovit; print(neurovit.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert str(venv) in where and str(REPO) not in where  # the installed copy, not the checkout
    neurovit("prepare", str(mine), "--out", "dataset")
    neurovit("fit", "--config", "base", "--config", "demo", "--data.data_dir", "dataset",
             "--data.block_size", "32", "--data.batch_size", "2", "--data.blocks_per_epoch", "4",
             "--trainer.max_epochs", "1", "--trainer.default_root_dir", "run", "--trainer.enable_progress_bar", "false")
    neurovit("predict", "--ckpt", "run/checkpoints/last.ckpt", "--input", "dataset/images", "--out", "pred",
             "--threshold", "0.2", "--no-progress")
    report = neurovit("evaluate", "--pred", "pred", "--gold", "dataset", "--units", "um")
    assert "evaluated 4 volume(s)" in report
    for metric in ("dice", "esa (µm)"):
        line = next(ln for ln in report.splitlines() if ln.startswith(metric))
        assert "n/a" not in line and line.split()[-1] == "4", report
    swc = (work / "pred" / f"{sorted(mine.glob('*.swc'))[0].stem}.swc").read_text()
    assert "# units: um" in swc and "voxel_size_zyx_um: [1.0, 1.0, 1.0] (file)" in swc


def _microscope(voxel_size):
    import dataclasses

    from neurovit.data.synth import MicroscopeParams

    return dataclasses.replace(MicroscopeParams(), voxel_size=voxel_size)
