"""Data as the loop sees it: train/val/test parts in memory (or as a Dataset), and batches of them.

Small data is a :class:`TensorPart`: tensors resident on the device, batched by slicing, no DataLoader.
Large image folders are a ``Dataset`` read through a DataLoader. :func:`batches` hides the difference.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch
from torch.utils.data import DataLoader, Dataset

from harness.errors import ConfigError


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
    # what was applied, for the record: normalisation (mode, mean, std, sizes, source), augmentation, and
    # more (a streamed folder's workers and cache, unreadable images skipped)
    preprocessing: dict = field(default_factory=dict)
    augment: dict = field(default_factory=lambda: {"name": "none"})
    info: dict = field(default_factory=dict)

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
    if hasattr(part, "batches"):  # a streamed image folder keeps its own DataLoader (harness/data/stream.py)
        yield from part.batches(batch_size, shuffle=shuffle, seed=seed, device=device, drop_last=drop_last)
        return
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


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch size {batch_size!r} is not allowed; it must be a positive integer")
