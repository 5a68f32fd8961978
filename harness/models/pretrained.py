"""Pretrained weights by name, from the local caches only, and the preprocessing they were trained with.

- torchvision: ``model.weights=IMAGENET1K_V1`` (or ``DEFAULT``, or any name of that architecture's weights
  enum) is the file torchvision's own download would write: ``$TORCH_HOME/hub/checkpoints/<file name of the
  enum's url>``. A path still works; a path whose file name is one of those files brings that entry's
  preprocessing too.
- timm: ``model.pretrained=true`` reads the model's ``pretrained_cfg`` source from the local Hugging Face cache
  (``$HF_HUB_CACHE``, ``$HF_HOME/hub``) or, for weights published by url, from the torch hub cache;
  ``model.weights=<file>`` reads a local file (safetensors or torch.save).

Nothing is downloaded unless ``model.download=true``; an absent file is one line naming the file and the
folder it belongs in. :func:`preprocessing_of` answers, before any data is read, which mean, std and input
size the weights expect (None for random weights or a file of unknown origin).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

TORCHVISION_ARCHS = ("resnet18", "resnet34", "resnet50")
# The files timm's hub loader looks for in a Hugging Face repo, in its order.
HF_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class Preprocessing:
    """What the weights were trained on: per-channel mean/std of pixel values in [0, 1], the input (crop) side
    and the side the shorter image edge is resized to before the center crop."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    resize: int
    source: str  # e.g. "torchvision ResNet18_Weights.IMAGENET1K_V1", "timm test_resnet.r160_in1k"

    def to_dict(self) -> dict:
        return asdict(self)


# --- torchvision ---------------------------------------------------------------------------------------


def torchvision_entry(arch: str, value: str | None):
    """The weights-enum entry ``value`` names (by name, or by a path whose file name is its file), or None."""
    if value is None:
        return None
    import torchvision

    enum = torchvision.models.get_model_weights(arch)
    if value in enum.__members__:
        return enum[value]
    for entry in enum:
        if Path(str(value)).name == _url_file(entry.url):
            return entry
    if _looks_like_name(value):
        names = ", ".join(enum.__members__)
        raise ConfigError(
            f"model.weights={value} is not a weights name of {arch}; its names: {names} "
            "(or give the path of a state_dict file)"
        )
    return None


def torchvision_file(arch: str, value: str, *, download: bool) -> str:
    """The state_dict file of ``model.weights``: the path given, or the named entry's file in the hub cache."""
    import torchvision

    enum = torchvision.models.get_model_weights(arch)
    if value not in enum.__members__:
        if _looks_like_name(value):
            torchvision_entry(arch, value)  # raises: an unknown name
        return str(value)
    entry = enum[value]
    folder = hub_checkpoints()
    path = folder / _url_file(entry.url)
    if not path.is_file():
        if not download:
            raise ConfigError(
                f"model.weights={value}: {path.name} is not in {folder} (torchvision's cache, "
                f"$TORCH_HOME/hub/checkpoints); put the file there, or set model.download=true to fetch it"
            )
        import torch

        torch.hub.load_state_dict_from_url(entry.url, model_dir=str(folder), progress=False, check_hash=True)
    return str(path)


def torchvision_preprocessing(entry) -> Preprocessing:
    transform = entry.transforms()
    return Preprocessing(
        mean=tuple(float(m) for m in transform.mean),
        std=tuple(float(s) for s in transform.std),
        image_size=int(transform.crop_size[0]),
        resize=int(transform.resize_size[0]),
        source=f"torchvision {entry}",
    )


def hub_checkpoints() -> Path:
    """Where torchvision's (and timm's url) downloads land: ``torch.hub.get_dir()/checkpoints``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _url_file(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _looks_like_name(value: str) -> bool:
    """An enum-style name (``IMAGENET1K_V2``) that is no existing file: a name, not a path."""
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_]*", str(value))) and not Path(str(value)).exists()


# --- timm ----------------------------------------------------------------------------------------------


def timm_pretrained_cfg(arch: str) -> dict:
    """timm's ``pretrained_cfg`` of ``arch`` (a model name, optionally with its tag) as a dict."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    return cfg.to_dict() if cfg is not None else {}


def timm_preprocessing(arch: str) -> Preprocessing:
    cfg = timm_pretrained_cfg(arch)
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    tag = cfg.get("tag")
    return Preprocessing(
        mean=tuple(float(m) for m in cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(s) for s in cfg.get("std", (0.229, 0.224, 0.225))),
        image_size=size,
        resize=int(size / crop_pct),  # timm's eval transform: resize to size / crop_pct, then center crop
        source=f"timm {cfg.get('architecture', arch)}" + (f".{tag}" if tag else ""),
    )


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache as huggingface_hub resolves it, read now (tests point it at a temp folder)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def timm_cached_file(arch: str) -> str:
    """The local file of ``arch``'s pretrained weights (Hugging Face cache, else the torch hub cache for url
    weights); a one-line ConfigError naming the file and its folder when it is not there."""
    cfg = timm_pretrained_cfg(arch)
    hub_id, url = cfg.get("hf_hub_id"), cfg.get("url")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        cache = hf_cache_dir()
        names = (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else HF_FILES
        for name in names:
            found = try_to_load_from_cache(hub_id, name, cache_dir=str(cache))
            if isinstance(found, str) and os.path.isfile(found):
                return found
        folder = cache / f"models--{hub_id.replace('/', '--')}" / "snapshots" / "<revision>"
        raise ConfigError(
            f"model.pretrained=true: {names[0]} of {hub_id} is not in {folder} (the local Hugging Face cache, "
            "$HF_HUB_CACHE or $HF_HOME/hub); put it there, give the file as model.weights=<path>, or set "
            "model.download=true to fetch it"
        )
    if url:
        path = hub_checkpoints() / _url_file(url)
        if path.is_file():
            return str(path)
        raise ConfigError(
            f"model.pretrained=true: {path.name} is not in {path.parent} (the torch hub cache); put it there, "
            "give the file as model.weights=<path>, or set model.download=true to fetch it"
        )
    raise ConfigError(f"model.arch={arch} has no pretrained weights in timm; set model.pretrained=false")


# --- before the data is read ---------------------------------------------------------------------------


def preprocessing_of(model_cfg: Any) -> Preprocessing | None:
    """The preprocessing the model's pretrained weights bring, or None (random weights, or a file whose origin
    is unknown). Reads no weights file: the data is prepared before the model is built."""
    get = model_cfg.get
    name = get("name")
    if name in TORCHVISION_ARCHS:
        entry = torchvision_entry(name, get("weights"))
        return torchvision_preprocessing(entry) if entry is not None else None
    if name == "timm" and get("arch") and (get("pretrained") or get("weights")):
        check_timm_arch(get("arch"))
        return timm_preprocessing(get("arch"))
    return None


def check_timm_arch(arch: str) -> None:
    """An unknown timm architecture is one line with the closest names."""
    import difflib

    import timm

    if timm.is_model(arch):
        return
    base = str(arch).split(".", 1)[0]
    close = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.6)
    raise ConfigError(
        f"model.arch={arch} is not a timm model"
        + (f"; did you mean {', '.join(close)}?" if close else "")
        + " (timm.list_models('<pattern>*') lists them)"
    )
