"""``python -m benchmarks.stream``: images per second of a streamed image folder, ours against the plain way.

Three ways through the same folder of JPEGs, each one epoch of shuffled batches landing normalised on the
device, after a warm-up epoch (workers started, files in the page cache):

- ``plain``: ``torchvision.datasets.ImageFolder`` with ``Resize + CenterCrop + ToTensor + Normalize`` and a
  ``DataLoader`` (the same batch size, workers, pinned memory, persistent workers and prefetch as ours);
- ``streamed``: the harness's streamed folder (``data=imagefolder`` past ``data.max_in_memory``:
  :mod:`harness.data.stream`);
- ``cached``: the same with ``data.cache`` (decoded once, memory-mapped uint8; its one-off build is timed
  apart).

Reported: ``streamed / plain`` (target >= 0.95) and ``cached / streamed``, each the median over repeats of
per-repeat ratios (the sides alternate which goes first). ``--root`` measures a folder of yours instead of
the generated one (one subfolder per class).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch


def make_folder(root: Path, images: int, size: tuple[int, int], classes: int = 10, fmt: str = "jpg") -> Path:
    """``images`` files of ``size`` (w, h): smooth random colour fields (photo-like to a JPEG coder)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(images):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (size[1] // 16 + 1, size[0] // 16 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize(size, Image.BILINEAR)
        image.save(folder / f"{i}.{fmt}", **({"quality": 90} if fmt == "jpg" else {}))
    return root


def plain_loader(root: Path, image_size: int, resize: int, batch: int, workers: int, pin: bool):
    from torchvision import datasets, transforms

    transform = transforms.Compose(
        [
            transforms.Resize(resize),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
        ]
    )
    dataset = datasets.ImageFolder(str(root), transform=transform)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


def harness_part(root: Path, image_size: int, batch: int, workers: int, cache: str | None):
    from harness.config.compose import compose_config
    from harness.data import load_data

    overrides = [
        "data=imagefolder",
        f"data.root={root}",
        f"data.image_size={image_size}",
        "data.max_in_memory=0",
        f"data.workers={workers}",
        "data.val_fraction=0",
        "data.test_fraction=0",
        "data.normalize=none",
    ]
    if cache:
        overrides.append(f"data.cache={cache}")
    return load_data(compose_config(overrides).data).train


def epoch_plain(loader, device) -> tuple[float, int]:
    started, n = time.perf_counter(), 0
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        y.to(device, non_blocking=True)
        n += len(x)
    _sync(device)
    return time.perf_counter() - started, n


def epoch_harness(part, batch: int, seed: int, device) -> tuple[float, int]:
    from harness.data import batches

    started, n = time.perf_counter(), 0
    for x, _ in batches(part, batch, shuffle=True, seed=seed, device=device):
        n += len(x)
    _sync(device)
    return time.perf_counter() - started, n


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="generated JPEGs (without --root)")
    parser.add_argument("--source-size", default="320x240", help="generated images' WxH")
    parser.add_argument(
        "--format",
        default="jpg",
        choices=("jpg", "png"),
        help="generated files (png: no decode-time downscale)",
    )
    parser.add_argument("--root", help="a folder of yours (one subfolder per class) instead")
    parser.add_argument("--image-size", type=int, default=64, help="target side (pixels)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=min(8, max(1, (os.cpu_count() or 1) - 1)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="outputs/bench/stream.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    device = torch.device(args.device)
    work = Path(tempfile.mkdtemp(prefix="freezelab-stream-"))
    w, h = (int(v) for v in args.source_size.split("x"))
    root = (
        Path(args.root) if args.root else make_folder(work / "images", args.images, (w, h), fmt=args.format)
    )
    resize = args.image_size  # ours: shorter side to image_size, center crop (no pretrained ratio here)
    pin = device.type == "cuda"

    plain = plain_loader(root, args.image_size, resize, args.batch, args.workers, pin)
    streamed = harness_part(root, args.image_size, args.batch, args.workers, None)
    started = time.perf_counter()
    cached = harness_part(root, args.image_size, args.batch, args.workers, str(work / "cache"))
    cache_build = time.perf_counter() - started

    # warm-up: workers started, files in the page cache, for every side
    epoch_plain(plain, device)
    epoch_harness(streamed, args.batch, 0, device)
    epoch_harness(cached, args.batch, 0, device)
    rates: dict[str, list[float]] = {"plain": [], "streamed": [], "cached": []}
    ratios, speedups = [], []
    for r in range(args.repeats):
        sides = ["plain", "streamed", "cached"]
        if r % 2:
            sides.reverse()
        got = {}
        for side in sides:
            if side == "plain":
                seconds, n = epoch_plain(plain, device)
            else:
                seconds, n = epoch_harness(
                    streamed if side == "streamed" else cached, args.batch, r + 1, device
                )
            got[side] = n / seconds
            rates[side].append(got[side])
        ratios.append(got["streamed"] / got["plain"])
        speedups.append(got["cached"] / got["streamed"])
        print(
            f"repeat {r + 1}: plain {got['plain']:.0f} img/s, streamed {got['streamed']:.0f}, "
            f"cached {got['cached']:.0f}",
            flush=True,
        )
    result = {
        "benchmark": "stream",
        "images": len(streamed),
        "source_size": None if args.root else args.source_size,
        "format": None if args.root else args.format,
        "image_size": args.image_size,
        "batch": args.batch,
        "workers": args.workers,
        "device": str(device),
        "repeats": args.repeats,
        "images_per_s": {k: statistics.median(v) for k, v in rates.items()},
        "streamed_vs_plain": statistics.median(ratios),
        "streamed_vs_plain_per_repeat": ratios,
        "target": 0.95,
        "cached_vs_streamed": statistics.median(speedups),
        "cached_vs_streamed_per_repeat": speedups,
        "cache_build_s": cache_build,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(
        f"streamed / plain ImageFolder: {result['streamed_vs_plain']:.2f} (target >= 0.95); "
        f"cached / streamed: {result['cached_vs_streamed']:.2f}; cache built in {cache_build:.1f} s"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
