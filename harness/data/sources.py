"""Which ``data.name`` reads which source: the registry of datasets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.data import cifar, embedded, imagefolder
from harness.data.raw import RawDataset

LOADERS: dict[str, Callable[[Any], RawDataset]] = {
    "mnist5k": embedded.load_mnist5k,
    "digits": embedded.load_digits,
    "cifar10": cifar.load_cifar,
    "cifar100": cifar.load_cifar,
    "imagefolder": imagefolder.load_imagefolder,
    "synthetic": embedded.load_synthetic,
}

DATASETS = tuple(LOADERS)
