"""Packaged configs: `--config base` (or `base.yaml`) finds `experiments/base.yaml` wherever neurovit is
installed. `experiments/` is the source; wheels ship it as `neurovit/experiments/` (pyproject's
package-dir), and a source checkout or editable install reads it in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from neurovit.errors import NeurovitError

CONFIG_SUFFIXES = (".yaml", ".yml", ".args")


def config_dir() -> Path:
    """The folder of packaged configs (installed package first, then the source checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "experiments", here.parent / "experiments"):
        if candidate.is_dir() and any(candidate.glob("*.yaml")):
            return candidate
    raise NeurovitError("neurovit's packaged configs are missing (reinstall neurovit)")


def list_configs() -> dict[str, str]:
    """name → first comment line of every packaged config."""
    out = {}
    for f in sorted(config_dir().iterdir()):
        if f.suffix in CONFIG_SUFFIXES:
            first = next((ln.lstrip("# ").strip() for ln in f.read_text(encoding="utf-8").splitlines()
                          if ln.startswith("#")), "")
            out[f.stem if f.suffix != ".args" else f.name] = first
    return out


def config_path(name: str) -> Path:
    """The packaged config called `name` (with or without .yaml); NeurovitError listing them otherwise."""
    folder = config_dir()
    for candidate in (folder / name, folder / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    raise NeurovitError(f"no config {name!r}: give a YAML file or one of {', '.join(list_configs())}")


def resolve_config_args(argv: Sequence[str]) -> list[str]:
    """argv with `--config NAME` replaced by the packaged file when NAME is not an existing file."""
    out, expect = [], False
    for arg in argv:
        if expect:
            arg = arg if Path(arg).exists() or arg.lstrip().startswith("{") else str(config_path(arg))
            expect = False
        elif arg == "--config":
            expect = True
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
            if not Path(value).exists():
                arg = f"--config={config_path(value)}"
        out.append(arg)
    return out
