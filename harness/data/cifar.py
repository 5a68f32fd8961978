"""CIFAR-10/100 in torchvision's on-disk layout (the python pickles of the official archives).

Nothing is downloaded unless ``data.download=true``. The pickles are read by an unpickler that refuses
anything beyond numpy arrays, lists and dicts: a data folder is never a way to run code.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.config.checks import one_line
from harness.data.raw import RawDataset, data_root
from harness.errors import ConfigError


# CIFAR in torchvision's on-disk layout (the python pickles of the official archives).
@dataclass(frozen=True)
class _CifarLayout:
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    names_key: str
    labels_key: str
    torchvision_class: str


_CIFAR = {
    "cifar10": _CifarLayout(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "batches.meta",
        "label_names",
        "labels",
        "CIFAR10",
    ),
    "cifar100": _CifarLayout(
        "cifar-100-python", ("train",), ("test",), "meta", "fine_label_names", "fine_labels", "CIFAR100"
    ),
}


def load_cifar(cfg: Any) -> RawDataset:
    name = cfg.get("name")
    layout = _CIFAR[name]
    root = data_root(cfg)
    folder = root / layout.folder
    if not folder.is_dir() and cfg.get("download", False):
        _download_cifar(name, layout, root)
    if not folder.is_dir():
        raise ConfigError(
            f"data.root={root}: no {layout.folder}/ folder there ({name} not found); "
            "data.download=true fetches it"
        )
    return _read_cifar(name, str(folder.resolve()))


def _download_cifar(name: str, layout: _CifarLayout, root: Path) -> None:
    import torchvision.datasets

    try:  # one archive holds train and test; torchvision downloads, checks and extracts it
        getattr(torchvision.datasets, layout.torchvision_class)(str(root), train=True, download=True)
    except Exception as err:  # network, disk, checksum: all things the user fixes outside the code
        raise ConfigError(
            f"data.download=true could not fetch {name} into data.root={root}: {one_line(err)}"
        ) from err


@functools.lru_cache(maxsize=2)
def _read_cifar(name: str, folder: str) -> RawDataset:
    layout = _CIFAR[name]
    meta = _unpickle_arrays(Path(folder) / layout.meta_file)
    classes = tuple(meta[layout.names_key])
    images, labels, is_test = [], [], []
    for files, test in ((layout.train_files, False), (layout.test_files, True)):
        for file_name in files:
            batch = _unpickle_arrays(Path(folder) / file_name)
            data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            images.append(data)
            labels.append(np.asarray(batch[layout.labels_key], dtype=np.int64))
            is_test.append(np.full(len(data), test))
    return RawDataset(
        key=(name, folder),
        labels=np.concatenate(labels),
        classes=classes,
        channels=3,
        image_size=32,
        images=np.concatenate(images),
        official_test=np.concatenate(is_test),
    )


class _ArrayUnpickler(pickle.Unpickler):
    """Reads the CIFAR pickles but refuses anything beyond numpy arrays, lists and dicts.

    A data folder is not a way to run code: a pickle naming any other global fails instead of executing it.
    """

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refers to {module}.{name}")
        return super().find_class(module, name)


def _unpickle_arrays(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(
            f"data.root: {path} is missing (incomplete dataset folder); "
            "delete the folder and set data.download=true to fetch it again"
        )
    try:
        with open(path, "rb") as f:
            # latin1 is how torchvision reads these Python-2 pickles: keys come out as str.
            content = _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as err:
        raise ConfigError(f"data.root: cannot read {path} as a CIFAR pickle ({one_line(err)})") from err
    if not isinstance(content, dict):
        raise ConfigError(f"data.root: {path} is not a CIFAR pickle (a {type(content).__name__}, not a dict)")
    return content
