"""Pieces the benchmark scripts share: the network to time, and waiting for the device."""

from __future__ import annotations

from pathlib import Path

import torch


def bench_model(ckpt: str | None, arch: str, out_slices: str | None = None, device: str | torch.device = "cpu"):
    """(net, description, trained?): the network of checkpoint `ckpt` (written by `neurovit fit`) in eval mode
    on `device`, or, when the file is missing, an untrained SliceViT of `arch` (seeded). With `out_slices`
    the checkpoint must be such a model and the untrained one is built so ("center" when None)."""
    if ckpt and Path(ckpt).is_file():
        from neurovit.predict import load_model

        module = load_model(ckpt, device)
        net = module.net
        net.normaliser = module.preprocessing.normaliser  # the checkpoint's own (see model_normaliser)
        if out_slices is not None and getattr(net, "out_slices", "center") != out_slices:
            raise SystemExit(f"{ckpt} is not an out_slices={out_slices!r} model")
        return net, f"checkpoint {ckpt}", True
    from neurovit.models import SliceViT

    torch.manual_seed(0)
    net = SliceViT(arch=arch, out_slices=out_slices or "center").eval().to(device)
    return net, f"untrained {arch} ({ckpt} not found)", False


def model_normaliser(net):
    """The normaliser a benchmarked network was trained with (the default one for an untrained network)."""
    from neurovit.data.normalise import Normaliser

    return getattr(net, "normaliser", None) or Normaliser()


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (timings must not stop before the kernels do); nothing on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
