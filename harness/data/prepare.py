"""From the ``data`` and ``split`` configs to a :class:`~harness.data.parts.DataBundle`, in one call.

:func:`load_data`:

1. reads the raw dataset (once per process) as uint8 images ``(N, C, H, W)``;
2. splits each class on its own (stratified) into test / val / train with a generator seeded by
   ``data.seed``, which is *not* the training seed, so the test set of an experiment never moves;
3. takes normalisation statistics (per channel) from the train part of *all* classes, before any class half
   or ``b_domain`` transform, so base A, base B and every treatment see inputs on the same scale;
4. keeps the requested half, relabelled ``0..m-1``; B's images get the split's ``b_domain`` transform.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from harness.config import checks, schema
from harness.data import splits
from harness.data.imagefolder import ImageFiles, read_image
from harness.data.parts import DataBundle, Part, TensorPart
from harness.data.raw import RawDataset
from harness.data.sources import LOADERS
from harness.errors import ConfigError

# How many train images estimate the normalisation of an image folder read lazily from disk.
_STATS_SAMPLE = 1024


def load_data(data_cfg: Any, split_cfg: Any = None, half: str | None = None) -> DataBundle:
    """Load ``data_cfg`` (the ``data`` group), restricted to ``half`` ("A"/"B") of ``split_cfg``'s split."""
    data_cfg = schema.check_values("data", data_cfg)  # every value of the data section, before reading
    name = data_cfg["name"]
    checks.one_of(half, "half", (None, "A", "B"))
    if half is not None and splits.split_name(split_cfg) == "all":
        raise ConfigError(
            f"half {half} asked for, but split.name=all has no halves; "
            "pick a split with halves (e.g. split=random_half)"
        )
    domain = splits.b_domain(split_cfg)  # validates split.name and split.b_domain before the data is read
    raw = LOADERS[name](data_cfg)

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


# -- splitting, normalising and building parts --------------------------------------------------------------


def _split_settings(cfg: Any, raw: RawDataset) -> tuple[int, float, float | None, float]:
    """The checked split settings (the schema checked each; here what they mean together)."""
    seed, val_fraction = cfg.get("seed", 0), float(cfg.get("val_fraction", 0.1))
    test_fraction = cfg.get("test_fraction", 0.2)
    if test_fraction is None:  # the dataset's own test set
        if raw.official_test is None:
            raise ConfigError(
                f"data.test_fraction=null needs a dataset with its own test set (cifar10, cifar100); "
                f"{cfg.get('name')} has none: set a fraction, e.g. data.test_fraction=0.2"
            )
    else:
        test_fraction = float(test_fraction)
        if val_fraction + test_fraction >= 1.0:
            raise ConfigError(
                f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction:g} "
                "leaves no training data; their sum must be below 1"
            )
    train_fraction = float(cfg.get("train_fraction", 1.0))
    if train_fraction == 0:
        raise ConfigError("data.train_fraction=0 leaves no training data; allowed: 0 < train_fraction <= 1")
    return seed, val_fraction, test_fraction, train_fraction


@functools.lru_cache(maxsize=8)
def _split_and_stats(
    raw: RawDataset, seed: int, val_fraction: float, test_fraction: float | None, train_fraction: float
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


def _channel_stats(raw: RawDataset, rows: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if raw.images is None:  # lazily read folder: estimate from a seeded sample of train images
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(rows, size=min(len(rows), _STATS_SAMPLE), replace=False))
        images = np.stack([read_image(raw.paths[i], raw.channels, raw.image_size) for i in rows])
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


def _make_part(
    raw: RawDataset,
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
        return ImageFiles(
            [raw.paths[i] for i in idx], labels, transformed, domain, raw.channels, raw.image_size, mean, std
        )
    images = raw.images[idx]
    x = np.empty(images.shape, dtype=np.float32)
    x[~transformed] = _normalise(images[~transformed], raw.pixel_max, mean, std, invert=False)
    x[transformed] = _normalise(images[transformed], raw.pixel_max, mean, std, invert=domain == "invert")
    x = torch.from_numpy(x)
    if domain == "rotate90" and transformed.any():
        mask = torch.from_numpy(transformed)
        x[mask] = splits.apply_domain(x[mask], domain)
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
