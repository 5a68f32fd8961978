"""Freezing strategies compiled into plans.

A :class:`Plan` is plain data: an ordered list of :class:`Phase` (which groups train, for how many
epochs, at which peak lr per group, under which schedule), plus the BatchNorm policy for frozen groups
and what happens to optimizer state when groups unfreeze. The training loop only executes plans; every
strategy's meaning lives here, one compiler function per ``conf/strategy/<name>.yaml``.

fastai vocabulary: ``freeze_to(k)`` freezes the first k groups (k < 0 counts from the end);
``freeze()`` is ``freeze_to(-1)``; ``unfreeze()`` is ``freeze_to(0)``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from harness.config import schema
from harness.console import WIDTH, plural
from harness.errors import ConfigError
from harness.plan import lr as lrs
from harness.plan import schedules

PLAN_VERSION = 1
# fastai's fine_tune starts its unfrozen phase with a fresh optimizer: ``unfreeze()`` is ``freeze_to(0)``,
# which calls ``opt.clear_state()``. The other strategies keep the moments of params already training.
DEFAULT_OPTIMIZER_STATE = {"full_unfreeze": "reset"}


@dataclass
class Phase:
    name: str
    epochs: int
    trainable: list[str]  # names of the groups that train in this phase
    lr: list[
        float
    ]  # peak lr of every group (a frozen group's rate only reaches its norm params under bn=train)
    schedule: dict  # schedules.check()-ed config: {"name": "one_cycle", "pct_start": ...}


@dataclass
class Plan:
    strategy: str
    groups: list[str]
    phases: list[Phase]
    bn: str = "train"  # policy for norm layers inside frozen groups
    optimizer_state: str = "keep"  # on unfreeze: keep the state of params already training, or reset all
    version: int = PLAN_VERSION
    notes: list[str] = field(default_factory=list)

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> Plan:
        if data.get("version") != PLAN_VERSION:
            raise ConfigError(
                f"plan version {data.get('version')!r} is not supported (expected {PLAN_VERSION})"
            )
        phases = [Phase(**p) for p in data["phases"]]
        return cls(**{**data, "phases": phases})

    def phase_at(self, epoch: int) -> tuple[int, int]:
        """(phase index, epoch within that phase) of a 0-based global epoch."""
        for i, phase in enumerate(self.phases):
            if epoch < phase.epochs:
                return i, epoch
            epoch -= phase.epochs
        raise IndexError("epoch beyond the plan")

    def describe(self) -> str:
        """The plan as printed before training, wrapped at 80 columns."""
        lines = [
            f"plan: {self.strategy}, {plural(self.total_epochs, 'epoch')}; norm layers of frozen groups: {self.bn}"
        ]
        for i, p in enumerate(self.phases):
            frozen = [g for g in self.groups if g not in p.trainable]
            lines.append(
                f"  phase {i + 1}/{len(self.phases)} '{p.name}': {plural(p.epochs, 'epoch')}, {p.schedule['name']}"
            )
            lines.append(f"    train [{', '.join(p.trainable)}]")
            if frozen:
                lines.append(f"    frozen [{', '.join(frozen)}]")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(textwrap.fill(line, WIDTH, subsequent_indent="      ") for line in lines)


# --- fastai's freeze vocabulary -------------------------------------------------------------------


def freeze_to(groups: list[str], k: int) -> list[str]:
    """The groups that train after fastai's ``freeze_to(k)``: all but the first k (k < 0 from the end)."""
    n = len(groups)
    if not -n < k < n:
        raise ConfigError(
            f"strategy.k={k} is out of range for a model with {n} layer groups; allowed: {-(n - 1)} .. {n - 1}"
        )
    return list(groups[k:])


def freeze(groups: list[str]) -> list[str]:
    if len(groups) < 2:
        raise ConfigError(
            "cannot freeze a model with one layer group: nothing would train (give model.groups a split)"
        )
    return freeze_to(groups, -1)


# --- one compiler per strategy ----------------------------------------------------------------------
# Each gets its config already checked against the schema (types and ranges); what is checked here needs the
# model's groups.


def _single_phase(
    name: str, trainable: list[str], cfg: Mapping, groups: list[str], schedule: dict
) -> list[Phase]:
    rates = lrs.spread(lrs.parse_lr(cfg["lr"], "strategy.lr"), len(groups), "strategy.lr")
    return [Phase(name, cfg["epochs"], trainable, rates, schedule)]


def _never(cfg, groups, schedule):
    return _single_phase("all", list(groups), cfg, groups, schedule)


def _head_only(cfg, groups, schedule):
    return _single_phase("head", freeze(groups), cfg, groups, schedule)


def _freeze_to(cfg, groups, schedule):
    k = cfg["k"]
    if k != 0 and len(groups) < 2:
        freeze(groups)  # raises the one-group error
    return _single_phase(f"freeze_to({k})", freeze_to(groups, k), cfg, groups, schedule)


def _surgical(cfg, groups, schedule):
    chosen = list(cfg["groups"])
    if not chosen:
        raise ConfigError(
            "strategy.groups is empty; surgical fine-tuning needs the names of the groups to train"
        )
    unknown = [g for g in chosen if g not in groups]
    if unknown:
        raise ConfigError(
            f"strategy.groups names unknown layer groups {unknown}; groups of this model: {', '.join(groups)}"
        )
    trainable = [g for g in groups if g in chosen]  # keep model order
    return _single_phase("surgical", trainable, cfg, groups, schedule)


def _full_unfreeze(cfg, groups, schedule):
    """fastai ``fine_tune``: one-cycle on the head at slice(base_lr) with pct_start=0.99, then
    ``base_lr /= 2``, unfreeze, one-cycle at slice(base_lr/lr_mult, base_lr), pct_start, div."""
    base_lr, lr_mult = float(cfg["base_lr"]), float(cfg["lr_mult"])
    one_cycle = (
        {**schedule, "name": "one_cycle"} if schedule["name"] == "one_cycle" else {"name": "one_cycle"}
    )
    phases = []
    freeze_epochs = cfg["freeze_epochs"]
    if freeze_epochs:
        head_rates = lrs.spread(lrs.LrSlice(base_lr), len(groups))
        phases.append(
            Phase(
                "frozen",
                freeze_epochs,
                freeze(groups),
                head_rates,
                schedules.check({**one_cycle, "pct_start": 0.99}),
            )
        )
    base_lr /= 2
    rates = lrs.spread(lrs.LrSlice(base_lr, base_lr / lr_mult), len(groups))
    unfrozen = schedules.check({**one_cycle, "pct_start": float(cfg["pct_start"]), "div": float(cfg["div"])})
    phases.append(Phase("unfrozen", cfg["epochs"], list(groups), rates, unfrozen))
    return phases


def _gradual(cfg, groups, schedule):
    """ULMFiT: train the head, then unfreeze one more group from the top every ``every`` epochs;
    the last phase (everything unfrozen) runs ``epochs`` epochs."""
    every = cfg["every"]
    rates = lrs.spread(lrs.parse_lr(cfg["lr"], "strategy.lr"), len(groups), "strategy.lr")
    freeze(groups)
    phases = [Phase(f"top{k}", every, groups[-k:], rates, schedule) for k in range(1, len(groups))]
    phases.append(Phase("all", cfg["epochs"], list(groups), rates, schedule))
    return phases


COMPILERS = {
    "never": _never,
    "head_only": _head_only,
    "full_unfreeze": _full_unfreeze,
    "freeze_to": _freeze_to,
    "gradual": _gradual,
    "surgical": _surgical,
}


def compile_plan(strategy_cfg: Mapping, schedule_cfg: Mapping, groups: list[str]) -> Plan:
    """The plan for ``strategy_cfg`` on a model with ``groups``; all checks happen here, before training."""
    # Every key of the strategy, present and allowed: the compilers below read them as given.
    strategy_cfg = schema.check_values("strategy", strategy_cfg, unknown=True, missing=True)
    name, bn = strategy_cfg["name"], strategy_cfg["bn"]
    state = strategy_cfg.get("optimizer_state", DEFAULT_OPTIMIZER_STATE.get(name, "keep"))
    phases = COMPILERS[name](strategy_cfg, list(groups), schedules.check(schedule_cfg))
    notes = []
    if len(phases) > 1:
        notes.append(
            "optimizer state is kept across phases: params already training keep their moments, newly unfrozen params start fresh"
            if state == "keep"
            else "the optimizer is rebuilt at every phase: all moments reset"
        )
    return Plan(name, list(groups), phases, bn=bn, optimizer_state=state, notes=notes)
