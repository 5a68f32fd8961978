"""The search space: Hydra's sweep syntax turned into Optuna distributions, and a trial's values back into
Hydra overrides for its job.

Syntax (the same as Hydra's own sweeps, so a search preset reads like a multirun command line):

==================================  ============================================================
``interval(a, b)``                  a float in [a, b]
``tag(log, interval(a, b))``        a float in [a, b], sampled on a log scale (a > 0)
``tag(int, interval(a, b))``        an integer in [a, b] (both ends included, as in Optuna)
``tag(int, log, interval(a, b))``   an integer in [a, b] on a log scale
``choice(x, y, z)`` or ``x,y,z``    one of the values (categorical; group names work: ``strategy``)
``range(start, stop[, step])``      ``start, start+step, ...`` with ``stop`` EXCLUDED, as Python's range;
                                    an integer (or a stepped float) distribution, ``tag(log, range(1, 65))``
                                    for a log scale (step 1 only)
a plain value                       fixes the key for every trial (``strategy: full_unfreeze``)
==================================  ============================================================

A conditional space (a parameter that exists only for some values of another) is the job of a
``custom_search_space`` function ``(trial, cfg) -> dict | None``; :func:`conditional_params` is one that
reads the preset's ``search.conditional`` mapping.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from harness.errors import ConfigError

_PRIMITIVE = (str, int, float, bool)


@dataclass(frozen=True)
class Param:
    """One searched key: its Optuna distribution and how to write a value of it as an override."""

    name: (
        str  # the override key (``strategy.base_lr``, ``strategy``, ``+model.dropout``); also the Optuna name
    )
    distribution: BaseDistribution
    text: str  # the sweep as written, for messages
    choice_strings: tuple[str, ...] | None = None  # override form of each categorical choice

    def override(self, value: Any) -> str:
        return f"{self.name}={self.format(value)}"

    def format(self, value: Any) -> str:
        if self.choice_strings is not None:
            choices = self.distribution.choices
            # `1 == True` in Python: match the type too, so choice(1, true) keeps both apart.
            for choice, text in zip(choices, self.choice_strings, strict=True):
                if type(choice) is type(value) and choice == value:
                    return text
            raise ValueError(f"{value!r} is not a choice of {self.name}={self.text}")
        return format_value(value)

    @property
    def values(self) -> list | None:
        """Every value of a finite distribution (categorical, integer, stepped float); None if continuous."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return list(d.choices)
        if isinstance(d, IntDistribution):
            return list(range(d.low, d.high + 1, d.step)) if not d.log else list(range(d.low, d.high + 1))
        if isinstance(d, FloatDistribution) and d.step is not None:
            n = int(round((d.high - d.low) / d.step))
            return [d.low + i * d.step for i in range(n + 1)]
        return None


def format_value(value: Any) -> str:
    """A value as Hydra's override parser reads it back unchanged."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} cannot be passed as an override")
        return repr(value)  # shortest text that round-trips: 0.001, 1e-05
    return str(value)


_parser = OverridesParser.create()


def parse_override(line: str) -> Override:
    try:
        return _parser.parse_overrides([line])[0]
    except HydraException as e:
        raise ConfigError(f"search space: cannot parse '{line}': {str(e).splitlines()[-1]}") from None


def param_from_override(override: Override) -> Param:
    """The :class:`Param` of a sweep override (``key=interval(...)``, ``key=a,b``, ...)."""
    name, sweep = override.get_key_element(), override.value()
    text = override.input_line.split("=", 1)[1] if override.input_line else str(sweep)
    where = f"search space {name}={text}"
    tags = set(sweep.tags)
    if isinstance(sweep, IntervalSweep):
        _check_tags(tags, {"log", "int"}, where)
        low, high, log = sweep.start, sweep.end, "log" in tags
        if "int" in tags:
            if low != int(low) or high != int(high):
                raise ConfigError(f"{where}: tag(int, ...) needs whole-number bounds")
            low, high = int(low), int(high)
        if not low < high:
            raise ConfigError(f"{where}: the interval is empty (start must be below end)")
        if log and low <= 0:
            raise ConfigError(f"{where}: a log scale needs a positive start")
        dist = IntDistribution(low, high, log=log) if "int" in tags else FloatDistribution(low, high, log=log)
        return Param(name, dist, text)
    if isinstance(sweep, RangeSweep):
        _check_tags(tags, {"log"}, where)
        values = list(override.sweep_iterator())
        if not values:
            raise ConfigError(f"{where}: the range is empty (its stop is excluded)")
        step = abs(sweep.step)
        log = "log" in tags
        if log and (step != 1 or min(values) <= 0):
            raise ConfigError(f"{where}: tag(log, range(...)) needs step 1 and a positive start")
        if all(isinstance(v, int) for v in values):
            return Param(name, IntDistribution(min(values), max(values), step=step, log=log), text)
        return Param(name, FloatDistribution(float(min(values)), float(max(values)), step=float(step)), text)
    if isinstance(sweep, ChoiceSweep):
        _check_tags(tags, set(), where)
        values = list(override.sweep_iterator())
        # Hydra's text of each choice keeps strings escaped ('with\ space'); numbers and booleans are
        # written as format_value writes them (Hydra would write True, not true).
        strings = tuple(
            s if isinstance(v, str) else format_value(v) if v is None or isinstance(v, _PRIMITIVE) else s
            for v, s in zip(values, override.sweep_string_iterator(), strict=True)
        )
        # Optuna stores None/bool/int/float/str choices; a list or dict choice is kept as its override text.
        choices = tuple(
            v if v is None or isinstance(v, _PRIMITIVE) else s for v, s in zip(values, strings, strict=True)
        )
        return Param(name, CategoricalDistribution(choices), text, choice_strings=strings)
    raise ConfigError(f"{where}: not a sweep Optuna can search")


def _check_tags(tags: set[str], allowed: set[str], where: str) -> None:
    unknown = tags - allowed
    if unknown:
        allowed_text = ", ".join(sorted(allowed)) or "none"
        raise ConfigError(
            f"{where}: tag(s) {', '.join(sorted(unknown))} not understood here; allowed: {allowed_text}"
        )


def parse_entry(name: str, value: Any) -> Param | str:
    """One ``search.params`` entry: a :class:`Param` for a sweep, else the fixed override line."""
    if not isinstance(value, str):
        return f"{name}={_format_plain(value)}"
    override = parse_override(f"{name}={value}")
    if not override.is_sweep_override():
        return override.input_line
    return param_from_override(override)


def _format_plain(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_format_plain(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_format_plain(v) for v in value) + "]"
    return format_value(value)


def flatten(params: Mapping, prefix: str = "") -> dict[str, Any]:
    """``{strategy: {k: ...}}`` (what ``search.params.strategy.k=...`` on the command line makes) ->
    ``{strategy.k: ...}``. A null value takes the key out of the space (``search.params.lr=null``)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return {name: value for name, value in flat.items() if value is not None}


CustomSpace = Callable[[Any, Any], Mapping[str, str] | None]


@dataclass
class SearchSpace:
    params: dict[str, Param] = field(default_factory=dict)  # searched keys, in suggestion order
    fixed: list[str] = field(default_factory=list)  # override lines every trial gets (from search.params)
    custom: CustomSpace | None = None
    custom_name: str | None = None

    @classmethod
    def build(
        cls, params: Mapping | None, arguments: Sequence[str] = (), custom_search_space: str | None = None
    ) -> tuple[SearchSpace, list[str]]:
        """The space from ``search.params`` and the command line, plus the overrides every job gets.

        A sweep on the command line (``lr=interval(1e-4,1e-2)``, ``strategy=never,head_only``) adds or
        replaces that key's range; a plain value on the command line fixes a key the preset searches.
        """
        space = cls()
        for name, value in flatten(params or {}).items():
            entry = parse_entry(name, value)
            if isinstance(entry, Param):
                space.params[name] = entry
            else:
                space.fixed.append(entry)
        passthrough: list[str] = []
        for line in arguments:
            override = parse_override(line)
            key = override.get_key_element()
            if override.is_sweep_override():
                space.params[key] = param_from_override(override)
            else:
                space.params.pop(key, None)
                passthrough.append(line)
        if custom_search_space:
            space.custom, space.custom_name = load_function(custom_search_space), custom_search_space
        if not space.params and space.custom is None:
            raise ConfigError(
                "the search space is empty: give search.params (or a sweep on the command line)"
            )
        return space, space.fixed + passthrough

    def suggest(self, trial, cfg=None) -> list[str]:
        """Suggest every parameter for ``trial`` (an ``optuna.Trial``) and return its overrides."""
        overrides = [
            param.override(suggest(trial, name, param.distribution)) for name, param in self.params.items()
        ]
        if self.custom is not None:
            # The function returns overrides for what it suggested; anything it suggested and did not return
            # is passed on as ``name=value``.
            extra = dict(self.custom(trial, cfg) or {})
            for name, value in trial.params.items():
                if name not in self.params and name not in extra:
                    extra[name] = format_value(value)
            overrides += [f"{k}={v}" for k, v in extra.items()]
        return overrides

    @property
    def size(self) -> int | None:
        """How many distinct points the space has; None when infinite or conditional (a custom function)."""
        if self.custom is not None:
            return None
        size = 1
        for param in self.params.values():
            values = param.values
            if values is None:
                return None
            size *= len(values)
        return size

    def grid(self) -> dict[str, list]:
        """Every value of every parameter, for Optuna's GridSampler (a finite space only)."""
        grid = {}
        for name, param in self.params.items():
            values = param.values
            if values is None or self.custom is not None:
                raise ConfigError(
                    f"search.sampler.name=grid needs a finite space without a custom_search_space; "
                    f"'{name}={param.text}' is continuous: use choice(...) or range(...)"
                )
            grid[name] = values
        return grid

    def describe(self) -> str:
        lines = [f"  {name} = {p.text}" for name, p in self.params.items()]
        lines += [f"  {line}  (fixed)" for line in self.fixed]
        if self.custom_name:
            lines.append(f"  + {self.custom_name}(trial, cfg)")
        return "\n".join(lines)


def load_function(path: str) -> Callable:
    module_name, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(f"search.custom_search_space='{path}' is not an importable function: {e}") from None


def conditional_params(trial, cfg) -> dict[str, str]:
    """A ``custom_search_space`` reading ``search.conditional``: ``{param: {value: {key: sweep}}}``.

    After the main parameters are suggested, each entry whose ``param`` took ``value`` adds its keys, e.g.
    ``strategy.k`` only when ``strategy=freeze_to``. Entries are visited in order, so a later entry may
    depend on a parameter an earlier one added.
    """
    conditional = (cfg.get("search") or {}).get("conditional") or {}
    overrides: dict[str, str] = {}
    for name, branches in conditional.items():
        if name not in trial.params:
            continue
        taken = trial.params[name]
        for value, keys in branches.items():
            if str(value) != format_value(taken) and str(value) != str(taken):
                continue
            for key, sweep in flatten(keys).items():
                entry = parse_entry(key, sweep)
                if isinstance(entry, Param):
                    overrides[key] = entry.format(suggest(trial, key, entry.distribution))
                else:
                    overrides[key] = entry.split("=", 1)[1]
    return overrides


def suggest(trial, name: str, distribution: BaseDistribution) -> Any:
    """Suggest ``name`` from ``distribution`` through the public ``Trial.suggest_*`` API.

    A trial that already holds ``name`` (a retried or enqueued trial) gets its value back unchanged.
    """
    d = distribution
    if isinstance(d, FloatDistribution):
        return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_categorical(name, d.choices)
