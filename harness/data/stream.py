"""Image folders beyond memory: a part streamed from disk through a DataLoader, and the decode-once cache.

:class:`ImageFiles` is one part (train/val/test) of a folder with more images than ``data.max_in_memory``.
Its batches come from a DataLoader that lives as long as the part: ``data.workers`` worker processes
(persistent, so an epoch does not pay for starting them), pinned memory on CUDA, each worker decoding a whole
batch at the target size (:func:`harness.data.imagefolder.read_image`) and sending it as uint8; the float
conversion and normalisation happen where the batch lands (on the GPU: a quarter of the bytes to copy).

``data.cache=<folder>`` decodes every image of the folder once, at the target size, into one uint8 array
memory-mapped from ``<folder>/<key>.u8.npy`` (the key hashes the folder's listing with each file's size and
modification time, the sizes and the channels): later epochs and later runs read pixels instead of decoding
files. The array is written under a temporary name and renamed when complete, so an interrupted build is
never used.

Augmentation ``rrc_flip_rotate`` runs per image in the workers; each image's draw is seeded by (the epoch's
seed, its index), so the worker count and persistent workers do not change it and a resumed run sees the same.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from harness.data import splits
from harness.data.augment import sample_transform
from harness.data.imagefolder import read_image, read_image_for_crop
from harness.data.raw import RawDataset

CACHE_VERSION = 1


def auto_workers() -> int:
    """``data.workers=auto``: one decoding process per core but one (the training process keeps it), at most 8."""
    return min(8, max(1, (os.cpu_count() or 1) - 1))


class _EpochSampler(Sampler):
    """Indices in the epoch's order (shuffled by ``seed``), as ``(index, seed)`` when each image is augmented."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seed = 0
        self.shuffle = False
        self.with_seed = False

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        else:
            order = range(self.n)
        for i in order:
            yield (i, self.seed) if self.with_seed else i


def _whole_batch(batch):
    return batch  # __getitems__ already returns the collated batch


class ImageFiles(Dataset):
    """A streamed part of an image folder. ``part[i]`` is one normalised ``(x, label)``; the loop reads batches
    through :meth:`batches`."""

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
        *,
        resize: int | None = None,
        augment: str = "none",
        workers: int = 0,
        cache: str | None = None,
        rows: np.ndarray | None = None,
    ) -> None:
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transformed = np.asarray(transformed, dtype=bool)
        self.domain = domain
        self.channels = channels
        self.image_size = image_size
        self.resize = resize or image_size
        self.mean = torch.as_tensor(np.asarray(mean, dtype=np.float32))[:, None, None]
        self.std = torch.as_tensor(np.asarray(std, dtype=np.float32))[:, None, None]
        self.augment = augment
        self.workers = workers
        self.cache = cache  # the memory-mapped array of the whole folder, read through `rows`
        self.rows = rows
        self._pixels = None  # opened lazily, in each process that reads it
        self._loaders: dict[tuple[int, bool], tuple[DataLoader, _EpochSampler]] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getstate__(self) -> dict:
        # Workers get the description, not the open memory map or the loaders (they live in the parent).
        return {**self.__dict__, "_pixels": None, "_loaders": {}}

    # -- one image, and one batch as the workers build it -------------------------------------------------

    def _uint8(self, i: int, seed: int | None) -> torch.Tensor:
        random_crop = self.augment == "rrc_flip_rotate" and seed is not None
        if self.cache is not None:
            if self._pixels is None:
                self._pixels = np.load(self.cache, mmap_mode="r")
            x = torch.from_numpy(np.array(self._pixels[self.rows[i]]))
        elif random_crop:
            x = torch.from_numpy(read_image_for_crop(self.paths[i], self.channels, self.resize))
        else:
            x = torch.from_numpy(read_image(self.paths[i], self.channels, self.image_size, self.resize))
        if random_crop:
            # The image's draw depends on (epoch seed, index) only; the caller's RNG is left as it was.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed((seed * 1_000_003 + i) % 2**63)
                x = _transform(self.image_size)(x)
        if self.transformed[i]:
            x = 255 - x if self.domain == "invert" else splits.apply_domain(x, self.domain)
        return x

    def __getitems__(self, keys: list) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [k if isinstance(k, tuple) else (k, None) for k in keys]
        x = torch.stack([self._uint8(i, seed) for i, seed in pairs])
        return x, torch.as_tensor(self.labels[[i for i, _ in pairs]])

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 batch -> float32 with the part's mean/std (pixel values in [0, 1]), where ``x`` is."""
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x.float().div_(255.0) - mean) / std

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.__getitems__([i])
        return self.normalise(x)[0], int(y[0])

    # -- the loop's batches ---------------------------------------------------------------------------

    def batches(
        self, batch_size: int, *, shuffle: bool, seed: int, device, drop_last: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader, sampler = self._loader(batch_size, drop_last, torch.device(device).type == "cuda")
        sampler.shuffle, sampler.seed = shuffle, seed
        # Only shuffled (train) batches are augmented: evaluation sees the plain images.
        sampler.with_seed = shuffle and self.augment == "rrc_flip_rotate"
        non_blocking = torch.device(device).type == "cuda"
        for x, y in loader:
            x = x.to(device, non_blocking=non_blocking)
            yield self.normalise(x), y.to(device, non_blocking=non_blocking)

    def _loader(self, batch_size: int, drop_last: bool, pin: bool) -> tuple[DataLoader, _EpochSampler]:
        key = (batch_size, drop_last)
        if key not in self._loaders:
            sampler = _EpochSampler(len(self))
            loader = DataLoader(
                self,
                batch_sampler=BatchSampler(sampler, batch_size, drop_last),
                collate_fn=_whole_batch,
                num_workers=self.workers,
                pin_memory=pin,
                persistent_workers=self.workers > 0,
                prefetch_factor=4 if self.workers > 0 else None,
            )
            self._loaders[key] = (loader, sampler)
        return self._loaders[key]


@functools.lru_cache(maxsize=4)
def _transform(image_size: int):
    return sample_transform(image_size)


# -- the decode-once cache --------------------------------------------------------------------------------


def cache_key(raw: RawDataset) -> str:
    """A hash of what decides the cached pixels: the listing (with sizes and modification times), sizes, channels."""
    listing = []
    for path in raw.paths:
        st = os.stat(path)
        listing.append((path, st.st_size, st.st_mtime_ns))
    text = json.dumps([CACHE_VERSION, raw.image_size, raw.resize, raw.channels, listing])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class _Decode(Dataset):
    def __init__(self, paths, channels, image_size, resize):
        self.paths, self.channels, self.image_size, self.resize = paths, channels, image_size, resize

    def __len__(self):
        return len(self.paths)

    def __getitems__(self, rows):
        return rows, np.stack(
            [read_image(self.paths[i], self.channels, self.image_size, self.resize) for i in rows]
        )


@functools.lru_cache(maxsize=4)
def ensure_cache(raw: RawDataset, folder: str, workers: int) -> str:
    """The path of ``raw``'s decode-once array in ``folder``, decoding every image first if it is not there."""
    root = Path(os.path.expanduser(folder))
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{cache_key(raw)}.u8.npy"
    if path.is_file():
        return str(path)
    shape = (len(raw.paths), raw.channels, raw.image_size, raw.image_size)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    pixels = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
    decode = _Decode(raw.paths, raw.channels, raw.image_size, raw.resize)
    loader = DataLoader(
        decode,
        batch_sampler=BatchSampler(range(len(raw.paths)), 64, False),
        collate_fn=_whole_batch,
        num_workers=workers,
    )
    print(f"data.cache: decoding {len(raw.paths)} images once into {path}", flush=True)
    for rows, images in loader:
        pixels[rows] = images
    pixels.flush()
    del pixels
    os.replace(partial, path)  # complete: only now does a reader see it
    return str(path)
