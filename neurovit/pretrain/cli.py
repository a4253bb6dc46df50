"""`neurovit pretrain`: DINO pretraining of a 2D ViT with LightningCLI (same Trainer, configs, W&B, DDP,
checkpoints and `--ckpt_path last` resume as `neurovit fit`).

    neurovit pretrain --config pretrain --data.data_dir PHOTOS_OR_STACKS --trainer.default_root_dir RUN
    neurovit fit --config base --init.source RUN/backbone.pth --init.strategy center ...
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import jsonargparse
from lightning.pytorch.cli import LightningCLI

from neurovit.errors import NeurovitError
from neurovit.lit.cli import RunConfig, _finish_wandb, resolve_ckpt_path
from neurovit.pretrain.data import PretrainDataModule
from neurovit.pretrain.dino import DinoPretrainModule
from neurovit.pretrain.export import BackboneExport

TRAINER_DEFAULTS = {
    "default_root_dir": "runs/pretrain",
    "max_epochs": 10,
    "logger": {"class_path": "neurovit.lit.loggers.WandbLogger",
               "init_args": {"offline": True, "project": "neurovit-pretrain", "save_dir": "runs"}},
}


def persistent_callbacks() -> list:
    """Callbacks of every pretraining run (added to those of the config): RUN/checkpoints/last.ckpt after
    every epoch, the resume point (the module logs its own learning rate: LearningRateMonitor refuses to run
    without a logger)."""
    from neurovit.lit.callbacks import RunCheckpoint

    return [RunCheckpoint(filename="last", save_top_k=1, save_on_train_epoch_end=True, enable_version_counter=False)]


class PretrainCLI(LightningCLI):
    """LightningCLI over DinoPretrainModule + PretrainDataModule, without subcommands (it always fits)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="resume: 'last' (RUN/checkpoints/last.ckpt) or a checkpoint of `neurovit pretrain`")
        parser.add_lightning_class_args(BackboneExport, "export")
        # one fact: the ViT's native size is the global crop size
        parser.link_arguments("data.global_crop_size", "model.img_size")


def check_pretrain_checkpoint(path: str, arch: str) -> None:
    """A checkpoint of `neurovit pretrain` with the same ViT size as the config; else one-line NeurovitError."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:
        raise NeurovitError(f"{path} is not a checkpoint torch can read ({type(exc).__name__}); pass the run's "
                            "RUN/checkpoints/last.ckpt or --ckpt_path last") from None
    keys = data.get("state_dict", {}) if isinstance(data, dict) else {}
    if not any(str(k).startswith("teacher_backbone.") for k in keys):
        raise NeurovitError(f"{path} is not a checkpoint of `neurovit pretrain` (no teacher_backbone weights); "
                            "to start from 2D weights use `neurovit fit --init.source`")
    saved = data.get("hyper_parameters", {}).get("arch")
    if saved and saved != arch:
        raise NeurovitError(f"{path} was pretrained with model.arch {saved!r}, the config says {arch!r}; use the "
                            "run's own config (--config RUN/config.yaml)")


def run(argv: Sequence[str]) -> int:
    """Run `neurovit pretrain` with `argv` (the arguments after the word pretrain)."""
    jsonargparse.set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    from neurovit.configs import resolve_config_args

    try:
        cli = PretrainCLI(DinoPretrainModule, PretrainDataModule, args=resolve_config_args(list(argv)),
                          run=False, seed_everything_default=0, trainer_defaults={**TRAINER_DEFAULTS, "callbacks": persistent_callbacks()},
                          save_config_callback=RunConfig, save_config_kwargs={"overwrite": True},
                          parser_kwargs={"parser_mode": "omegaconf+", "prog": "neurovit pretrain"})
        ckpt = resolve_ckpt_path(cli.trainer.default_root_dir, cli.config.get("ckpt_path"), fitting=True)
        if ckpt:
            check_pretrain_checkpoint(ckpt, cli.config.model.arch)
        cli.datamodule.describe()  # list the inputs now: a bad folder fails before any process starts
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt)
    finally:
        _finish_wandb()
    return 0
