"""Tiny image folders and locally saved "pretrained" weights (random weights under the real file names), for
the tests of pretrained backbones, augmentation and streaming. Nothing here touches the network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_folder(root, classes=("ant", "bee", "cat"), per_class=8, size=(40, 30), fmt="png", seed=0) -> Path:
    """One subfolder per class; each class a colour tint plus noise, so a tiny net can learn it."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (Path(root) / name).mkdir(parents=True, exist_ok=True)
        tint = np.zeros(3)
        tint[c % 3] = 120
        for i in range(per_class):
            pixels = rng.integers(0, 120, size=(size[1], size[0], 3)) + tint
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(Path(root) / name / f"{i}.{fmt}")
    return Path(root)


def save_torchvision_weights(arch: str, torch_home: Path, weights: str = "IMAGENET1K_V1") -> Path:
    """torchvision's architecture with random weights, saved where torchvision's own download would put it."""
    import torch
    import torchvision

    entry = torchvision.models.get_model_weights(arch)[weights]
    folder = Path(torch_home) / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / entry.url.rsplit("/", 1)[-1]
    torch.manual_seed(0)
    torch.save(getattr(torchvision.models, arch)(weights=None).state_dict(), path)
    return path


def save_timm_weights(arch: str, hub_cache: Path) -> Path:
    """timm's model with random weights as ``model.safetensors`` in a Hugging Face cache layout
    (models--<org>--<name>/snapshots/<rev>/, refs/main), as a download by timm would leave it."""
    import timm
    import torch
    from safetensors.torch import save_file

    hub_id = timm.models.get_pretrained_cfg(arch).hf_hub_id
    repo = Path(hub_cache) / f"models--{hub_id.replace('/', '--')}"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in timm.create_model(arch, pretrained=False).state_dict().items()}
    save_file(state, snapshot / "model.safetensors")
    return snapshot / "model.safetensors"
