"""``model=convnet``: a plain CNN in the style of Yosinski et al. (2014), one weight layer per group
(``conv1 .. convN, fc1 .. fcM, head``), so "the first n layers" of the paper is "the first n groups"."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from harness.errors import ConfigError
from harness.models.groups import GroupedModel, LayerGroup, finish


def build_convnet(cfg: dict, *, num_classes: int, in_channels: int, image_size: int) -> GroupedModel:
    """conv1..convN -> fc1..fcM -> head, one weight layer per group, as an ``nn.Sequential`` of groups."""
    # Each value was checked by the schema (build_model); the pool list's length needs the channels.
    channels, hidden = list(cfg.get("channels") or []), list(cfg.get("hidden") or [])
    kernel_size = cfg.get("kernel_size", 3)
    batchnorm = cfg.get("batchnorm", False)
    dropout = float(cfg.get("dropout", 0.0))
    pool = cfg.get("pool")
    if pool is None:
        pool = [True] * len(channels)
    if len(pool) != len(channels):
        raise ConfigError(
            f"model.pool={pool} must be null (pool after every conv layer) or a list of {len(channels)} "
            "true/false (one per entry of model.channels)"
        )

    children: OrderedDict[str, nn.Module] = OrderedDict()
    size, c_in = image_size, in_channels
    for i, (c_out, do_pool) in enumerate(zip(channels, pool, strict=True), start=1):
        # 'same' padding: only pooling shrinks the map, so the flattened size is easy to reason about.
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not batchnorm)
        ]
        if batchnorm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
        # A 2x2 pool needs at least a 2x2 map: on small images (8x8 digits) the late pools are skipped.
        if do_pool and size >= 2:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        children[f"conv{i}"] = nn.Sequential(*layers)
        c_in = c_out

    flat = _flat_features(nn.Sequential(children), in_channels, image_size)
    for i, width in enumerate(hidden, start=1):
        layers = [nn.Flatten()] if i == 1 else []
        layers.append(nn.Linear(flat, width, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(nn.ReLU(inplace=True))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        children[f"fc{i}"] = nn.Sequential(*layers)
        flat = width
    head = nn.Linear(flat, num_classes)
    children["head"] = nn.Sequential(nn.Flatten(), head) if not hidden else head

    net = nn.Sequential(children)
    groups = [LayerGroup(name, (name,)) for name in children]
    return finish(cfg, net, groups)


def _flat_features(features: nn.Module, in_channels: int, image_size: int) -> int:
    """Flattened size of the conv stack's output, by a dry run (no formula to keep in sync)."""
    with torch.no_grad():
        features.eval()
        out = features(torch.zeros(1, in_channels, image_size, image_size))
        features.train()
    return out[0].numel()
