"""A whole dataset as read from its source, before any splitting: uint8 images, labels, class names."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ConfigError


@dataclass(frozen=True)
class RawDataset:
    """A whole dataset before splitting. Hashed by ``key`` (the config values that made it) for caching."""

    key: tuple
    labels: np.ndarray = field(compare=False)  # int64 (N,)
    classes: tuple[str, ...] = field(compare=False)
    channels: int = field(compare=False)
    image_size: int = field(compare=False)
    images: np.ndarray | None = field(compare=False, default=None)  # uint8 (N, C, H, W); None: read lazily
    pixel_max: float = field(compare=False, default=255.0)  # the value of white in `images`
    paths: tuple[str, ...] = field(compare=False, default=())  # image files, for lazily read folders
    official_test: np.ndarray | None = field(compare=False, default=None)  # bool (N,): the dataset's test set
    # image folders: the shorter side images were resized to before the center crop, and the unreadable
    # files left out (data.bad_images=skip)
    resize: int | None = field(compare=False, default=None)
    skipped: tuple[str, ...] = field(compare=False, default=())


def data_root(cfg: Any) -> Path:
    """``data.root`` (``~`` expanded); the loaders say what they need inside it."""
    root = cfg.get("root")
    if not root:
        raise ConfigError(
            f"data.root is not set; data={cfg.get('name')} needs a folder, e.g. data.root=/datasets"
        )
    return Path(os.path.expanduser(str(root)))
