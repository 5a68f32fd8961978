"""Augmentation of the train part (``data.augment``), seeded per (seed, epoch) so a resumed run sees the same.

Presets:

- ``none``: the images as they are;
- ``flip_translate``: for tensors on the device, batch-wise as airbench does it: each image flipped left-right
  with probability 1/2 and translated by up to ``pad`` pixels in each direction (reflection padding, then a
  crop at a random offset), ``pad = max(1, image_size // 16)`` (2 px at 32 px); one gather per batch, no
  per-image Python. Works on any batch, a streamed one too;
- ``rrc_flip_rotate``: for streamed image folders, per image in the DataLoader workers
  (torchvision.transforms.v2): a random resized crop (area 35-100 %, aspect 3/4-4/3), a left-right flip with
  probability 1/2 and a rotation by up to 10 degrees. Each image's draw depends only on (seed, epoch, index),
  so neither the worker count nor persistent workers change it.

Validation and test images are never augmented. The record's ``data.augment`` says what was applied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.config.schema import AUGMENTS

# The random-resized-crop preset's parameters (torchvision's defaults but a gentler scale for small data).
RRC_SCALE = (0.35, 1.0)
RRC_RATIO = (3 / 4, 4 / 3)
ROTATION_DEGREES = 10.0

__all__ = ["AUGMENTS", "BatchAugment", "describe", "sample_transform", "translate_pad"]


def translate_pad(image_size: int) -> int:
    return max(1, image_size // 16)


def describe(name: str, image_size: int) -> dict:
    """What ``data.augment=name`` applies, as data for the record."""
    if name == "flip_translate":
        return {
            "name": name,
            "where": "device, per batch",
            "flip": 0.5,
            "translate_px": translate_pad(image_size),
            "padding": "reflect",
        }
    if name == "rrc_flip_rotate":
        return {
            "name": name,
            "where": "DataLoader workers, per image",
            "random_resized_crop": {"size": image_size, "scale": list(RRC_SCALE), "ratio": list(RRC_RATIO)},
            "flip": 0.5,
            "rotation_degrees": ROTATION_DEGREES,
        }
    return {"name": "none"}


class BatchAugment:
    """``flip_translate`` on (N, C, H, W) batches where they already are (CPU or GPU)."""

    def __init__(self, image_size: int) -> None:
        self.pad = translate_pad(image_size)

    def for_epoch(self, seed: int, device) -> _EpochAugment:
        return _EpochAugment(self.pad, torch.Generator(device=device).manual_seed(seed))


class _EpochAugment:
    def __init__(self, pad: int, generator: torch.Generator) -> None:
        self.pad = pad
        self.generator = generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        g, dev = self.generator, x.device
        flip = torch.rand(n, generator=g, device=dev) < 0.5
        shift = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=g, device=dev)
        padded = F.pad(x, (self.pad,) * 4, mode="reflect")
        rows = shift[:, 0, None] + torch.arange(h, device=dev)  # (N, H): the crop's rows in the padded image
        cols = torch.arange(w, device=dev).expand(n, w)
        # A flipped image reads its columns right to left: flip and translate in the same gather.
        cols = torch.where(flip[:, None], cols.flip(1), cols) + shift[:, 1, None]
        batch = torch.arange(n, device=dev)[:, None, None, None]
        channel = torch.arange(x.shape[1], device=dev)[None, :, None, None]
        return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def sample_transform(image_size: int):
    """``rrc_flip_rotate``: a v2 transform of one uint8 (C, H, W) image tensor to (C, size, size) uint8."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomResizedCrop(image_size, scale=RRC_SCALE, ratio=RRC_RATIO, antialias=True),
            v2.RandomHorizontalFlip(0.5),
            v2.RandomRotation(ROTATION_DEGREES),
        ]
    )
