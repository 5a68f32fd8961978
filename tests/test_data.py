"""Datasets, composed from the real conf/data/*.yaml files on tiny data (fake CIFAR folders, a few PNGs)."""

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

import harness.data as data
from harness.data import DataBundle, TensorPart, batches, load_data, num_batches, splits
from harness.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_NAMES = sorted(f for fines in splits.CIFAR100_SUPERCLASSES.values() for f in fines)


def conf(group, name, **overrides):
    return OmegaConf.merge(OmegaConf.load(CONF / group / f"{name}.yaml"), overrides)


def counts(part, num_classes):
    return np.bincount(part.y.numpy(), minlength=num_classes).tolist()


def row_set(x):
    """Rows of a tensor as a set of bytes: compares parts independently of their order."""
    return {row.numpy().tobytes() for row in x}


def pixel_rows(bundle, x):
    """Rows back in 0..255 pixel values: comparable across bundles normalised with different statistics."""
    mean = torch.tensor(bundle.mean)[:, None, None]
    std = torch.tensor(bundle.std)[:, None, None]
    return row_set((x * std + mean).mul(255).round().to(torch.uint8))


# -- fake on-disk data in the formats the loaders read -------------------------------------------------------


def write_cifar(root, variant="cifar10", train_per_class=10, test_per_class=3, seed=0):
    """A tiny copy of torchvision's python-pickle CIFAR layout, written as Python-2-era protocol-2 pickles."""
    rng = np.random.default_rng(seed)
    names = CIFAR10_NAMES if variant == "cifar10" else CIFAR100_NAMES
    folder = Path(root) / ("cifar-10-batches-py" if variant == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True)

    def batch(per_class):
        labels = np.repeat(np.arange(len(names)), per_class)
        rng.shuffle(labels)
        # pixel value carries the label so tests can check which class a row came from
        pixels = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        pixels[:, 0] = labels
        return pixels, labels.tolist()

    def dump(name, content):
        with open(folder / name, "wb") as f:
            pickle.dump(content, f, protocol=2)

    if variant == "cifar10":
        dump("batches.meta", {"label_names": names, "num_cases_per_batch": 10})
        for i in range(1, 6):  # train images spread over the five batch files
            pixels, labels = batch(train_per_class // 5)
            dump(
                f"data_batch_{i}",
                {"batch_label": f"training batch {i} of 5", "data": pixels, "labels": labels},
            )
        pixels, labels = batch(test_per_class)
        dump("test_batch", {"batch_label": "testing batch 1 of 1", "data": pixels, "labels": labels})
    else:
        dump("meta", {"fine_label_names": names, "coarse_label_names": list(splits.CIFAR100_SUPERCLASSES)})
        for file_name, per_class in (("train", train_per_class), ("test", test_per_class)):
            pixels, labels = batch(per_class)
            dump(file_name, {"data": pixels, "fine_labels": labels, "coarse_labels": [0] * len(labels)})
    return folder


def write_image_folder(root, classes=("cat", "dog", "fox"), per_class=6, size=(20, 14), mode="RGB"):
    rng = np.random.default_rng(1)
    for c in classes:
        (Path(root) / c).mkdir(parents=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode).save(
                Path(root) / c / f"{i}.png"
            )
    return Path(root)


# -- registry and the real YAML files ---------------------------------------------------------------------


def test_every_yaml_is_registered_under_its_file_name():
    files = {p.stem for p in (CONF / "data").glob("*.yaml")}
    assert files == set(data.DATASETS)
    for stem in files:
        cfg = OmegaConf.load(CONF / "data" / f"{stem}.yaml")
        assert cfg.name == stem
        assert cfg.seed == 0 and cfg.train_fraction == 1.0
        assert {"val_fraction", "test_fraction"} <= set(cfg)


def check_bundle(bundle, name, num_classes, channels, size):
    assert isinstance(bundle, DataBundle) and bundle.name == name
    assert bundle.num_classes == num_classes == len(bundle.classes)
    assert (bundle.in_channels, bundle.image_size) == (channels, size)
    for part in (bundle.train, bundle.val, bundle.test):
        assert isinstance(part, TensorPart)
        assert part.x.dtype == torch.float32 and part.y.dtype == torch.int64
        assert part.x.shape == (len(part), channels, size, size)
        assert set(part.y.tolist()) == set(range(num_classes))  # every class in every part
    # normalised with the train part's per-channel statistics
    mean = bundle.train.x.mean(dim=(0, 2, 3))
    std = bundle.train.x.std(dim=(0, 2, 3), correction=0)
    assert torch.allclose(mean, torch.zeros(channels), atol=1e-4)
    assert torch.allclose(std, torch.ones(channels), atol=1e-3)


def test_mnist5k_is_the_real_5000_digits_and_loads_fast():
    bundle = load_data(conf("data", "mnist5k"))
    check_bundle(bundle, "mnist5k", 10, 1, 28)
    assert bundle.classes == [str(d) for d in range(10)]
    # 500 images per digit: 20% test, 10% val, the rest train, exactly, in every class (stratified)
    assert counts(bundle.test, 10) == [100] * 10
    assert counts(bundle.val, 10) == [50] * 10
    assert counts(bundle.train, 10) == [350] * 10
    raw_mean = bundle.mean[0]
    assert 0.1 < raw_mean < 0.16  # MNIST's mean pixel in [0, 1] is ~0.13: real digits, not noise
    import time

    start = time.perf_counter()
    load_data(conf("data", "mnist5k", seed=3))
    assert time.perf_counter() - start < 0.5


def test_digits_and_synthetic():
    bundle = load_data(conf("data", "digits"))
    check_bundle(bundle, "digits", 10, 1, 8)
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 1797
    synthetic = load_data(conf("data", "synthetic"))
    check_bundle(synthetic, "synthetic", 10, 1, 12)
    assert counts(synthetic.test, 10) == [8] * 10 and counts(synthetic.train, 10) == [28] * 10
    rgb = load_data(conf("data", "synthetic", num_classes=4, channels=3, image_size=16, per_class=20))
    check_bundle(rgb, "synthetic", 4, 3, 16)


@pytest.fixture
def one_thread():
    # On a loaded 2-core machine, torch's intra-op threads wait on each other: a tiny CNN step took ~150 ms
    # with 2 threads vs ~1 ms with 1. Tiny models gain nothing from threads anyway.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_synthetic_is_learnable_by_a_tiny_cnn(one_thread):
    bundle = load_data(conf("data", "synthetic"))
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 6 * 6, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for epoch in range(5):
        for x, y in batches(bundle.train, 32, shuffle=True, seed=epoch):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    with torch.no_grad():
        accuracy = (net(bundle.test.x).argmax(1) == bundle.test.y).float().mean().item()
    assert accuracy > 0.6  # chance is 0.1


def test_cifar10_from_a_local_folder_uses_the_official_test_set(tmp_path):
    write_cifar(tmp_path, "cifar10")
    bundle = load_data(conf("data", "cifar10", root=str(tmp_path)))
    check_bundle(bundle, "cifar10", 10, 3, 32)
    assert bundle.classes == CIFAR10_NAMES
    assert counts(bundle.test, 10) == [3] * 10  # the official test batch, untouched
    assert counts(bundle.val, 10) == [1] * 10 and counts(bundle.train, 10) == [9] * 10
    # the label written into pixel 0 survives loading: rows are not mixed up with their labels
    first_pixel = bundle.train.x[:, 0, 0, 0] * bundle.std[0] + bundle.mean[0]
    assert torch.allclose(first_pixel * 255, bundle.train.y.float(), atol=1e-3)
    pooled = load_data(conf("data", "cifar10", root=str(tmp_path), test_fraction=0.25))
    assert (
        counts(pooled.test, 10) == [3] * 10 and counts(pooled.train, 10) == [9] * 10
    )  # 13 * 0.25 rounds to 3


def test_cifar100_from_a_local_folder_with_the_manmade_natural_split(tmp_path):
    write_cifar(tmp_path, "cifar100", train_per_class=5, test_per_class=2)
    data_cfg = conf("data", "cifar100", root=str(tmp_path))
    split_cfg = conf("split", "cifar100_manmade_natural")
    whole = load_data(data_cfg)
    check_bundle(whole, "cifar100", 100, 3, 32)
    a = load_data(data_cfg, split_cfg, "A")
    b = load_data(data_cfg, split_cfg, "B")
    assert a.num_classes == 30 and b.num_classes == 70
    assert "bicycle" in a.classes and "tulip" in b.classes
    assert len(a.test) == 60 and len(b.test) == 140


def test_cifar10_vehicles_animals_split(tmp_path):
    write_cifar(tmp_path, "cifar10")
    data_cfg = conf("data", "cifar10", root=str(tmp_path))
    a = load_data(data_cfg, conf("split", "cifar10_vehicles_animals"), "A")
    assert a.classes == ["airplane", "automobile", "ship", "truck"] and a.class_ids == [0, 1, 8, 9]
    assert sorted(set(a.train.y.tolist())) == [0, 1, 2, 3]


def test_cifar_missing_root_says_how_to_download(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(
        ConfigError, match=f"data.root={missing}: no cifar-10-batches-py/ .*data.download=true"
    ) as e:
        load_data(conf("data", "cifar10", root=str(missing)))
    assert "\n" not in str(e.value)


def test_cifar_download_only_when_asked(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    class FakeCIFAR10:  # stands in for the network: "downloads" by writing the fake layout
        def __init__(self, root, train, download):
            calls.append(root)
            write_cifar(root, "cifar10")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    with pytest.raises(ConfigError, match="data.download=true fetches it"):
        load_data(conf("data", "cifar10", root=str(tmp_path)))
    assert calls == []
    bundle = load_data(conf("data", "cifar10", root=str(tmp_path), download=True))
    assert calls == [str(tmp_path)] and bundle.num_classes == 10
    load_data(conf("data", "cifar10", root=str(tmp_path), download=True))
    assert len(calls) == 1  # present now: no second download

    class Offline:
        def __init__(self, root, train, download):
            raise RuntimeError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", Offline)
    with pytest.raises(
        ConfigError, match="data.download=true could not fetch cifar100 .*Name or service not known"
    ):
        load_data(conf("data", "cifar100", root=str(tmp_path / "c100"), download=True))


def test_cifar_pickle_cannot_run_code(tmp_path):
    folder = write_cifar(tmp_path, "cifar10")

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({"data": Payload(), "labels": []}, f)
    with pytest.raises(ConfigError, match="data_batch_3 as a CIFAR pickle .*refers to pathlib"):
        load_data(conf("data", "cifar10", root=str(tmp_path)))
    assert not (tmp_path / "pwned").exists()
    incomplete = write_cifar(tmp_path / "incomplete", "cifar10")
    (incomplete / "test_batch").unlink()
    with pytest.raises(ConfigError, match="test_batch is missing"):
        load_data(conf("data", "cifar10", root=str(tmp_path / "incomplete")))


def test_imagefolder_small_in_memory_and_large_through_a_dataloader(tmp_path):
    root = write_image_folder(tmp_path / "pets")
    small = load_data(conf("data", "imagefolder", root=str(root), image_size=8))
    check_bundle(small, "imagefolder", 3, 3, 8)
    assert small.classes == ["cat", "dog", "fox"]
    large = load_data(conf("data", "imagefolder", root=str(root), image_size=8, max_in_memory=5))
    assert isinstance(large.train, torch.utils.data.Dataset) and not isinstance(large.train, TensorPart)
    assert len(large.train) == len(small.train) and large.classes == small.classes
    # the same images, labels and normalisation whichever way they are held
    x_large, y_large = map(torch.cat, zip(*batches(large.train, 4, shuffle=False), strict=True))
    assert torch.equal(y_large, small.train.y)
    assert torch.allclose(x_large, small.train.x, atol=1e-5)
    grey = load_data(conf("data", "imagefolder", root=str(root), image_size=6, channels=1))
    check_bundle(grey, "imagefolder", 3, 1, 6)


def test_imagefolder_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="data.root=.*nothing does not exist"):
        load_data(conf("data", "imagefolder", root=str(tmp_path / "nothing")))
    with pytest.raises(ConfigError, match="data.root is not set"):
        load_data(conf("data", "imagefolder"))
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "flat" / "loose.png")
    with pytest.raises(ConfigError, match="flat has no class subfolders"):
        load_data(conf("data", "imagefolder", root=str(tmp_path / "flat")))
    root = write_image_folder(tmp_path / "pets")
    (root / "emu").mkdir()
    (root / "emu" / "notes.txt").write_text("not an image")
    with pytest.raises(ConfigError, match="class folder .*emu has no images"):
        load_data(conf("data", "imagefolder", root=str(root)))
    (root / "emu" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ConfigError, match="cannot read image .*emu/1.png") as e:
        load_data(conf("data", "imagefolder", root=str(root)))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="data.channels=2"):
        load_data(conf("data", "imagefolder", root=str(root), channels=2))


# -- splitting, seeding, halves, domains ---------------------------------------------------------------------


def test_split_is_seeded_and_the_test_set_is_fixed():
    base = load_data(conf("data", "synthetic"))
    again = load_data(conf("data", "synthetic"))
    assert torch.equal(base.test.x, again.test.x) and torch.equal(base.train.x, again.train.x)
    other = load_data(conf("data", "synthetic", seed=1))
    assert row_set(other.test.x) != row_set(base.test.x)
    assert counts(other.test, 10) == counts(base.test, 10)  # still stratified
    # the three parts partition the data
    all_rows = row_set(torch.cat([base.train.x, base.val.x, base.test.x]))
    assert len(all_rows) == 400
    # the test set does not move when val_fraction changes
    more_val = load_data(conf("data", "synthetic", val_fraction=0.3))
    assert pixel_rows(more_val, more_val.test.x) == pixel_rows(base, base.test.x)
    assert more_val.mean != base.mean  # (statistics follow the train part, hence the comparison in pixels)
    assert counts(more_val.val, 10) == [12] * 10


def test_train_fraction_is_a_stratified_nested_subset_of_train():
    full = load_data(conf("data", "mnist5k"))
    half = load_data(conf("data", "mnist5k", train_fraction=0.5))
    quarter = load_data(conf("data", "mnist5k", train_fraction=0.25))
    assert counts(half.train, 10) == [175] * 10 and counts(quarter.train, 10) == [88] * 10
    assert row_set(quarter.train.x) <= row_set(half.train.x) <= row_set(full.train.x)
    assert torch.equal(half.test.x, full.test.x) and torch.equal(half.val.x, full.val.x)
    assert half.mean == full.mean  # same normalisation, so models move between these runs unchanged


def test_halves_are_disjoint_covering_and_relabelled():
    data_cfg, split_cfg = conf("data", "mnist5k"), conf("split", "random_half", seed=2)
    whole = load_data(data_cfg, split_cfg)
    a = load_data(data_cfg, split_cfg, "A")
    b = load_data(data_cfg, split_cfg, "B")
    halves = splits.class_halves(split_cfg, whole.classes)
    assert a.class_ids == halves["A"] and b.class_ids == halves["B"]
    assert not set(a.classes) & set(b.classes) and sorted(a.classes + b.classes) == whole.classes
    for bundle in (a, b):
        assert bundle.num_classes == 5 and set(bundle.train.y.tolist()) == set(range(5))
        assert (bundle.in_channels, bundle.image_size) == (1, 28)
        assert bundle.mean == whole.mean  # one normalisation for A, B and the whole
    # half A's test set is exactly the whole test set's rows of A's classes
    in_a = torch.isin(whole.test.y, torch.tensor(halves["A"]))
    assert torch.equal(a.test.x, whole.test.x[in_a])
    assert [a.classes[i] for i in a.test.y.tolist()] == [
        whole.classes[i] for i in whole.test.y[in_a].tolist()
    ]


def test_b_domain_invert_changes_half_b_only():
    data_cfg = conf("data", "mnist5k")
    plain, dissimilar = conf("split", "random_half"), conf("split", "mnist_dissimilar")  # same seed 0
    assert load_data(data_cfg, plain, "A").test.x.equal(load_data(data_cfg, dissimilar, "A").test.x)
    b_plain = load_data(data_cfg, plain, "B")
    b_inv = load_data(data_cfg, dissimilar, "B")
    mean, std = b_plain.mean[0], b_plain.std[0]
    # back in pixel space [0, 1], inverted B is 1 - B
    assert torch.allclose(b_inv.test.x * std + mean, 1 - (b_plain.test.x * std + mean), atol=1e-5)
    assert torch.equal(b_inv.test.y, b_plain.test.y)
    # all classes under the dissimilar split: B's rows inverted, A's untouched
    whole_plain, whole_inv = load_data(data_cfg, plain), load_data(data_cfg, dissimilar)
    in_b = torch.isin(whole_plain.train.y, torch.tensor(splits.class_halves(plain, whole_plain.classes)["B"]))
    assert torch.equal(whole_inv.train.x[~in_b], whole_plain.train.x[~in_b])
    assert not torch.allclose(whole_inv.train.x[in_b], whole_plain.train.x[in_b])


def test_b_domain_rotate90_changes_half_b_only(tmp_path):
    data_cfg = conf("data", "synthetic")
    plain, rotated = conf("split", "classes"), conf("split", "classes", b_domain="rotate90")
    assert torch.equal(load_data(data_cfg, plain, "A").train.x, load_data(data_cfg, rotated, "A").train.x)
    b_plain, b_rot = load_data(data_cfg, plain, "B"), load_data(data_cfg, rotated, "B")
    assert torch.allclose(b_rot.train.x, torch.rot90(b_plain.train.x, 1, dims=(2, 3)))
    # the lazily read image folder applies the same transform
    root = write_image_folder(tmp_path / "pets", classes=("a", "b"))
    folder = conf("data", "imagefolder", root=str(root), image_size=8, max_in_memory=0)
    split = conf("split", "classes", A=["a"], B=["b"], b_domain="rotate90")
    lazy_plain = load_data(folder, conf("split", "classes", A=["a"], B=["b"]), "B")
    lazy_rot = load_data(folder, split, "B")
    x_plain, _ = next(batches(lazy_plain.train, 100, shuffle=False))
    x_rot, y_rot = next(batches(lazy_rot.train, 100, shuffle=False))
    assert torch.allclose(x_rot, torch.rot90(x_plain, 1, dims=(2, 3))) and set(y_rot.tolist()) == {0}


# -- batches ----------------------------------------------------------------------------------------------------


def test_batches_tensor_part_order_and_coverage():
    part = load_data(conf("data", "synthetic")).train  # 280 rows
    assert num_batches(part, 64) == 5 and num_batches(part, 64, drop_last=True) == 4
    ordered = list(batches(part, 64, shuffle=False))
    assert len(ordered) == 5 and torch.equal(torch.cat([x for x, _ in ordered]), part.x)
    first = list(batches(part, 64, shuffle=True, seed=7))
    again = list(batches(part, 64, shuffle=True, seed=7))
    other = list(batches(part, 64, shuffle=True, seed=8))
    y_first = torch.cat([y for _, y in first])
    assert torch.equal(y_first, torch.cat([y for _, y in again]))
    assert not torch.equal(torch.cat([x for x, _ in first]), torch.cat([x for x, _ in other]))
    assert not torch.equal(y_first, part.y)  # shuffled
    assert sorted(y_first.tolist()) == sorted(part.y.tolist())
    assert row_set(torch.cat([x for x, _ in first])) == row_set(part.x)  # every row exactly once
    dropped = list(batches(part, 64, shuffle=True, seed=7, drop_last=True))
    assert [len(y) for _, y in dropped] == [64] * 4
    assert all(x.device.type == "cpu" for x, _ in first)


def test_batches_dataset_order_and_coverage(tmp_path):
    root = write_image_folder(tmp_path / "pets", per_class=10)
    part = load_data(conf("data", "imagefolder", root=str(root), image_size=6, max_in_memory=0)).train
    assert num_batches(part, 4) == len(list(batches(part, 4, shuffle=True)))
    first = [y for _, y in batches(part, 4, shuffle=True, seed=3)]
    assert [y.tolist() for y in first] == [y.tolist() for _, y in batches(part, 4, shuffle=True, seed=3)]
    orders = {
        tuple(torch.cat([y for _, y in batches(part, 4, shuffle=True, seed=s)]).tolist()) for s in range(4)
    }
    assert len(orders) > 1
    xs = torch.cat([x for x, _ in batches(part, 4, shuffle=True, seed=3)])
    plain = torch.cat([x for x, _ in batches(part, 4, shuffle=False)])
    assert row_set(xs) == row_set(plain) and len(xs) == len(part)
    assert Counter(torch.cat(first).tolist()) == Counter(int(part[i][1]) for i in range(len(part)))


# -- bad input: one-line ConfigErrors that name what is wrong ---------------------------------------------


def test_unknown_dataset_lists_the_allowed_names():
    with pytest.raises(
        ConfigError,
        match="data.name='imagenet' is not a dataset.*; choose one of: mnist5k, digits, .*synthetic",
    ):
        load_data({"name": "imagenet"})


def test_half_needs_a_split_with_halves():
    with pytest.raises(ConfigError, match="split.name=all has no halves"):
        load_data(conf("data", "synthetic"), conf("split", "all"), "A")
    with pytest.raises(ConfigError, match="split.name=all has no halves"):
        load_data(conf("data", "synthetic"), None, "B")
    with pytest.raises(ConfigError, match="half='C' is not allowed"):
        load_data(conf("data", "synthetic"), conf("split", "random_half"), "C")
    with pytest.raises(ConfigError, match="split.name='nope' is not a split"):
        load_data(conf("data", "synthetic"), {"name": "nope"}, "A")
    with pytest.raises(ConfigError, match="split.b_domain='mirror' is not a transform of half B"):
        load_data(conf("data", "synthetic"), conf("split", "random_half", b_domain="mirror"), "B")
    with pytest.raises(ConfigError, match="split.A: class 'cat' does not exist; valid classes: pattern0"):
        load_data(conf("data", "synthetic"), conf("split", "classes", A=["cat"]), "A")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"val_fraction": 0.5, "test_fraction": 0.5},
            "data.val_fraction \\+ data.test_fraction = 1 leaves no",
        ),
        ({"val_fraction": -0.1}, "data.val_fraction=-0.1 must be a number >= 0"),
        ({"test_fraction": None}, "data.test_fraction=null needs a dataset with its own test set"),
        ({"train_fraction": 0}, "data.train_fraction=0 leaves no training data"),
        ({"train_fraction": 1.5}, "data.train_fraction=1.5 must be a number"),
        ({"seed": "zero"}, "data.seed='zero' must be an integer"),
        ({"per_class": 1}, "data.per_class=1 must be an integer >= 3"),
    ],
)
def test_bad_data_values(overrides, message):
    with pytest.raises(ConfigError, match=message) as e:
        load_data(conf("data", "synthetic", **overrides))
    assert "\n" not in str(e.value)


def test_bad_batch_size():
    part = load_data(conf("data", "synthetic")).val
    with pytest.raises(ConfigError, match="batch size 0"):
        next(batches(part, 0, shuffle=False))
    with pytest.raises(ConfigError, match="batch size 2.5"):
        num_batches(part, 2.5)
