"""Pretrained 2D ViT weights as a timm-named state dict, from a local file or a timm ``name.tag``.

Local files: a timm/safetensors state dict, an official DINO ``*_pretrain.pth`` backbone (same key names as
timm), a full DINO training checkpoint (``teacher``/``student`` dicts whose keys carry ``backbone.`` /
``module.backbone.`` prefixes; the teacher by default), or `neurovit pretrain`'s RUN/backbone.pth (timm
names) or its Lightning checkpoint (``teacher_backbone.``/``student_backbone.`` prefixes). A timm name is looked up in the local Hugging Face and
torch-hub caches first and downloaded through timm only when the hub is reachable; otherwise a WeightsError
says how to get the file. Nothing here can hang on a download while offline.
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import torch

from neurovit.errors import WeightsError

WEIGHT_SUFFIXES = {".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".pkl", ".tar"}
HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")
OFFLINE_ENV = ("NEUROVIT_OFFLINE", "HF_HUB_OFFLINE")
DINO_URLS = {
    "vit_small_patch16_224": "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
    "vit_small_patch8_224": "https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth",
    "vit_base_patch16_224": "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
    "vit_base_patch8_224": "https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth",
}

Which = Literal["teacher", "student"]


def load_2d_state_dict(
    source: str | os.PathLike[str], which: Which = "teacher", cache_dir: str | os.PathLike[str] | None = None
) -> dict[str, torch.Tensor]:
    """2D ViT weights with timm key names from a file path or a timm ``name.tag`` (e.g. vit_small_patch16_224.dino)."""
    if is_weights_path(source):
        return load_checkpoint_file(source, which)
    return load_timm_weights(str(source), which, cache_dir)


def is_weights_path(source: str | os.PathLike[str]) -> bool:
    """True for something that names a file (exists, has a directory part or a weights suffix), not a timm name."""
    s = os.fspath(source)
    return (
        isinstance(source, os.PathLike)
        or "/" in s
        or os.sep in s
        or Path(s).suffix in WEIGHT_SUFFIXES
        or (Path(s).exists())
    )


def _how_to_get(arch: str | None = None, hub_id: str | None = None) -> str:
    """What to do: the official DINO file to download, or the timm hub repository to fetch elsewhere."""
    url = DINO_URLS.get(arch or "", DINO_URLS["vit_small_patch16_224"])
    hub_id = hub_id or "timm/vit_small_patch16_224.dino"
    return (
        f"download an official DINO backbone, e.g. {url} , and pass its path as `pretrained`, or fetch timm's copy "
        f"on a machine with internet (`huggingface-cli download {hub_id}` or `hf download {hub_id}`) and copy "
        "its Hugging Face cache (~/.cache/huggingface/hub) to this machine"
    )


def _hub_repo(cfg: Any, name: str) -> str | None:
    """timm's Hugging Face repository id for a pretrained cfg ('timm/' alone means 'timm/<name>')."""
    if not cfg.hf_hub_id:
        return None
    return cfg.hf_hub_id if "/" in cfg.hf_hub_id.rstrip("/") else cfg.hf_hub_id.rstrip("/") + "/" + name


def _torch_load(path: Path) -> Any:
    """torch.load with weights_only=True; argparse.Namespace (DINO's saved ``args``) is allowed as well."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def load_checkpoint_file(path: str | os.PathLike[str], which: Which = "teacher") -> dict[str, torch.Tensor]:
    """Read a local checkpoint (.safetensors or torch pickle) and return its ViT backbone with timm key names."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"pretrained weights file not found: {path}; {_how_to_get(_arch_from_filename(path))}"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = _torch_load(path)
    except Exception as e:  # corrupt file, unsafe pickle, wrong format: all mean "cannot use this file"
        raise WeightsError(f"cannot read pretrained weights {path}: {type(e).__name__}: {e}") from e
    return normalize_state_dict(obj, which=which, origin=str(path))


def _arch_from_filename(path: Path) -> str | None:
    return next((arch for arch, url in DINO_URLS.items() if url.rsplit("/", 1)[1] == path.name), None)


def normalize_state_dict(
    obj: Any, which: Which = "teacher", origin: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Unwrap ``teacher``/``student``/``model``/``state_dict`` and strip the prefix in front of ``pos_embed``.

    Keys outside that prefix (e.g. DINO's ``module.head.*`` projection head) are dropped.
    """
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{origin} does not hold a state dict (got {type(obj).__name__})")
    if "teacher" in obj or "student" in obj:
        if not isinstance(obj.get(which), Mapping):
            have = [k for k in ("teacher", "student") if isinstance(obj.get(k), Mapping)]
            raise WeightsError(
                f"{origin} is a DINO training checkpoint without a {which!r} dict (has: {have})"
            )
        obj = obj[which]
    for wrapper in ("model", "state_dict"):
        if isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    anchors = [
        k for k, v in obj.items() if isinstance(k, str) and k.endswith("pos_embed") and torch.is_tensor(v)
    ]
    prefixes = [k[: -len("pos_embed")] for k in anchors if k == "pos_embed" or k.endswith(".pos_embed")]
    if not prefixes:
        first = ", ".join(map(str, list(obj)[:8]))
        raise WeightsError(
            f"{origin} does not look like a ViT checkpoint: no 'pos_embed' key (keys: {first} …)"
        )
    # a `neurovit pretrain` Lightning checkpoint has teacher_backbone.* and student_backbone.*: take `which`
    prefix = min(prefixes, key=lambda p: (which not in p, len(p)))
    return {k[len(prefix) :]: v for k, v in obj.items() if k.startswith(prefix) and torch.is_tensor(v)}


def hf_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The Hugging Face hub cache: ``cache_dir``, else $HF_HUB_CACHE, else $HF_HOME/hub (read at call time)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def find_cached_weights(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Local file of timm's pretrained ``name.tag`` in the HF cache or the torch-hub cache, or None."""
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        return None
    repo = _hub_repo(cfg, name)
    if repo:
        for filename in (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_FILENAMES:
            hit = try_to_load_from_cache(repo, filename, cache_dir=hf_cache_dir(cache_dir))
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
    if cfg.url:
        hub_file = Path(torch.hub.get_dir()) / "checkpoints" / cfg.url.rsplit("/", 1)[1]
        if hub_file.is_file():
            return hub_file
    return None


def _hub_host() -> tuple[str, int]:
    """(host, port) of the Hugging Face endpoint ($HF_ENDPOINT or https://huggingface.co)."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when an offline flag is set (NEUROVIT_OFFLINE / HF_HUB_OFFLINE) or the hub endpoint does not
    answer within ``timeout`` seconds (DNS included, bounded by a watchdog thread)."""
    if any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"} for v in OFFLINE_ENV):
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(_hub_host(), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)  # getaddrinfo ignores socket timeouts: bound it by join
    t.start()
    t.join(timeout + 1.0)
    return bool(result and result[0])


def load_timm_weights(
    name: str, which: Which = "teacher", cache_dir: str | os.PathLike[str] | None = None
) -> dict[str, torch.Tensor]:
    """timm's pretrained weights for ``name.tag``: the cached file if present, else a timm download if online."""
    from timm.models import get_pretrained_cfg, split_model_name_tag

    arch, _ = split_model_name_tag(name)
    cfg = get_pretrained_cfg(name)
    if cfg is None:
        raise WeightsError(
            f"{name!r} is neither an existing file nor a timm model name with pretrained weights "
            f"(e.g. vit_small_patch16_224.dino); {_how_to_get(arch)}"
        )
    cached = find_cached_weights(name, cache_dir)
    if cached is not None:
        return load_checkpoint_file(cached, which)
    if not hub_reachable():
        raise WeightsError(
            f"pretrained weights for {name!r} are not in the local cache ({hf_cache_dir(cache_dir)}) and the "
            f"Hugging Face hub is unreachable (offline); {_how_to_get(arch, _hub_repo(cfg, name))}"
        )
    import timm

    try:  # the real download, through timm's hub code (only reached when the hub answered)
        model = timm.create_model(name, pretrained=True, num_classes=0, cache_dir=cache_dir)
    except Exception as e:
        raise WeightsError(
            f"downloading pretrained weights for {name!r} failed: {e}; {_how_to_get(arch, _hub_repo(cfg, name))}"
        ) from e
    return normalize_state_dict(model.state_dict(), origin=name)
