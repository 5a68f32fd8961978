"""data.augment: flip_translate on the device per batch, rrc_flip_rotate per image in a streamed folder's
workers; seeded per (seed, epoch), so a resumed run sees the same augmented batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.assemble import assemble_run
from harness.data import batches, load_data
from harness.data.augment import BatchAugment, translate_pad
from harness.train import train
from tests.conftest import compose_config
from tests.image_helpers import write_folder
from tests.test_train import Interrupt


def reference(x, seed, pad):
    """The same draws, image by image: reflect-pad, crop at the offset, then flip."""
    g = torch.Generator().manual_seed(seed)
    flip = torch.rand(len(x), generator=g) < 0.5
    shift = torch.randint(0, 2 * pad + 1, (len(x), 2), generator=g)
    out = []
    for img, f, (dy, dx) in zip(x, flip, shift, strict=True):
        padded = F.pad(img[None], (pad,) * 4, mode="reflect")[0]
        crop = padded[:, dy : dy + x.shape[2], dx : dx + x.shape[3]]
        out.append(crop.flip(-1) if f else crop)
    return torch.stack(out)


def test_flip_translate_matches_an_image_by_image_reference():
    x = torch.randn(16, 3, 32, 32)
    augment = BatchAugment(32)
    assert augment.pad == translate_pad(32) == 2
    out = augment.for_epoch(5, "cpu")(x)
    assert torch.equal(out, reference(x, 5, 2))
    assert not torch.equal(out, x)
    assert torch.equal(augment.for_epoch(5, "cpu")(x), out)  # same seed, same draws
    assert not torch.equal(augment.for_epoch(6, "cpu")(x), out)


def test_the_plan_says_the_prefix_cache_is_off(tmp_path):
    cfg = compose_config(["strategy=head_only", "data.augment=flip_translate"], root=tmp_path)
    run = assemble_run(cfg)
    assert not run.prefix_cache and run.augment is not None
    assert "prefix cache off: data.augment=flip_translate" in run.plan.describe()
    assert run.data.augment["name"] == "flip_translate"
    plain = assemble_run(compose_config(["strategy=head_only"], root=tmp_path))
    assert plain.prefix_cache and "prefix cache off" not in plain.plan.describe()


def streamed_train(tmp_path, workers, augment="rrc_flip_rotate"):
    root = write_folder(tmp_path / "imgs", per_class=6)
    cfg = compose_config(
        [
            "data=imagefolder",
            f"data.root={root}",
            "data.image_size=16",
            "data.max_in_memory=0",
            f"data.workers={workers}",
            f"data.augment={augment}",
        ],
        root=tmp_path / "out",
    )
    return load_data(cfg.data)


def test_rrc_per_image_seeded_whatever_the_workers(tmp_path):
    serial = streamed_train(tmp_path / "a", 0)
    parallel = streamed_train(tmp_path / "b", 2)
    plain = streamed_train(tmp_path / "c", 0, augment="none")
    assert serial.augment["name"] == "rrc_flip_rotate" and serial.augment["rotation_degrees"] == 10.0

    def epoch(part, seed):
        return torch.cat([x for x, _ in batches(part.train, 5, shuffle=True, seed=seed)])

    first = epoch(serial, 3)
    assert torch.equal(first, epoch(parallel, 3))  # the workers do not change the draws
    assert torch.equal(first, epoch(serial, 3))  # nor persistent workers / a second pass
    assert not torch.equal(first, epoch(serial, 4))
    assert not torch.equal(first, epoch(plain, 3))  # augmented
    # evaluation (not shuffled) sees the plain images
    assert torch.equal(
        next(batches(serial.val, 50, shuffle=False))[0], next(batches(plain.val, 50, shuffle=False))[0]
    )
    assert first.shape[1:] == (3, 16, 16)


def test_rrc_on_tensors_in_memory_is_refused(tmp_path):
    from harness.errors import ConfigError

    root = write_folder(tmp_path / "mem")  # 24 images: held in memory
    cfg = compose_config(["data=imagefolder", f"data.root={root}", "data.augment=rrc_flip_rotate"])
    with pytest.raises(ConfigError, match="rrc_flip_rotate crops each image as it is decoded"):
        load_data(cfg.data)


@pytest.mark.slow
@pytest.mark.parametrize("augment", ["flip_translate", "rrc_flip_rotate"])
def test_augmented_resume_ends_with_the_same_numbers(make_cfg, tmp_path, monkeypatch, augment):
    over = ["strategy=never", "epochs=3", f"data.augment={augment}"]
    if augment == "rrc_flip_rotate":
        root = write_folder(tmp_path / "imgs", per_class=6)
        over += ["data=imagefolder", f"data.root={root}", "data.image_size=12", "data.max_in_memory=0"]
        over += ["data.workers=1"]
    straight = train(make_cfg(over + ["resume=false"]), tmp_path / "straight")

    import harness.runner as runner_module

    original = runner_module.build_hooks
    monkeypatch.setattr(runner_module, "build_hooks", lambda *a: original(*a) + [Interrupt(2)])
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg(over + ["resume=false"]), tmp_path / "broken")
    monkeypatch.setattr(runner_module, "build_hooks", original)
    resumed = train(make_cfg(over), tmp_path / "resumed")
    assert any("resumed from" in w for w in resumed["warnings"])
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
    assert resumed["metrics"] == straight["metrics"]
    assert resumed["data"]["augment"]["name"] == augment
