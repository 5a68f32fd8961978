"""The schema of the composed config: every key of every section, each with its typed check.

:func:`check_config` runs before anything trains and before any base is trained (``harness.train.train``,
``python -m harness.lr_find``, and for a multirun once up front in :class:`harness.config.callbacks.CheckConfig`):

- a key that no code reads is an error that names the closest known key: a typo that Hydra refuses
  (``epoch=3``, reported through :func:`unknown_key` by :mod:`harness.config.cli`) or one added with ``+``
  (``+epoch=3``), which Hydra accepts;
- every value goes through its check from :mod:`harness.config.checks`: one line, what was given, where, and
  what is allowed. Booleans are not numbers and strings are not numbers.

Checks that need context stay where the context is: ``freeze_to`` k against the model's groups, a split
naming classes the data lacks, ``transfer.n`` against the model's layers, a checkpoint that must load, a folder
that must be writable. The modules run :func:`check_values` on their own section as well, so a direct caller
(a test, a benchmark, the transfer plan's generated configs) meets the same checks with the same words.

A section whose keys depend on a choice (``data`` on ``data.name``, ..., ``transfer`` on ``transfer.treatment``)
lists the keys of each choice. ``search`` belongs to the sweeper (typed by its dataclasses in
``hydra_plugins/freezelab_optuna/config.py``) and ``hydra`` to Hydra. Adding a key is one line below.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.config import checks
from harness.errors import ConfigError
from harness.plan.lr import parse_lr

Check = Callable[[Any, str], Any]

# Choices that several modules share; the schema is where they are defined.
BN_POLICIES = ("train", "frozen", "eval")
OPTIMIZER_STATE = ("keep", "reset")
B_DOMAINS = (None, "invert", "rotate90")
RESNET_SPLITS = ("groups6", "fastai3")
WANDB_MODES = ("offline", "online", "disabled")
PRECISIONS = ("32", "bf16")
TREATMENTS = ("BnB", "BnB+", "AnB", "AnB+", "random", "warm", "scratch")
NORMALIZE = ("auto", "train", "weights", "none")
AUGMENTS = ("none", "flip_translate", "rrc_flip_rotate")
BAD_IMAGES = ("stop", "skip")
TIMM_SPLITS = ("coarse", "fine")


# --- the vocabulary of the schema: checks.<check> with its options bound --------------------------------


def integer(*, low: int | None = None, high: int | None = None) -> Check:
    return partial(checks.integer, low=low, high=high)


def number(**bounds: float) -> Check:
    return partial(checks.number, **bounds)


def one_of(*choices: Any, what: str = "") -> Check:
    return partial(checks.one_of, choices=choices, what=what)


def list_of(item: Check, *, length: int | None = None, what: str = "values") -> Check:
    return partial(checks.list_of, item=item, length=length, what=what)


boolean: Check = checks.boolean
text: Check = checks.text


def nullable(check: Check) -> Check:
    """``check``, or null."""

    def check_or_null(value: Any, where: str) -> Any:
        return None if value is None else check(value, where)

    return check_or_null


@dataclass(frozen=True)
class Optional:
    """A key that may be absent (its code has a default); when present it is checked."""

    check: Check

    def __call__(self, value: Any, where: str) -> Any:
        return self.check(value, where)


# Checked by its owner (the sweeper, Hydra); present or not.
OWNED = Optional(lambda value, where: value)


def lr(value: Any, where: str) -> Any:
    """A learning rate: a number > 0, ``{hi: x}``, ``{lo: x, hi: y}`` (fastai's slice) or one per group."""
    return parse_lr(value, where)


def device(value: Any, where: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        raise ConfigError(f"{where}={value!r} is not a device; use auto, cpu, cuda or cuda:N")
    return value


def auto_or(check: Check) -> Check:
    """``check``, or the word auto (the code then decides)."""

    def auto_or_check(value: Any, where: str) -> Any:
        if value == "auto":
            return value
        try:
            return check(value, where)
        except ConfigError as e:
            raise ConfigError(f"{e} or auto") from None

    return auto_or_check


def precision(value: Any, where: str) -> str:
    # `speed.precision=32` on the command line is the integer 32: the same choice as the YAML's "32".
    shown = str(value) if checks._is_int(value) else value
    return checks.one_of(shown, where, PRECISIONS, what="a precision")


def odd_kernel(value: Any, where: str) -> int:
    if not checks._is_int(value) or value < 1 or value % 2 == 0:
        raise ConfigError(f"{where}={value!r} must be an odd integer >= 1 ('same' padding)")
    return value


def layer_groups(value: Any, where: str) -> Any:
    """null, or a non-empty list of ``{name: ..., modules: [prefix, ...]}`` (a module prefix may stand alone)."""
    if value is None:
        return None
    shape = "a non-empty list of {name: ..., modules: [module, ...]}"
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}={value!r} must be null or {shape}")
    for i, group in enumerate(value):
        modules = group.get("modules") if isinstance(group, Mapping) else None
        modules = [modules] if isinstance(modules, str) else modules
        names_ok = isinstance(group, Mapping) and set(group) == {"name", "modules"}
        if not names_ok or not isinstance(group["name"], str | int) or not isinstance(modules, list):
            raise ConfigError(
                f"{where}[{i}]={group!r} must be {{name: ..., modules: [module, ...]}} ({shape})"
            )
        list_of(text, what="module names")(modules, f"{where}[{i}].modules")
    return value


def class_list(value: Any, where: str) -> list:
    # Each item against the data's classes (with the valid ones listed): harness/data/splits.py.
    if not isinstance(value, list):
        raise ConfigError(
            f"{where}={value!r} must be a list of class ids or names (e.g. [0, 1] or [cat, dog])"
        )
    return value


def net(value: Any, where: str) -> Any:
    if not isinstance(value, Mapping) or "_target_" not in value:
        raise ConfigError(
            f"{where} must be a mapping with '_target_' (e.g. torch.nn.Sequential) and its arguments"
        )
    return value  # its arguments are the module's own: Hydra's instantiate checks them


def head(value: Any, where: str) -> Any:
    if not (isinstance(value, str) and value) and not (checks._is_int(value) and value >= 0):
        raise ConfigError(
            f"{where}={value!r} must be the qualified name of the final nn.Linear (e.g. classifier.fc)"
        )
    return value


# --- sections ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """The keys of one config section, each with its check (or a nested :class:`Section`).

    With ``by``, the value of that key (``name``) picks a variant, and the section's keys are ``keys`` plus
    the variant's own.
    """

    name: str  # where it sits in the config ("strategy"); "" for the root
    keys: Mapping[str, Any] = field(default_factory=dict)
    by: str | None = None
    variants: Mapping[Any, Mapping[str, Any]] = field(default_factory=dict)
    what: str = ""  # what a value of `by` is, for the message ("a strategy")
    pick: str = "{section}={choice}"  # how a user selects a variant on the command line

    def path(self, key: str) -> str:
        return f"{self.name}.{key}" if self.name else key

    def choose(self, values: Mapping) -> Any:
        """The variant ``values`` selects (checked), or None for a section without variants."""
        if self.by is None:
            return None
        return checks.one_of(values.get(self.by), self.path(self.by), self.variants, what=self.what)

    def keys_of(self, choice: Any) -> dict[str, Any]:
        if self.by is None:
            return dict(self.keys)
        return {self.by: OWNED, **self.keys, **self.variants[choice]}

    def label(self, choice: Any) -> str:
        if not self.name:
            return "the config"
        if self.by is None:
            return self.name
        shown = "null" if choice is None else choice
        return f"{self.name} '{shown}'" if self.by == "name" else f"{self.name} with {self.by}={shown}"

    def picks(self, key: str) -> list[str]:
        """How to select each variant that has ``key``: ``["strategy=freeze_to"]``."""
        found = [
            self.pick.format(section=self.name, choice=c) for c, keys in self.variants.items() if key in keys
        ]
        return list(dict.fromkeys(found))

    def unknown(self, key: str, choice: Any) -> str:
        known = self.keys_of(choice)
        listed = sorted(k for k in known if known[k] is not OWNED or k == self.by)
        hint = checks.closest(key, listed)
        elsewhere = self.picks(key)
        return (
            f"{self.path(key)} is not a key of {self.label(choice)}"
            + (f" ({key} belongs to {', '.join(elsewhere)})" if elsewhere else "")
            + (f"; did you mean {hint}?" if hint else ";")
            + f" its keys: {', '.join(listed)}"
        )

    def missing(self, key: str, choice: Any) -> str:
        how = self.pick.format(section=self.name, choice=choice)
        return f"{self.path(key)} is missing; {self.label(choice)} needs it" + (
            f" (select it with {how}, which sets every key it needs)" if self.by else ""
        )

    def check(self, values: Any, *, unknown: bool = True, missing: bool = True) -> None:
        """Check every key of ``values`` (plain data); ``unknown``/``missing``: also reject keys the section does
        not have / lacks."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{self.name}={values!r} must be a section of keys ({self.name}.<key>=...)")
        choice = self.choose(values)
        known = self.keys_of(choice)
        if unknown:
            for key in values:
                if key not in known:
                    raise ConfigError(self.unknown(key, choice))
        if missing:
            for key, spec in known.items():
                if key not in values and not isinstance(spec, Optional):
                    raise ConfigError(self.missing(key, choice))
        for key, value in values.items():
            spec = known.get(key)
            if isinstance(spec, Section):
                spec.check(value, unknown=unknown, missing=missing)
            elif spec is not None:
                spec(value, self.path(key))


# data: the split of every dataset into train/val/test (harness/data/prepare.py), then each source's own keys.
_PARTS = {
    "seed": integer(low=0),
    "val_fraction": number(low=0, below=1),
    "test_fraction": nullable(number(low=0, below=1)),  # null: the dataset's own test set (CIFAR)
    "train_fraction": number(low=0, high=1),  # 0 (no training data): harness/data/prepare.py says so
    # auto: the pretrained weights' mean/std when the model brings them, else the train part's
    "normalize": Optional(one_of(*NORMALIZE, what="a normalisation")),
    "augment": Optional(one_of(*AUGMENTS, what="an augmentation preset")),  # harness/data/augment.py
}
_CIFAR = {**_PARTS, "root": text, "download": boolean}
DATA = Section(
    "data",
    by="name",
    what="a dataset",
    variants={
        "mnist5k": _PARTS,
        "digits": _PARTS,
        "cifar10": _CIFAR,
        "cifar100": _CIFAR,
        "imagefolder": {
            **_PARTS,
            "root": partial(
                checks.folder, needed_for="imagefolder needs a folder with one subfolder per class"
            ),
            "image_size": auto_or(integer(low=1)),  # auto: the weights' input size, else 32
            "channels": one_of(1, 3, what="1 (grey) or 3 (RGB)"),
            "max_in_memory": integer(low=0),
            # streamed folders (more images than max_in_memory): harness/data/stream.py
            "workers": Optional(auto_or(integer(low=0))),
            "cache": Optional(nullable(text)),  # a folder for the decode-once uint8 cache, or null
            "bad_images": Optional(one_of(*BAD_IMAGES, what="what to do with unreadable images")),
        },
        "synthetic": {
            **_PARTS,
            "num_classes": integer(low=2),
            "per_class": integer(low=3),
            "image_size": integer(low=4),
            "channels": integer(low=1),
            "noise": number(low=0),
            "pattern_seed": integer(low=0),
        },
    },
)

_B_DOMAIN = {"b_domain": one_of(*B_DOMAINS, what="a transform of half B")}
_SEEDED = {"seed": integer(low=0), **_B_DOMAIN}
_EXPLICIT = {"A": class_list, "B": class_list, **_B_DOMAIN}
SPLIT = Section(
    "split",
    by="name",
    what="a split",
    variants={
        "all": _B_DOMAIN,
        "random_half": _SEEDED,
        "classes": _EXPLICIT,
        "cifar10_vehicles_animals": _EXPLICIT,
        "cifar100_manmade_natural": {
            "A_superclasses": list_of(text, what="CIFAR-100 superclasses"),
            **_B_DOMAIN,
        },
        "mnist_dissimilar": _SEEDED,
    },
)

_RESNET = {
    "split": one_of(*RESNET_SPLITS, what="a split of a ResNet"),
    # a weights name (IMAGENET1K_V1, DEFAULT) or a path: resolved and read by harness/models/pretrained.py
    "weights": nullable(text),
    "download": Optional(boolean),
    "groups": layer_groups,
}
MODEL = Section(
    "model",
    by="name",
    what="a model",
    variants={
        "convnet": {
            "channels": list_of(integer(low=1), what="integers >= 1 (e.g. [32, 64])"),
            "kernel_size": odd_kernel,
            "pool": nullable(list_of(boolean, what="true/false, one per entry of model.channels")),
            "hidden": nullable(list_of(integer(low=1), what="integers >= 1 (e.g. [128])")),
            "batchnorm": boolean,
            "dropout": number(low=0, below=1),
            "groups": layer_groups,
        },
        "resnet18": _RESNET,
        "resnet34": _RESNET,
        "resnet50": _RESNET,
        "custom": {"net": net, "groups": layer_groups, "head": head},
        "timm": {  # harness/models/timm_models.py
            "arch": text,  # a timm model name (checked against timm's registry by the builder)
            "split": one_of(*TIMM_SPLITS, what="a split of timm's group_matcher"),
            "pretrained": boolean,
            "weights": nullable(text),
            "download": Optional(boolean),
            "drop_rate": Optional(number(low=0, below=1)),
            "groups": layer_groups,
        },
    },
)

# strategy: every strategy has epochs, the BatchNorm policy and the optimizer state on unfreeze.
_EVERY_STRATEGY = {
    "epochs": integer(low=1),
    "bn": one_of(*BN_POLICIES, what="a BatchNorm policy"),
    # absent: the strategy's default (full_unfreeze resets, as fastai's unfreeze; the others keep)
    "optimizer_state": Optional(one_of(*OPTIMIZER_STATE, what="an optimizer-state policy")),
}
STRATEGY = Section(
    "strategy",
    by="name",
    what="a strategy",
    keys=_EVERY_STRATEGY,
    variants={
        "never": {"lr": lr},
        "head_only": {"lr": lr},
        "full_unfreeze": {
            "freeze_epochs": integer(low=0),
            "base_lr": number(above=0),
            "lr_mult": number(low=1),
            "pct_start": number(above=0, high=1),
            "div": number(above=0),
        },
        "freeze_to": {"k": integer(), "lr": lr},  # k against the model's groups: harness/plan/strategies.py
        "gradual": {"every": integer(low=1), "lr": lr},
        "surgical": {"groups": list_of(text, what="layer group names"), "lr": lr},
        # adaptive and partial methods (harness/plan/adaptive.py); their bounds are the papers'
        "lp_ft": {
            "probe_epochs": integer(low=1),
            "patience": integer(low=1),
            "probe_lr": number(above=0),
            "lr": nullable(lr),
        },
        "llrd": {"lr": lr, "gamma": number(above=0.0, high=1.0)},  # one number: the compiler says so
        "l2sp": {"lr": lr, "alpha": number(low=0.0), "beta": number(low=0.0)},
        "bitfit": {"lr": lr},
        "freezeout": {
            "lr": lr,
            "t0": number(low=0.0, below=1.0),
            "scaling": one_of("linear", "cubic", what="a FreezeOut scaling"),
            "scale_lr": boolean,
        },
        "autofreeze": {"lr": lr, "interval": integer(low=1), "percentile": number(above=0.0, below=100.0)},
        "auto_rgn": {"lr": lr, "interval": integer(low=1)},
    },
)

_EVERY_OPTIMIZER = {"weight_decay": number(low=0), "wd_bn_bias": boolean, "fused": boolean}
OPTIM = Section(
    "optim",
    by="name",
    what="an optimizer",
    keys=_EVERY_OPTIMIZER,
    variants={
        "sgd": {"momentum": number(low=0), "nesterov": boolean},
        "adamw": {"betas": list_of(number(low=0, below=1), length=2), "eps": number(above=0)},
    },
)

SCHEDULE = Section(
    "schedule",
    by="name",
    what="a schedule",
    variants={
        "one_cycle": {
            "pct_start": number(above=0, high=1),
            "div": number(above=0),
            "div_final": number(above=0),
            "moms": nullable(list_of(number(low=0, high=1), length=3)),
        },
        "constant": {},
        "step": {"step_size": integer(low=1), "gamma": number(above=0)},
    },
)

LOGGER = Section(
    "logger",
    by="name",
    what="a logger",
    variants={
        "none": {},
        "wandb": {
            "mode": one_of(*WANDB_MODES, what="a wandb mode"),
            "project": text,
            "group": nullable(text),
            "job_type": nullable(text),
            "run_name": nullable(text),
            "tags": list_of(text, what="strings"),
            "dir": text,
        },
    },
)

# transfer: the keys of a treatment (harness/transfer/plan.py reads them); none of them without one.
_TREATMENT = {
    "n": integer(),  # 1 .. the model's layers - 1 (the range given): harness/transfer/plan.py
    # auto: the convergence rule (harness/transfer/plan.py budget); a number; null: the top-level epochs
    "epochs": nullable(auto_or(integer(low=1))),
    "base_epochs": nullable(auto_or(integer(low=1))),
    "patience": integer(low=1),
    "reductions": integer(low=0),
    "max_epochs": integer(low=1),
    "base_seed": nullable(integer(low=0)),
    "bn": one_of(*BN_POLICIES, what="a BatchNorm policy"),
    "plus_lr": nullable(lr),
    "warm_fraction": number(above=0, high=1),
    "cache_dir": text,
}
TRANSFER = Section(
    "transfer",
    by="treatment",
    what="a treatment",
    variants={None: {}, **{t: _TREATMENT for t in TREATMENTS}},
    pick="transfer=yosinski transfer.treatment={choice}",
)

CONFIG = Section(
    "",
    keys={
        "data": DATA,
        "split": SPLIT,
        "model": MODEL,
        "strategy": STRATEGY,
        "optim": OPTIM,
        "schedule": SCHEDULE,
        "logger": LOGGER,
        "transfer": TRANSFER,
        "experiment_name": text,
        "seed": integer(low=0),
        "init_seed": nullable(integer(low=0)),  # the transfer experiment draws one per network
        "half": one_of(None, "A", "B"),
        "epochs": integer(low=1),
        "lr": lr,
        "batch_size": integer(low=1),
        "test_every_epoch": boolean,
        "best_k": integer(low=1),
        "early_stopping": Section(
            "early_stopping",
            {
                "patience": nullable(integer(low=1)),
                "reductions": integer(low=0),
                "factor": number(above=0, below=1),
            },
        ),
        "device": device,
        "deterministic": boolean,
        "threads": auto_or(integer(low=1)),  # auto: the cores shared among the parallel jobs of a sweep
        "progress": boolean,
        "speed": Section("speed", {"precision": precision, "channels_last": boolean, "compile": boolean}),
        "prefix_cache": boolean,
        "resume": boolean,
        # init.from must load: harness/engine/checkpoint.py; init.groups against the model: harness/assemble.py
        "init": Section(
            "init",
            {
                "from": nullable(text),
                "groups": nullable(integer()),
                "base": nullable(one_of("A", "B", what="a half to start from")),
            },
        ),
        "checkpoint": Section("checkpoint", {"save": boolean, "dir": text}),
        "diagnostics": Section(
            "diagnostics", {"weights": boolean, "cka": boolean, "probe_size": integer(low=2)}
        ),
        "paths": Section("paths", {"output_root": text}),
        "trial": Section(
            "trial", {"number": nullable(integer(low=0)), "study": nullable(text), "storage": nullable(text)}
        ),
        "lr_find": Section(
            "lr_find",
            {
                "start_lr": number(above=0),
                "end_lr": number(above=0),
                "num_it": integer(low=2),
                "stop_div": Optional(boolean),
                "keep_ratios": boolean,
            },
        ),
        "search": OWNED,
        "hydra": OWNED,
    },
)

SECTIONS: dict[str, Section] = {k: v for k, v in CONFIG.keys.items() if isinstance(v, Section)}


# --- entry points ---------------------------------------------------------------------------------------


def check_config(cfg: Any, *, strict: bool = True) -> None:
    """Every key of the composed config known and present, every value allowed; else one ConfigError line.

    ``strict=False`` checks the values only: a config the harness generated (a base's, a treatment's) may leave
    keys to their defaults."""
    owned = tuple(k for k, spec in CONFIG.keys.items() if spec is OWNED)
    CONFIG.check(plain(cfg, skip=owned), unknown=strict, missing=strict)


def check_values(section: str, values: Any, *, unknown: bool = False, missing: bool = False) -> dict:
    """The values of one section, checked, as plain data. Keys it lacks are left to its code's defaults and
    keys it does not know are left alone, unless ``missing``/``unknown``. The modules check their section so."""
    values = plain(values)
    SECTIONS[section].check(values, unknown=unknown, missing=missing)
    return values


def unknown_key(full_key: str, parent: Any) -> str | None:
    """The message for a key Hydra could not set (``epoch=3``, ``strategy.k=2`` under ``strategy=never``);
    ``parent`` is the section it was set in. None when the key is outside the schema (search, hydra, deeper)."""
    *path, key = full_key.split(".")
    section = CONFIG
    for part in path:
        section = section.keys.get(part)
        if not isinstance(section, Section):
            return None
    try:
        choice = section.choose(parent) if section.by else None
    except (ConfigError, OmegaConfBaseException, AttributeError):
        return None  # the variant itself is bad: Hydra's own words then
    return section.unknown(key, choice)


def plain(cfg: Any, *, skip: tuple[str, ...] = ()) -> Any:
    """``cfg`` as plain data with its interpolations resolved; a value that cannot be resolved is a ConfigError
    naming its key. The keys in ``skip`` (sections owned elsewhere) are left unread."""
    if not isinstance(cfg, Mapping | DictConfig):
        return cfg
    out = {}
    for key in cfg:
        if key in skip:
            out[key] = None
            continue
        try:
            value = cfg[key]
            out[key] = (
                OmegaConf.to_container(value, resolve=True, throw_on_missing=True)
                if OmegaConf.is_config(value)
                else value
            )
        except OmegaConfBaseException as e:
            where = getattr(e, "full_key", None) or key
            raise ConfigError(f"{where} cannot be read: {checks.one_line(e)}") from None
    return out
