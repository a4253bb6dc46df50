"""`neurovit fit|validate|test`: LightningCLI over SegmentationModule + NeuronDataModule.

Configs are YAML files of constructor arguments (see experiments/); several `--config` files merge left
to right, and OmegaConf interpolations (`${data.block_depth}`) are resolved after command-line
overrides (jsonargparse "omegaconf+" mode), so `--data.block_depth 3` reaches every field that refers
to it. Extra top-level groups: `init` (TransferInit: 2D→3D weight transfer), `outputs` (ValidationWriter:
prediction TIFFs + metric tables), `media` (WandbMedia: W&B images and tables), `reconstruction`
(ReconstructionCallback: traced SWC and ESA/DSA/PDS/node-F1 of the evaluated volumes).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import jsonargparse
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from neurovit.data.datamodule import NeuronDataModule
from neurovit.lit.callbacks import ReconstructionCallback, TransferInit, ValidationWriter, WandbMedia
from neurovit.lit.module import SegmentationModule

TRAINER_DEFAULTS = {
    "default_root_dir": "runs/default",
    "logger": {"class_path": "neurovit.lit.loggers.WandbLogger",
               "init_args": {"offline": True, "project": "neurovit", "save_dir": "runs"}},
}


# Interpolations are resolved after command-line overrides in every subcommand's parser.
PARSER_KWARGS = {"parser_mode": "omegaconf+",
                 **{cmd: {"parser_mode": "omegaconf+"} for cmd in ("fit", "validate", "test")}}


class RunConfig(SaveConfigCallback):
    """Saves the full config as `<default_root_dir>/config.yaml` (overwriting, so a second run into the
    same folder works) and logs it to every logger (W&B config)."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.already_saved:
            return
        if trainer.is_global_zero:
            root = Path(trainer.default_root_dir)
            root.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, root / self.config_filename, skip_none=False, overwrite=True,
                             multifile=self.multifile)
        self.already_saved = True
        self.save_config(trainer, pl_module, stage)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        cfg = self.config.as_dict() if hasattr(self.config, "as_dict") else dict(self.config)
        for logger in trainer.loggers:
            logger.log_hyperparams(_flatten_for_logging(cfg))


def _flatten_for_logging(cfg: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten_for_logging(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = str(v)
        else:
            out[key] = v
    return out


class NeurovitCLI(LightningCLI):
    """LightningCLI with neurovit's callback groups; fit, validate and test (prediction of stacks is the
    separate `neurovit predict`, which normalises and resamples as the checkpoint says)."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {k: v for k, v in LightningCLI.subcommands().items() if k in ("fit", "validate", "test")}

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(TransferInit, "init")
        parser.set_defaults({"init.strategy": "scratch"})
        parser.add_lightning_class_args(ValidationWriter, "outputs")
        parser.add_lightning_class_args(WandbMedia, "media")
        parser.add_lightning_class_args(ReconstructionCallback, "reconstruction")

    def _parse_ckpt_path(self) -> None:
        """Checks before Lightning reads the checkpoint's hyperparameters (which it would silently put in place
        of the config's): see `_check_run`."""
        subcommand = self.config.get("subcommand")
        if subcommand:
            self._check_run(subcommand)
        super()._parse_ckpt_path()

    def _check_run(self, subcommand: str) -> None:
        """`--ckpt_path last` means RUN/checkpoints/last.ckpt of this run folder (Lightning alone looks only at
        checkpoints made in this process and silently starts from step 0); the checkpoint must be a neurovit
        checkpoint whose network matches the config's; a new fit into a folder that already holds a run is
        refused, so `last.ckpt` always belongs to the newest run."""
        from neurovit.predict import check_checkpoint

        cfg = self.config[subcommand]
        cfg.ckpt_path = resolve_ckpt_path(cfg.trainer.default_root_dir, cfg.get("ckpt_path"),
                                          fitting=subcommand == "fit")
        if cfg.ckpt_path:
            _check_same_network(check_checkpoint(cfg.ckpt_path), cfg.model.net)


def resolve_ckpt_path(default_root_dir: str | None, ckpt_path: str | None, *, fitting: bool) -> str | None:
    """`--ckpt_path last` → RUN/checkpoints/last.ckpt (an error if there is none); a new fit (no ckpt_path)
    into a run folder that already holds checkpoints is refused. Shared by `fit` and `pretrain`."""
    from neurovit.errors import NeurovitError

    root = Path(default_root_dir or ".")
    folder = root / "checkpoints"
    if ckpt_path == "last":
        last = folder / "last.ckpt"
        if not last.is_file():
            raise NeurovitError(f"--ckpt_path last: there is no {last} to resume (no earlier run in {root}); "
                                "leave out --ckpt_path to start a new run")
        return str(last)
    if not ckpt_path and fitting and folder.is_dir() and any(folder.glob("*.ckpt")):
        raise NeurovitError(f"{root} already holds a run ({folder}); resume it with --ckpt_path last, or train "
                            "into a new --trainer.default_root_dir (or delete the old run)")
    return ckpt_path


def _plain(x):
    """A config value (jsonargparse Namespace, dict, list) as plain Python containers."""
    if hasattr(x, "as_dict"):
        x = x.as_dict()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items() if not str(k).startswith("__")}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _check_same_network(ckpt: Path, config_net) -> None:
    """A config whose network differs from the checkpoint's is an error naming the differing keys (Lightning
    would otherwise run the checkpoint's network silently while config.yaml says another)."""
    import torch

    from neurovit.errors import NeurovitError

    saved = _plain(torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
                   .get("hyper_parameters", {}).get("net"))
    current = _plain(config_net)
    if not isinstance(saved, dict) or not isinstance(current, dict):
        return
    diffs = []
    if saved.get("class_path") != current.get("class_path"):
        diffs.append(f"net.class_path: checkpoint {saved.get('class_path')!r}, config {current.get('class_path')!r}")
    a, b = saved.get("init_args") or {}, current.get("init_args") or {}
    diffs += [f"net.init_args.{k}: checkpoint {a[k]!r}, config {b[k]!r}" for k in sorted(set(a) & set(b))
              if a[k] != b[k]]
    if diffs:
        raise NeurovitError(f"{ckpt} was trained with another network than this config: " + "; ".join(diffs[:6])
                            + ". Use the run's own config (--config RUN/config.yaml) or set those model.net keys "
                            "to the checkpoint's values")


def run(argv: Sequence[str]) -> int:
    """Run a LightningCLI subcommand with `argv` (e.g. ["fit", "--config", "experiments/demo.yaml"])."""
    # Config files write ${trainer.x}; under a subcommand the full path is fit.trainer.x, so absolute
    # interpolation paths are made relative to the subcommand's config.
    jsonargparse.set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    # `neurovit fit ...` hands its own argv to LightningCLI; sys.argv must keep them too (DDP re-launches
    # the command for the other ranks from sys.argv), which LightningCLI would warn about on every run.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    from neurovit.configs import resolve_config_args

    try:
        NeurovitCLI(SegmentationModule, NeuronDataModule, args=resolve_config_args(argv), seed_everything_default=0,
                    trainer_defaults=TRAINER_DEFAULTS, save_config_callback=RunConfig,
                    save_config_kwargs={"overwrite": True}, parser_kwargs=PARSER_KWARGS,
                    auto_configure_optimizers=False)
    finally:
        _finish_wandb()
    return 0


def _finish_wandb() -> None:
    """Close the W&B run of this command and reset wandb's process-wide settings, so the next command in the
    same process (a notebook, the tests) starts its own run and reads WANDB_MODE afresh."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is None:
        return
    if getattr(wandb, "run", None) is not None:
        wandb.finish()
    if hasattr(wandb, "teardown"):
        wandb.teardown()
