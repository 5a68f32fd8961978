"""Class splits, composed from the real conf/split/*.yaml files."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harness.data import splits
from harness.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"
DIGITS = [str(d) for d in range(10)]
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100 = sorted(f for fines in splits.CIFAR100_SUPERCLASSES.values() for f in fines)  # fine labels are A-Z


def split_conf(name, **overrides):
    return OmegaConf.merge(OmegaConf.load(CONF / "split" / f"{name}.yaml"), overrides)


def test_every_yaml_is_registered_under_its_file_name():
    files = {p.stem for p in (CONF / "split").glob("*.yaml")}
    assert files == set(splits.SPLITS)
    for stem in files:
        cfg = OmegaConf.load(CONF / "split" / f"{stem}.yaml")
        assert cfg.name == stem
        assert "b_domain" in cfg, f"{stem}.yaml lacks b_domain"
        assert splits.b_domain(cfg) in splits.B_DOMAINS


def test_all_has_no_halves():
    cfg = split_conf("all")
    assert splits.split_name(cfg) == "all" and splits.split_name(None) == "all"
    assert splits.b_domain(cfg) is None
    with pytest.raises(ConfigError, match="split.name=all has no halves"):
        splits.class_halves(cfg, DIGITS)


@pytest.mark.parametrize("name", ["random_half", "mnist_dissimilar"])
def test_random_halves_are_disjoint_covering_and_seeded(name):
    halves = splits.class_halves(split_conf(name), DIGITS)
    assert len(halves["A"]) == len(halves["B"]) == 5
    assert sorted(halves["A"] + halves["B"]) == list(range(10))
    assert halves["A"] == sorted(halves["A"])
    assert splits.class_halves(split_conf(name), DIGITS) == halves  # same seed, same split
    others = [splits.class_halves(split_conf(name, seed=s), DIGITS) for s in range(1, 6)]
    assert any(o != halves for o in others)  # different seeds draw different splits


def test_random_half_odd_count_gives_a_the_smaller_half():
    halves = splits.class_halves(split_conf("random_half", seed=4), [f"c{i}" for i in range(7)])
    assert (len(halves["A"]), len(halves["B"])) == (3, 4)
    assert sorted(halves["A"] + halves["B"]) == list(range(7))


def test_mnist_dissimilar_inverts_b():
    assert splits.b_domain(split_conf("mnist_dissimilar")) == "invert"
    assert splits.b_domain(split_conf("random_half")) is None
    assert splits.b_domain(split_conf("random_half", b_domain="rotate90")) == "rotate90"


def test_explicit_classes_by_id_and_by_name():
    assert splits.class_halves(split_conf("classes"), DIGITS) == {"A": [0, 1, 2, 3, 4], "B": [5, 6, 7, 8, 9]}
    by_name = split_conf("classes", A=["cat", "dog"], B=["truck", 0])
    assert splits.class_halves(by_name, CIFAR10) == {"A": [3, 5], "B": [0, 9]}
    # classes in neither list are simply left out
    assert splits.class_halves(split_conf("classes", A=[2], B=[7]), DIGITS) == {"A": [2], "B": [7]}


def test_cifar10_vehicles_vs_animals():
    halves = splits.class_halves(split_conf("cifar10_vehicles_animals"), CIFAR10)
    assert [CIFAR10[i] for i in halves["A"]] == ["airplane", "automobile", "ship", "truck"]
    assert [CIFAR10[i] for i in halves["B"]] == ["bird", "cat", "deer", "dog", "frog", "horse"]


def test_cifar100_manmade_vs_natural():
    table = splits.CIFAR100_SUPERCLASSES
    assert len(table) == 20 and all(len(v) == 5 for v in table.values())
    assert len(CIFAR100) == len(set(CIFAR100)) == 100
    assert CIFAR100[:3] == ["apple", "aquarium_fish", "baby"]  # the official fine label order
    halves = splits.class_halves(split_conf("cifar100_manmade_natural"), CIFAR100)
    a = {CIFAR100[i] for i in halves["A"]}
    b = {CIFAR100[i] for i in halves["B"]}
    assert len(a) == 30 and len(b) == 70 and not a & b
    assert {"bicycle", "bottle", "clock", "bed", "bridge", "rocket", "tractor", "skyscraper"} <= a
    assert {"tulip", "whale", "oak_tree", "baby", "mushroom", "cloud", "spider"} <= b


# -- bad input: one-line ConfigErrors that name what is wrong -------------------------------------------


def test_unknown_split_name_lists_the_allowed_ones():
    with pytest.raises(
        ConfigError, match="split.name='halfsies' is not a split; choose one of: .*random_half"
    ) as err:
        splits.class_halves({"name": "halfsies"}, DIGITS)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("A, bad", [(["zebra"], "'zebra'"), ([12], "12"), ([True], "True")])
def test_unknown_class_is_named_with_the_valid_ones(A, bad):
    with pytest.raises(ConfigError, match=f"split.A: class (id )?{bad}.*does not exist; valid") as err:
        splits.class_halves(split_conf("classes", A=A, B=[1]), DIGITS)
    assert "\n" not in str(err.value)


def test_overlapping_halves_name_the_classes():
    with pytest.raises(ConfigError, match="split.A and split.B overlap in: cat, dog"):
        splits.class_halves(split_conf("classes", A=["cat", "dog", "ship"], B=[3, "dog"]), CIFAR10)


def test_empty_half():
    with pytest.raises(ConfigError, match="split.B is empty"):
        splits.class_halves(split_conf("classes", A=[1], B=[]), DIGITS)
    with pytest.raises(ConfigError, match="split.A is empty"):
        splits.class_halves(split_conf("random_half"), ["only"])


def test_unknown_b_domain():
    with pytest.raises(
        ConfigError,
        match="split.b_domain='flip' is not a transform of half B; choose one of: null, invert, rotate90",
    ):
        splits.class_halves(split_conf("random_half", b_domain="flip"), DIGITS)
    with pytest.raises(ConfigError, match="split.b_domain=invert needs a half B"):
        splits.b_domain(split_conf("all", b_domain="invert"))


def test_cifar100_split_on_other_data_and_bad_superclass():
    with pytest.raises(ConfigError, match="needs the CIFAR-100 classes .*no class 'beaver'"):
        splits.class_halves(split_conf("cifar100_manmade_natural"), DIGITS)
    with pytest.raises(
        ConfigError, match=r"split.A_superclasses\[0\]='robots' is not a CIFAR-100 superclass"
    ):
        splits.class_halves(split_conf("cifar100_manmade_natural", A_superclasses=["robots"]), CIFAR100)


def test_bad_seed():
    with pytest.raises(ConfigError, match="split.seed='x' must be an integer"):
        splits.class_halves(split_conf("random_half", seed="x"), DIGITS)
