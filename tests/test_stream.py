"""Image folders beyond memory: the streamed part, the decode-once cache, decoding at the target size, and
unreadable images."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from harness.data import batches, load_data
from harness.data.imagefolder import read_image
from harness.train import train
from tests.conftest import compose_config
from tests.image_helpers import write_folder


def folder_data(root, *overrides, out=None):
    cfg = compose_config(
        ["data=imagefolder", f"data.root={root}", "data.image_size=12", *overrides], root=out
    )
    return load_data(cfg.data)


def all_x(part):
    return torch.cat([x for x, _ in batches(part, 7, shuffle=False)])


def test_streamed_equals_in_memory_and_keeps_its_workers(tmp_path):
    root = write_folder(tmp_path / "imgs", per_class=5)
    memory = folder_data(root)
    streamed = folder_data(root, "data.max_in_memory=0", "data.workers=2")
    assert streamed.info["streamed"] == {"workers": 2, "cache": None}
    assert torch.allclose(all_x(streamed.val), memory.val.x, atol=1e-5)
    for seed in (0, 1):  # two epochs through the same loader: its workers persist
        list(batches(streamed.train, 4, shuffle=True, seed=seed))
    loaders = streamed.train._loaders
    assert len(loaders) == 1
    ((loader, _),) = loaders.values()
    assert loader.persistent_workers and loader.num_workers == 2


def test_decode_once_cache_is_reused_and_follows_the_files(tmp_path, capsys):
    root = write_folder(tmp_path / "imgs", per_class=5)
    cache = tmp_path / "cache"
    plain = folder_data(root, "data.max_in_memory=0", "data.workers=0")
    cached = folder_data(root, "data.max_in_memory=0", "data.workers=0", f"data.cache={cache}")
    (array,) = cache.glob("*.u8.npy")
    assert cached.info["streamed"]["cache"] == str(array)
    assert np.load(array, mmap_mode="r").shape == (15, 3, 12, 12)
    assert torch.equal(all_x(cached.train), all_x(plain.train))
    assert "decoding 15 images once" in capsys.readouterr().out
    # another run (another process would do the same): the array is found, nothing is decoded again
    from harness.data import stream

    stream.ensure_cache.cache_clear()
    again = folder_data(root, "data.max_in_memory=0", "data.workers=0", f"data.cache={cache}")
    assert again.info["streamed"]["cache"] == str(array) and "decoding" not in capsys.readouterr().out
    # a changed file is another cache
    os.utime(root / "ant" / "0.png", ns=(1, 1))
    from harness.data import imagefolder

    imagefolder._read_imagefolder.cache_clear()  # this process's caches; a new process starts without them
    stream.ensure_cache.cache_clear()
    folder_data(root, "data.max_in_memory=0", "data.workers=0", f"data.cache={cache}")
    assert len(list(cache.glob("*.u8.npy"))) == 2


def test_jpeg_is_decoded_at_the_target_size(tmp_path):
    rng = np.random.default_rng(0)
    big = np.kron(rng.integers(0, 255, (30, 40, 3)), np.ones((16, 16, 1))).astype(np.uint8)  # 480 x 640
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=95)
    drafted = read_image(str(tmp_path / "big.jpg"), 3, 32, 36)
    with Image.open(tmp_path / "big.jpg") as image:
        from torchvision.transforms import functional as tf

        full = np.array(tf.center_crop(tf.resize(image.convert("RGB"), 36), 32)).transpose(2, 0, 1)
    assert drafted.shape == (3, 32, 32)
    assert np.abs(drafted.astype(float) - full).mean() < 8  # the same picture, decoded at 1/8 scale


def test_unreadable_images_skipped_are_named_and_counted(tmp_path, capsys):
    root = write_folder(tmp_path / "imgs", per_class=5)
    (root / "bee" / "broken.png").write_bytes(b"\x89PNG not an image")
    cfg = compose_config(
        ["data=imagefolder", f"data.root={root}", "data.image_size=12", "data.bad_images=skip", "epochs=1"],
        root=tmp_path / "out",
    )
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "ok"
    broken = str((root / "bee" / "broken.png").resolve())
    assert result["data"]["skipped_images"] == [broken]
    assert result["data"]["train"] + result["data"]["val"] + result["data"]["test"] == 15
    assert "skipped 1 of 16 unreadable images (data.bad_images=skip" in capsys.readouterr().out
