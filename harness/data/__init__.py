"""Data: datasets read once, split into train/val/test, class halves, normalised tensors, batches.

- :mod:`~harness.data.prepare`: :func:`load_data`, the one entry point (config -> :class:`DataBundle`);
- :mod:`~harness.data.parts`: the bundle, its in-memory parts and :func:`batches`;
- :mod:`~harness.data.splits`: class halves A/B of a transfer experiment and B's domain transform;
- :mod:`~harness.data.sources`: which ``data.name`` reads what: :mod:`~harness.data.embedded` (mnist5k,
  digits, synthetic), :mod:`~harness.data.cifar`, :mod:`~harness.data.imagefolder`;
- :mod:`~harness.data.stream`: image folders beyond memory (a persistent DataLoader, the decode-once cache);
- :mod:`~harness.data.augment`: ``data.augment`` (on the device per batch, or per image in the workers).
"""

from harness.data.parts import DataBundle, Part, TensorPart, batches, inference_batch_size, num_batches
from harness.data.prepare import load_data
from harness.data.sources import DATASETS

__all__ = [
    "DATASETS",
    "DataBundle",
    "Part",
    "TensorPart",
    "batches",
    "inference_batch_size",
    "load_data",
    "num_batches",
]
