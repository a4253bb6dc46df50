"""2D sources of an ablation: where the `init.source` of the transfer rows comes from, made once and cached.

A source is a named entry of the ablation YAML's `sources:` mapping; its `kind` picks a class of
`SOURCE_KINDS` (a new kind is one class plus one line there; the config check, `neurovit ablate --help`
and the cost table read it):

- ``file``: an existing weights file or a timm ``name.tag`` (real DINO weights: the first choice when they
  can be downloaded), e.g. ``{kind: file, path: vit_small_patch16_224.dino}``.
- ``dino``: `neurovit pretrain` run once into OUT/sources/NAME (resumed if it was interrupted), on a folder
  of photos or stacks: ``{kind: dino, data: data/natural, data_kind: images}``, or the ablation's own
  training stacks (labels unread) with ``data: train``; ``args`` are extra `neurovit pretrain` overrides.
- ``mim``: the small masked-image-modelling stand-in of `neurovit.ablate.source2d` (scikit-image photos).

Every cell gets its source as `--init.source PATH` (the TransferInit callback is the only init route).
Each prepared source records its cost (wall seconds, images seen) in OUT/sources/NAME/cost.json.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from neurovit.errors import NeurovitError

COST = "cost.json"


class SourceError(NeurovitError, ValueError):
    """A source entry that cannot be used (the message names the source and the key)."""


class FileSource:
    """Weights that already exist: a file, or a timm name.tag (HF cache / download)."""

    keys: ClassVar[set[str]] = {"path"}
    needs: ClassVar[set[str]] = {"path"}

    def __init__(self, cfg, name: str, opts: dict):
        self.cfg, self.name, self.opts = cfg, name, opts

    def path(self) -> str:
        from neurovit.models.pretrained import is_weights_path

        p = str(self.opts["path"])
        return str((Path.cwd() / p).resolve()) if is_weights_path(p) and not Path(p).is_absolute() else p

    def prepare(self, say: Callable[[str], None]) -> dict:
        return {"kind": "file", "path": self.path(), "wall_seconds": 0.0, "images_seen": 0}


class MimSource:
    """The deterministic masked-image-modelling stand-in (neurovit.ablate.source2d.make_source_2d)."""

    keys: ClassVar[set[str]] = {"arch", "seed", "pretrain_steps", "img_size", "batch_size", "file"}
    needs: ClassVar[set[str]] = set()

    def __init__(self, cfg, name: str, opts: dict):
        self.cfg, self.name, self.opts = cfg, name, opts

    def folder(self) -> Path:
        return self.cfg.out_dir / ("source2d" if not self.name else f"sources/{self.name}")

    def path(self) -> str:
        o = self.opts
        arch = o.get("arch", "neurovit_tiny_patch16")
        return str(self.folder() / (o.get("file") or f"{arch}-seed{o.get('seed', 0)}-mim{o.get('pretrain_steps', 0)}.pth"))

    def prepare(self, say: Callable[[str], None]) -> dict:
        import torch

        from neurovit.ablate.source2d import make_source_2d

        cost_file = self.folder() / COST
        if Path(self.path()).is_file() and cost_file.is_file():
            return json.loads(cost_file.read_text())
        if self.cfg.env.get("OMP_NUM_THREADS", "").isdigit():  # the same thread budget as the cells
            torch.set_num_threads(int(self.cfg.env["OMP_NUM_THREADS"]))
        o = self.opts
        steps, batch = int(o.get("pretrain_steps", 0)), int(o.get("batch_size", 16))
        t0 = time.perf_counter()
        make_source_2d(self.path(), o.get("arch", "neurovit_tiny_patch16"), seed=int(o.get("seed", 0)),
                       img_size=int(o.get("img_size", 112)), pretrain_steps=steps, batch_size=batch)
        cost = {"kind": "mim", "path": self.path(), "wall_seconds": round(time.perf_counter() - t0, 1),
                "images_seen": steps * batch, "steps": steps}
        from neurovit.atomic import write_json

        write_json(cost_file, cost)
        return cost


class DinoSource:
    """`neurovit pretrain` (DINO, lightly) into OUT/sources/NAME, once; an interrupted run is resumed."""

    keys: ClassVar[set[str]] = {"data", "data_kind", "splits", "args", "config"}
    needs: ClassVar[set[str]] = {"data"}

    def __init__(self, cfg, name: str, opts: dict):
        self.cfg, self.name, self.opts = cfg, name, opts

    def folder(self) -> Path:
        return self.cfg.out_dir / "sources" / (self.name or "dino")

    def path(self) -> str:
        return str(self.folder() / "backbone.pth")

    def data_args(self) -> list[str]:
        """`data: train` means the ablation's own training stacks (its data_dir, split train; labels unread)."""
        data = str(self.opts["data"])
        if data == "train":
            return ["--data.data_dir", str(self.cfg.data_dir), "--data.kind", "stacks", "--data.splits", "[train]"]
        path = Path(data).expanduser()
        args = ["--data.data_dir", str(path if path.is_absolute() else (Path.cwd() / path).resolve())]
        if self.opts.get("data_kind"):
            args += ["--data.kind", str(self.opts["data_kind"])]
        if self.opts.get("splits"):
            args += ["--data.splits", json.dumps(list(self.opts["splits"]))]
        return args

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "neurovit", "pretrain", "--config", str(self.opts.get("config", "pretrain")),
               *self.data_args(), "--trainer.default_root_dir", str(self.folder())]
        if self.cfg.wandb.get("enabled", True):
            cmd += ["--trainer.logger.init_args.group", self.cfg.name, "--trainer.logger.init_args.name",
                    f"pretrain-{self.name}"]
        else:
            cmd += ["--trainer.logger", "false"]
        return cmd + [str(a) for a in self.opts.get("args") or []]

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.command()[1:]).encode()).hexdigest()[:16]

    def prepare(self, say: Callable[[str], None]) -> dict:
        from neurovit.ablate.runner import cell_env, run_logged

        folder, cost_file = self.folder(), self.folder() / COST
        if cost_file.is_file() and json.loads(cost_file.read_text()).get("fingerprint") == self.fingerprint():
            return json.loads(cost_file.read_text())
        resume = (folder / "checkpoints" / "last.ckpt").is_file() and not cost_file.is_file()
        if folder.exists() and not resume:  # a finished run of another configuration: redo
            shutil.rmtree(folder)
        cmd = self.command() + (["--ckpt_path", "last"] if resume else [])
        say(f"source {self.name!r}: DINO pretraining {'(resumed) ' if resume else ''}→ {self.path()} "
            f"(log {folder / 'pretrain.log'})")
        rc = run_logged(cmd, folder / "pretrain.log", cell_env(self.cfg, {}))
        if rc != 0 or not Path(self.path()).is_file():
            raise SourceError(f"source {self.name!r}: `neurovit pretrain` exited with {rc}; see {folder / 'pretrain.log'}")
        info = json.loads((folder / "backbone.json").read_text())
        cost = {"kind": "dino", "path": self.path(), "wall_seconds": info.get("wall_seconds"),
                "images_seen": info.get("images_seen"), "steps": info.get("steps"),
                "trained_on": info.get("trained_on", {}).get("kind"), "n_files": info.get("trained_on", {}).get("n_files"),
                "fingerprint": self.fingerprint()}
        from neurovit.atomic import write_json

        write_json(cost_file, cost)
        return cost


# kind → class: a new kind of 2D source is one class plus one line here
SOURCE_KINDS: dict[str, type] = {"file": FileSource, "mim": MimSource, "dino": DinoSource}


def parse_sources(raw: Any, where: str) -> dict[str, dict]:
    """The YAML's `sources:` as {name: {kind, ...options}}; a bare string is a file source."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SourceError(f"{where}: sources must map a source name to its settings")
    out = {}
    for name, spec in raw.items():
        if isinstance(spec, str):
            spec = {"kind": "file", "path": spec}
        if not isinstance(spec, dict) or spec.get("kind") not in SOURCE_KINDS:
            raise SourceError(f"{where}: sources.{name}: needs kind: one of {', '.join(SOURCE_KINDS)}")
        cls = SOURCE_KINDS[spec["kind"]]
        unknown = set(spec) - cls.keys - {"kind"}
        missing = cls.needs - set(spec)
        if unknown or missing:
            what = f"unknown key(s) {sorted(unknown)}" if unknown else f"missing {sorted(missing)}"
            raise SourceError(f"{where}: sources.{name} ({spec['kind']}): {what}; keys: {sorted(cls.keys)}")
        if "+" in str(name) or "/" in str(name):
            raise SourceError(f"{where}: sources.{name}: a source name may not contain '+' or '/'")
        out[str(name)] = dict(spec)
    return out


def make_source(cfg, name: str):
    """The source object of `name` in cfg.sources."""
    spec = dict(cfg.sources[name])
    return SOURCE_KINDS[spec.pop("kind")](cfg, name, spec)
