"""Learning-rate and momentum schedules as pure functions of training progress ``pos`` in [0, 1].

Each schedule returns a *multiplier* of a group's peak rate, so one schedule applied to every
param group keeps the ratios of a discriminative slice (fastai's one-cycle does the same).
``pos`` is ``step / total_steps`` of the phase, taken before the step (the first batch sees pos=0).

``freezeout`` is a schedule with one end time per group (Brock et al. 2017), made by ``strategy=freezeout``
only: :func:`group_factors` gives every group its own multiplier.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from harness.config import schema
from harness.errors import ConfigError
from harness.plan.adaptive import freezeout_factor

PER_GROUP = ("freezeout",)  # schedules a strategy makes for itself, one multiplier per group


def cos_between(start: float, end: float, pos: float) -> float:
    """Cosine interpolation from ``start`` (pos=0) to ``end`` (pos=1)."""
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def _two_part(pos: float, pct_start: float, start: float, middle: float, end: float) -> float:
    if pos < pct_start:
        return cos_between(start, middle, pos / pct_start)
    return cos_between(middle, end, (pos - pct_start) / (1 - pct_start)) if pct_start < 1 else middle


def one_cycle_lr(pos: float, *, pct_start: float = 0.25, div: float = 25.0, div_final: float = 1e5) -> float:
    """fastai ``fit_one_cycle``: warm up lr/div -> lr over pct_start, anneal to lr/div_final."""
    return _two_part(pos, pct_start, 1 / div, 1.0, 1 / div_final)


def one_cycle_momentum(pos: float, *, pct_start: float = 0.25, moms=(0.95, 0.85, 0.95)) -> float:
    return _two_part(pos, pct_start, *moms)


def step_lr(epoch: int, *, step_size: int, gamma: float = 0.1) -> float:
    """The paper's step decay: multiply by ``gamma`` every ``step_size`` epochs (epoch counted from 0)."""
    return gamma ** (epoch // step_size)


def check(schedule: Mapping) -> dict:
    """The schedule config checked (:mod:`harness.config.schema`) and as a plain dict. A per-group schedule
    (freezeout's) is made by its strategy, never chosen in the config."""
    sched = dict(schedule)
    name = sched.get("name")
    if name in PER_GROUP:
        if sched.get("ends") is None:
            raise ConfigError(
                f"schedule.name={name!r} is made by strategy={name} itself; use strategy={name}"
            )
        return sched
    return schema.check_values("schedule", schedule)


def lr_factor(schedule: Mapping, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak lr at ``step`` (0-based) of a phase of ``total_steps`` steps."""
    name = schedule["name"]
    if name == "constant":
        return 1.0
    if name == "step":
        return step_lr(
            step // steps_per_epoch, step_size=int(schedule["step_size"]), gamma=float(schedule["gamma"])
        )
    return one_cycle_lr(
        step / total_steps,
        pct_start=float(schedule.get("pct_start", 0.25)),
        div=float(schedule.get("div", 25.0)),
        div_final=float(schedule.get("div_final", 1e5)),
    )


def group_factors(
    schedule: Mapping, step: int, total_steps: int, steps_per_epoch: int, n_groups: int
) -> list[float]:
    """Multiplier of each group's peak lr at ``step``: the schedule's one factor for every group, or under
    ``freezeout`` each group's own cosine to 0 at its end time."""
    if schedule["name"] == "freezeout":
        pos = step / total_steps
        return [freezeout_factor(pos, end, bool(schedule.get("scale_lr"))) for end in schedule["ends"]]
    return [lr_factor(schedule, step, total_steps, steps_per_epoch)] * n_groups


def momentum(schedule: Mapping, step: int, total_steps: int) -> float | None:
    """The momentum (SGD) or beta1 (Adam) at ``step``; None when the schedule leaves it alone."""
    if schedule["name"] != "one_cycle" or schedule.get("moms") is None:
        return None
    return one_cycle_momentum(
        step / total_steps, pct_start=float(schedule.get("pct_start", 0.25)), moms=tuple(schedule["moms"])
    )
