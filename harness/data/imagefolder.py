"""Image folders: one subfolder per class (torchvision ``ImageFolder`` semantics).

Up to ``data.max_in_memory`` images are decoded once into a uint8 array; a larger folder is listed only and
streamed (:mod:`harness.data.stream`: a DataLoader with workers, optionally a decode-once cache).

Every image is decoded at the target size: a JPEG decoder scales down while it decodes (PIL's ``draft``), then
the shorter side is resized to ``resize`` and the center ``image_size`` square cropped.

Unreadable files (``data.bad_images``): an in-memory folder decodes every image up front, a streamed one reads
every file's header up front (a file whose data breaks later, while streaming, fails the run with its name).
``stop`` (the default) ends the run before training with one line naming them; ``skip`` leaves them out,
prints which, and counts them in the record (``data.skipped_images``).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from harness.config.checks import one_line
from harness.data.raw import RawDataset, data_root
from harness.errors import ConfigError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
DEFAULT_IMAGE_SIZE = 32  # data.image_size=auto without pretrained weights that bring their own
_SHOWN = 5  # unreadable files named in a message


def load_imagefolder(cfg: Any, *, image_size: int | None = None, resize: int | None = None) -> RawDataset:
    """The folder of ``cfg`` (the checked data section); ``image_size``/``resize`` as resolved by the caller
    (``data.image_size=auto`` takes the pretrained weights' size: :mod:`harness.data.prepare`)."""
    root = data_root(cfg)
    if image_size is None:
        given = cfg.get("image_size", DEFAULT_IMAGE_SIZE)
        image_size = DEFAULT_IMAGE_SIZE if given == "auto" else int(given)
    channels = cfg.get("channels", 3)
    max_in_memory = cfg.get("max_in_memory", 20000)
    bad_images = cfg.get("bad_images", "stop")
    return _read_imagefolder(
        str(root.resolve()), image_size, resize or image_size, channels, max_in_memory, bad_images
    )


def list_images(root: str) -> tuple[list[str], list[str], list[int]]:
    """(classes, paths, labels) of a folder in ImageFolder order: classes sorted, files sorted per class."""
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
            if f.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not found:
            raise ConfigError(
                f"data.root: class folder {os.path.join(root, class_name)} has no images "
                f"(allowed extensions: {' '.join(IMAGE_EXTENSIONS)})"
            )
        paths += found
        labels += [label] * len(found)
    return classes, paths, labels


@functools.lru_cache(maxsize=2)
def _read_imagefolder(
    root: str, image_size: int, resize: int, channels: int, max_in_memory: int, bad_images: str
) -> RawDataset:
    classes, paths, labels = list_images(root)
    lazy = len(paths) > max_in_memory  # too many to hold as tensors: streamed (harness/data/stream.py)
    images, bad = [], {}
    for path in paths:
        try:
            if lazy:
                check_header(path)
            else:
                images.append(read_image(path, channels, image_size, resize))
        except ConfigError as err:
            bad[path] = err
    skipped: tuple[str, ...] = ()
    if bad:
        shown = ", ".join(bad_names := list(bad)[:_SHOWN]) + (
            f" and {len(bad) - len(bad_names)} more" if len(bad) > len(bad_names) else ""
        )
        if bad_images == "stop":
            raise ConfigError(
                f"data.root: {len(bad)} of {len(paths)} images cannot be read, so the run stops "
                f"(data.bad_images=skip leaves them out and counts them): {shown}; first: {bad[next(iter(bad))]}"
            )
        print(
            f"warning: data.root: skipped {len(bad)} of {len(paths)} unreadable images "
            f"(data.bad_images=skip; counted in the record's data.skipped_images): {shown}",
            flush=True,
        )
        keep = [i for i, p in enumerate(paths) if p not in bad]
        present = {labels[i] for i in keep}
        for label, class_name in enumerate(classes):
            if label not in present:
                raise ConfigError(
                    f"data.root: class folder {os.path.join(root, class_name)} has no readable images "
                    f"(all {labels.count(label)} skipped as unreadable)"
                )
        paths, labels, skipped = [paths[i] for i in keep], [labels[i] for i in keep], tuple(bad)
    key = ("imagefolder", root, image_size, resize, channels, bad_images)
    common = dict(
        labels=np.asarray(labels, dtype=np.int64),
        classes=tuple(classes),
        channels=channels,
        image_size=image_size,
        paths=tuple(paths),
        resize=resize,
        skipped=skipped,
    )
    if lazy:
        return RawDataset(key=(*key, "lazy"), **common)
    return RawDataset(key=(*key, "memory"), images=np.stack(images), **common)


def check_header(path: str) -> None:
    """A cheap look at a file (its header, not its pixels): is it an image PIL can open?"""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.size  # noqa: B018 (the header is parsed on open; size needs it)
    except Exception as err:
        raise ConfigError(f"data.root: cannot read image {path} ({one_line(err)})") from err


def read_image(path: str, channels: int, image_size: int, resize: int | None = None) -> np.ndarray:
    """uint8 (C, image_size, image_size): shorter side resized to ``resize`` (default ``image_size``), then
    center-cropped. JPEGs are decoded at the smallest scale that is still at least ``resize``."""
    from PIL import Image
    from torchvision.transforms import functional as tf

    resize = resize or image_size
    mode = "L" if channels == 1 else "RGB"
    try:
        with Image.open(path) as image:
            image.draft(
                mode, (resize, resize)
            )  # JPEG: DCT-domain downscale while decoding (a no-op for others)
            image = image.convert(mode)  # decodes; a broken file fails here
            image = tf.center_crop(tf.resize(image, resize), image_size)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError... for broken files
        raise ConfigError(f"data.root: cannot read image {path} ({one_line(err)})") from err
    array = np.array(image, dtype=np.uint8)  # a writable copy (torch warns on read-only arrays)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def read_image_for_crop(path: str, channels: int, resize: int) -> np.ndarray:
    """uint8 (C, H, W), the whole image with its shorter side at most ``2 * resize`` (a random resized crop
    then takes its part and scales it to the target size)."""
    from PIL import Image
    from torchvision.transforms import functional as tf

    mode = "L" if channels == 1 else "RGB"
    try:
        with Image.open(path) as image:
            image.draft(mode, (2 * resize, 2 * resize))
            image = image.convert(mode)
            if min(image.size) > 2 * resize:
                image = tf.resize(image, 2 * resize)
    except Exception as err:
        raise ConfigError(f"data.root: cannot read image {path} ({one_line(err)})") from err
    array = np.array(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
