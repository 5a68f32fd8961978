"""Image folders: one subfolder per class (torchvision ``ImageFolder`` semantics).

Up to ``data.max_in_memory`` images are decoded once into a uint8 array; a larger folder is listed only, and
each image is read when a batch needs it (:class:`ImageFiles`, a ``Dataset``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from harness.config.checks import one_line
from harness.data import splits
from harness.data.raw import RawDataset, data_root
from harness.errors import ConfigError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


# Image folders: one subfolder per class (torchvision ImageFolder semantics).
def load_imagefolder(cfg: Any) -> RawDataset:
    # The values were checked with the rest of the data section (harness/config/schema.py).
    root = data_root(cfg)
    image_size, channels = cfg.get("image_size", 32), cfg.get("channels", 3)
    max_in_memory = cfg.get("max_in_memory", 20000)
    return _read_imagefolder(str(root.resolve()), image_size, channels, max_in_memory)


@functools.lru_cache(maxsize=2)
def _read_imagefolder(root: str, image_size: int, channels: int, max_in_memory: int) -> RawDataset:
    if not os.path.isdir(root):
        raise ConfigError(
            f"data.root={root} does not exist or is not a folder "
            "(imagefolder needs a folder with one subfolder per class)"
        )
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise ConfigError(
            f"data.root={root} has no class subfolders (imagefolder needs one subfolder per class)"
        )
    paths, labels = [], []
    for label, class_name in enumerate(classes):
        found = sorted(
            os.path.join(folder, f)
            for folder, _, files in os.walk(os.path.join(root, class_name), followlinks=True)
            for f in files
            if f.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not found:
            raise ConfigError(
                f"data.root: class folder {os.path.join(root, class_name)} has no images "
                f"(allowed extensions: {' '.join(IMAGE_EXTENSIONS)})"
            )
        paths += found
        labels += [label] * len(found)
    key = ("imagefolder", root, image_size, channels)
    common = dict(
        labels=np.asarray(labels, dtype=np.int64),
        classes=tuple(classes),
        channels=channels,
        image_size=image_size,
        paths=tuple(paths),
    )
    if len(paths) > max_in_memory:  # too many to hold as tensors: each image is read when a batch needs it
        return RawDataset(key=(*key, "lazy"), **common)
    images = np.stack([read_image(p, channels, image_size) for p in paths])
    return RawDataset(key=(*key, "memory"), images=images, **common)


def read_image(path: str, channels: int, image_size: int) -> np.ndarray:
    """uint8 (C, image_size, image_size): shorter side resized to ``image_size``, then center-cropped."""
    from PIL import Image
    from torchvision.transforms import functional as tf

    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")  # decodes; a broken file fails here
            image = tf.center_crop(tf.resize(image, image_size), image_size)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError... for broken files
        raise ConfigError(f"data.root: cannot read image {path} ({one_line(err)})") from err
    array = np.array(image, dtype=np.uint8)  # a writable copy (torch warns on read-only arrays)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


class ImageFiles(Dataset):
    """A part of a large image folder, read from disk one image at a time (yields ``(x, label)``)."""

    def __init__(
        self,
        paths: Sequence[str],
        labels: np.ndarray,
        transformed: np.ndarray,
        domain: str | None,
        channels: int,
        image_size: int,
        mean: np.ndarray,
        std: np.ndarray,
    ) -> None:
        self.paths = list(paths)
        self.labels = labels
        self.transformed = transformed
        self.domain = domain
        self.channels = channels
        self.image_size = image_size
        self.mean = torch.from_numpy(mean)[:, None, None]
        self.std = torch.from_numpy(std)[:, None, None]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(read_image(self.paths[i], self.channels, self.image_size)).float().div_(255.0)
        if self.transformed[i]:
            x = splits.apply_domain(x, self.domain)
        return (x - self.mean) / self.std, int(self.labels[i])
