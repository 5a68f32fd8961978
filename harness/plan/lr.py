"""Discriminative learning rates: fastai's ``slice`` semantics, spread over layer groups.

Config forms (``lr:`` in a strategy):
- ``1e-3``                  every group gets 1e-3;
- ``{hi: 1e-3}``            fastai ``slice(1e-3)``: the last group 1e-3, every other group 1e-4;
- ``{lo: 1e-5, hi: 1e-3}``  fastai ``slice(1e-5, 1e-3)``: geometric spread, group i of n gets
                            ``lo * (hi/lo) ** (i/(n-1))`` (one group: ``hi``);
- ``[1e-4, 1e-3, 1e-2]``    one value per group, taken as given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.config import checks
from harness.errors import ConfigError


@dataclass(frozen=True)
class LrSlice:
    hi: float
    lo: float | None = None

    def __str__(self) -> str:
        return f"slice({self.hi:g})" if self.lo is None else f"slice({self.lo:g}, {self.hi:g})"


LrSpec = float | LrSlice | tuple[float, ...]


def parse_lr(value, where: str = "lr") -> LrSpec:
    """Turn the config value into a scalar, an :class:`LrSlice` or a per-group tuple; checks values."""
    if isinstance(value, LrSlice | tuple):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - {"lo", "hi"}
        if unknown or "hi" not in value:
            raise ConfigError(
                f"{where} must be a number, {{hi: ...}} or {{lo: ..., hi: ...}}; got keys {sorted(value)}"
            )
        hi = checks.number(value["hi"], f"{where}.hi", above=0)
        if value.get("lo") is None:
            return LrSlice(hi)
        lo = checks.number(value["lo"], f"{where}.lo", above=0)
        if lo > hi:
            raise ConfigError(
                f"{where}: lo={lo:g} is greater than hi={hi:g}; a slice goes from low (input side) to high (head)"
            )
        return LrSlice(hi, lo)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(checks.number(v, f"{where}[{i}]", above=0) for i, v in enumerate(value))
    return checks.number(value, where, above=0)


def spread(lr: LrSpec, n_groups: int, where: str = "lr") -> list[float]:
    """The learning rate of each of ``n_groups`` groups, input side first."""
    if isinstance(lr, tuple):
        if len(lr) != n_groups:
            raise ConfigError(
                f"{where} lists {len(lr)} learning rates but the model has {n_groups} layer groups"
            )
        return list(lr)
    if isinstance(lr, LrSlice):
        if lr.lo is None:
            return [lr.hi / 10] * (n_groups - 1) + [lr.hi]
        if n_groups == 1:
            return [lr.hi]
        return [lr.lo * (lr.hi / lr.lo) ** (i / (n_groups - 1)) for i in range(n_groups)]
    return [float(lr)] * n_groups
