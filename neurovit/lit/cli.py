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
    """Close the W&B run of this command, so the next command in the same process starts its own."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
