"""Class splits: which classes form half A and which half B of a transfer experiment.

Yosinski et al. (2014) split the classes of one dataset into two disjoint halves, train ``baseA`` on A and
``baseB`` on B, and transfer layers between them. A split config (``conf/split/<name>.yaml``) says how the
halves are drawn; :func:`class_halves` turns it into lists of the dataset's original label ids.

``b_domain`` changes the *input domain* of half B only (``invert``: white <-> black, ``rotate90``: a quarter
turn), the download-free way to make a "dissimilar" split: A and B then differ in how their images look, not
only in which objects they show. The transform itself is applied by :mod:`harness.data`; this module only
names and validates it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from harness.config import checks, schema
from harness.config.schema import B_DOMAINS  # transforms of half B's images; None keeps them as they are
from harness.errors import ConfigError

# CIFAR-100 superclass of each fine label (the dataset's published, fixed hierarchy: 20 superclasses of 5).
# Hard-coded so a split never depends on which metadata a local copy of the dataset happens to carry.
CIFAR100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}


def split_name(split_cfg: Any) -> str:
    """The split's name, validated against the registry; no split config means ``all``."""
    if split_cfg is None:
        return "all"
    return schema.check_values("split", split_cfg)["name"]  # the name and every value of the split


def b_domain(split_cfg: Any) -> str | None:
    """The validated ``split.b_domain`` (None, ``invert`` or ``rotate90``)."""
    if split_cfg is None:
        return None
    domain = schema.check_values("split", split_cfg).get("b_domain")
    if domain is not None and split_name(split_cfg) == "all":
        raise ConfigError(
            f"split.b_domain={domain} needs a half B, but split.name=all has none; "
            "pick a split with halves (e.g. split=random_half)"
        )
    return domain


def class_halves(split_cfg: Any, classes: Sequence[str]) -> dict[str, list[int]]:
    """``{"A": [...], "B": [...]}``: original label ids of each half, each list sorted ascending.

    The halves are disjoint and non-empty. Random splits cover every class; explicit ones may leave
    classes out (e.g. a 3-vs-3 experiment on a 10-class dataset).
    """
    split_cfg = schema.check_values("split", split_cfg)  # plain data, every value checked
    name = split_name(split_cfg)
    b_domain(split_cfg)  # validate it here too, so a bad value fails before any data is touched
    if name == "all":
        raise ConfigError(
            "split.name=all has no halves A/B; pick a split with halves "
            f"({', '.join(sorted(n for n in _SPLITTERS if n != 'all'))})"
        )
    halves = _SPLITTERS[name](split_cfg, list(classes))
    _check_halves(halves, classes)
    return {"A": sorted(halves["A"]), "B": sorted(halves["B"])}


# -- the splitters: (split_cfg, classes) -> {"A": ids, "B": ids} -------------------------------------------


def _random_half(split_cfg: Any, classes: list[str]) -> dict[str, list[int]]:
    # A seeded shuffle of the class ids; A takes the first floor(n/2), so with an odd count A is smaller.
    seed = split_cfg.get("seed", 0)  # checked by the schema (split_name)
    order = np.random.default_rng(seed).permutation(len(classes)).tolist()
    half = len(classes) // 2
    return {"A": order[:half], "B": order[half:]}


def _explicit(split_cfg: Any, classes: list[str]) -> dict[str, list[int]]:
    return {key: _class_ids(split_cfg, key, classes) for key in ("A", "B")}


def _superclasses(split_cfg: Any, classes: list[str]) -> dict[str, list[int]]:
    # A = every fine class of the listed CIFAR-100 superclasses, B = all other CIFAR-100 classes.
    chosen = split_cfg.get("A_superclasses")
    if not chosen:
        raise ConfigError(
            "split.A_superclasses is empty; list CIFAR-100 superclasses, allowed: "
            + ", ".join(CIFAR100_SUPERCLASSES)
        )
    chosen = list(chosen)
    for i, superclass in enumerate(chosen):
        checks.one_of(
            superclass, f"split.A_superclasses[{i}]", CIFAR100_SUPERCLASSES, what="a CIFAR-100 superclass"
        )
    missing = [fine for fines in CIFAR100_SUPERCLASSES.values() for fine in fines if fine not in classes]
    if missing:
        raise ConfigError(
            f"split.name={split_cfg.get('name')} needs the CIFAR-100 classes (data=cifar100), "
            f"but the data has no class {missing[0]!r}; its classes: {', '.join(classes)}"
        )
    manmade = {fine for s in chosen for fine in CIFAR100_SUPERCLASSES[s]}
    return {
        "A": [i for i, c in enumerate(classes) if c in manmade],
        "B": [i for i, c in enumerate(classes) if c not in manmade],
    }


_SPLITTERS: dict[str, Callable[[Any, list[str]], dict[str, list[int]]] | None] = {
    "all": None,  # no halves; handled before dispatch
    "random_half": _random_half,
    "classes": _explicit,
    "cifar10_vehicles_animals": _explicit,  # explicit A/B name lists in its YAML
    "cifar100_manmade_natural": _superclasses,
    "mnist_dissimilar": _random_half,  # random halves; its YAML sets b_domain: invert
}

SPLITS = tuple(_SPLITTERS)


# -- helpers -------------------------------------------------------------------------------------------


def _class_ids(split_cfg: Any, key: str, classes: list[str]) -> list[int]:
    """Resolve ``split.<key>``: integers are label ids, strings are class names."""
    items = schema.class_list(split_cfg.get(key), f"split.{key}")
    ids = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            if not 0 <= item < len(classes):
                raise ConfigError(
                    f"split.{key}: class id {item} does not exist; valid ids: 0..{len(classes) - 1}"
                )
            ids.append(item)
        elif isinstance(item, str) and item in classes:
            ids.append(classes.index(item))
        else:
            raise ConfigError(
                f"split.{key}: class {item!r} does not exist; valid classes: {', '.join(classes)}"
            )
    return sorted(set(ids))


def _check_halves(halves: dict[str, list[int]], classes: Sequence[str]) -> None:
    for key in ("A", "B"):
        if not halves[key]:
            raise ConfigError(
                f"split.{key} is empty ({len(classes)} classes in the data); "
                "each half needs at least one class"
            )
    overlap = sorted(set(halves["A"]) & set(halves["B"]))
    if overlap:
        raise ConfigError(
            f"split.A and split.B overlap in: {', '.join(classes[i] for i in overlap)}; "
            "the halves must be disjoint"
        )


def apply_domain(x: torch.Tensor, domain: str) -> torch.Tensor:
    """The b_domain transform on images with pixel values in [0, 1], shape (..., H, W)."""
    if domain == "invert":
        return 1.0 - x
    if domain == "rotate90":
        return torch.rot90(x, 1, dims=(-2, -1))
    raise ConfigError(
        f"split.b_domain={domain!r} is unknown; allowed: {', '.join(str(d) for d in B_DOMAINS)}"
    )
