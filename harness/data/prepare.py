"""From the ``data`` and ``split`` configs to a :class:`~harness.data.parts.DataBundle`, in one call.

:func:`load_data`:

1. reads the raw dataset (once per process) as uint8 images ``(N, C, H, W)``;
2. splits each class on its own (stratified) into test / val / train with a generator seeded by
   ``data.seed``, which is *not* the training seed, so the test set of an experiment never moves;
3. takes normalisation statistics (per channel) from the train part of *all* classes, before any class half
   or ``b_domain`` transform, so base A, base B and every treatment see inputs on the same scale; or, with
   ``data.normalize`` (``auto``: ``weights`` when the model's pretrained weights bring their preprocessing,
   else ``train``), the weights' mean/std (``weights``) or none (``none``: pixel values in [0, 1]);
4. keeps the requested half, relabelled ``0..m-1``; B's images get the split's ``b_domain`` transform.

An image folder's ``data.image_size=auto`` is the weights' input size (with their resize-then-crop ratio),
else 32. The bundle's ``preprocessing`` and ``augment`` say what was applied (the record keeps them).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from harness.config import checks, schema
from harness.data import augment as augmentation
from harness.data import imagefolder, splits
from harness.data.imagefolder import read_image
from harness.data.parts import DataBundle, Part, TensorPart
from harness.data.raw import RawDataset
from harness.data.sources import LOADERS
from harness.data.stream import ImageFiles, auto_workers, ensure_cache
from harness.errors import ConfigError

# How many train images estimate the normalisation of an image folder read lazily from disk.
_STATS_SAMPLE = 1024


def load_data(
    data_cfg: Any, split_cfg: Any = None, half: str | None = None, *, preprocessing: Any = None
) -> DataBundle:
    """Load ``data_cfg`` (the ``data`` group), restricted to ``half`` ("A"/"B") of ``split_cfg``'s split.

    ``preprocessing`` (a :class:`harness.models.pretrained.Preprocessing`, or None) is what the model's
    pretrained weights expect: ``data.normalize`` and ``data.image_size=auto`` follow it."""
    data_cfg = schema.check_values("data", data_cfg)  # every value of the data section, before reading
    name = data_cfg["name"]
    normalize = data_cfg.get("normalize", "auto")
    if normalize == "auto":
        normalize = "weights" if preprocessing is not None else "train"
    if normalize == "weights" and preprocessing is None:
        raise ConfigError(
            "data.normalize=weights, but the model brings no preprocessing (random weights, or a weights file "
            "of unknown origin); use data.normalize=train (the train part's statistics) or none"
        )
    augment = data_cfg.get("augment", "none")
    checks.one_of(half, "half", (None, "A", "B"))
    if half is not None and splits.split_name(split_cfg) == "all":
        raise ConfigError(
            f"half {half} asked for, but split.name=all has no halves; "
            "pick a split with halves (e.g. split=random_half)"
        )
    domain = splits.b_domain(split_cfg)  # validates split.name and split.b_domain before the data is read
    if name == "imagefolder":
        raw = imagefolder.load_imagefolder(data_cfg, **_folder_geometry(data_cfg, preprocessing))
    else:
        raw = LOADERS[name](data_cfg)
    if augment == "rrc_flip_rotate" and raw.images is not None:
        raise ConfigError(
            f"data.augment=rrc_flip_rotate crops each image as it is decoded, for streamed image folders "
            f"(data=imagefolder with more images than data.max_in_memory); data={name} is held in memory as "
            "tensors: use data.augment=flip_translate"
        )

    # Halves need the class names, so they are resolved right after reading and before any splitting.
    halves = None if splits.split_name(split_cfg) == "all" else splits.class_halves(split_cfg, raw.classes)
    keep = halves[half] if half else list(range(len(raw.classes)))
    in_b = np.zeros(len(raw.classes), dtype=bool)  # classes whose images get the b_domain transform
    if domain is not None:
        in_b[halves["B"]] = True

    rows, mean, std = _split_and_stats(raw, *_split_settings(data_cfg, raw), normalize == "train")
    if normalize == "weights":
        mean, std = _weights_stats(preprocessing, raw.channels)
    elif normalize == "none":
        mean, std = np.zeros(raw.channels, np.float32), np.ones(raw.channels, np.float32)
    streaming = _streaming(data_cfg, raw)
    new_label = np.full(len(raw.classes), -1, dtype=np.int64)
    new_label[keep] = np.arange(len(keep))
    parts = {}
    for part_name, idx in rows.items():
        idx = idx[new_label[raw.labels[idx]] >= 0]  # only the kept classes
        # Only the train part is augmented; in memory that happens on the device (the loop), streamed in the
        # workers of the train part.
        options = dict(streaming, augment=augment if part_name == "train" else "none")
        parts[part_name] = _make_part(raw, idx, new_label, in_b, domain, mean, std, options)
    preprocessed = {
        "normalize": normalize,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "image_size": raw.image_size,
        "resize": raw.resize,
        "source": preprocessing.source if normalize == "weights" else normalize,
    }
    extra = {"skipped_images": list(raw.skipped)} if raw.skipped else {}
    if raw.images is None:
        extra["streamed"] = {"workers": streaming["workers"], "cache": streaming["cache"]}
    return DataBundle(
        name=name,
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        classes=[raw.classes[i] for i in keep],
        in_channels=raw.channels,
        image_size=raw.image_size,
        class_ids=list(keep),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        preprocessing=preprocessed,
        augment=augmentation.describe(augment, raw.image_size),
        info=extra,
    )


def _folder_geometry(cfg: dict, preprocessing: Any) -> dict:
    """An image folder's target size and the shorter side it is resized to before the center crop."""
    size = cfg.get("image_size", imagefolder.DEFAULT_IMAGE_SIZE)
    if preprocessing is None:
        size = imagefolder.DEFAULT_IMAGE_SIZE if size == "auto" else int(size)
        return {"image_size": size, "resize": size}
    size = preprocessing.image_size if size == "auto" else int(size)
    # The weights' resize-then-crop ratio (torchvision's 256 -> 224) at whatever size is asked for.
    return {"image_size": size, "resize": round(size * preprocessing.resize / preprocessing.image_size)}


def _weights_stats(preprocessing: Any, channels: int) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(preprocessing.mean, dtype=np.float32)
    std = np.asarray(preprocessing.std, dtype=np.float32)
    if channels == len(mean):
        return mean, std
    if channels == 1:  # grey images into RGB weights (conv1 summed over RGB): the channels' average
        return mean.mean(keepdims=True), std.mean(keepdims=True)
    raise ConfigError(
        f"data.normalize=weights: the weights expect {len(mean)} channels, the data has {channels}; "
        "use data.normalize=train"
    )


def _streaming(cfg: dict, raw: RawDataset) -> dict:
    """How a streamed folder is read: worker processes and the decode-once cache (built here when asked)."""
    if raw.images is not None:
        return {"workers": 0, "cache": None}
    workers = cfg.get("workers", "auto")
    workers = auto_workers() if workers == "auto" else int(workers)
    folder = cfg.get("cache")
    cache = ensure_cache(raw, str(folder), workers) if folder else None
    return {"workers": workers, "cache": cache}


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
    raw: RawDataset,
    seed: int,
    val_fraction: float,
    test_fraction: float | None,
    train_fraction: float,
    stats: bool = True,
) -> tuple[dict[str, np.ndarray], np.ndarray | None, np.ndarray | None]:
    """Row indices of each part and the per-channel mean/std of the full train part (all classes; None
    unless ``stats``: a streamed folder reads images for them)."""
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
    if not stats:
        return parts, None, None
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
        images = np.stack([read_image(raw.paths[i], raw.channels, raw.image_size, raw.resize) for i in rows])
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
    options: dict,
) -> Part:
    labels = new_label[raw.labels[idx]]
    transformed = in_b[raw.labels[idx]]
    if raw.images is None:
        return ImageFiles(
            [raw.paths[i] for i in idx],
            labels,
            transformed,
            domain,
            raw.channels,
            raw.image_size,
            mean,
            std,
            resize=raw.resize,
            rows=idx,
            **options,
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
