"""Freezing strategies compiled into plans.

A :class:`Plan` is plain data: an ordered list of :class:`Phase` (which groups train, for how many
epochs, at which peak lr per group, under which schedule), plus the BatchNorm policy for frozen groups
and what happens to optimizer state when groups unfreeze. The training loop only executes plans; every
strategy's meaning lives here, one compiler function per ``conf/strategy/<name>.yaml``.

fastai vocabulary: ``freeze_to(k)`` freezes the first k groups (k < 0 counts from the end);
``freeze()`` is ``freeze_to(-1)``; ``unfreeze()`` is ``freeze_to(0)``.

Adaptive strategies (``lp_ft``, ``l2sp``, ``freezeout``, ``autofreeze``, ``auto_rgn``) are plans too: their
phases say what trains at the start, and ``Plan.adaptive`` names the rule that decides during training and its
settings (plain data; the rules are :mod:`harness.plan.adaptive`, their controllers
:mod:`harness.engine.adaptive`). A phase's ``partial`` says which parameters train inside the groups it freezes
(``bias``: BitFit).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from harness.config import checks, schema
from harness.console import WIDTH, plural
from harness.errors import ConfigError
from harness.plan import adaptive as rules
from harness.plan import lr as lrs
from harness.plan import schedules

PLAN_VERSION = 1
# fastai's fine_tune starts its unfrozen phase with a fresh optimizer: ``unfreeze()`` is ``freeze_to(0)``,
# which calls ``opt.clear_state()``. The other strategies keep the moments of params already training.
DEFAULT_OPTIMIZER_STATE = {"full_unfreeze": "reset"}
PARTIAL = ("bias",)  # what may train inside the groups a phase freezes (BitFit: biases)
# Strategies whose method is defined relative to pretrained weights: without a pretrained start they would run,
# but as another method under their name (assemble_run refuses them then).
NEEDS_PRETRAINED = ("lp_ft", "l2sp")


@dataclass
class Phase:
    name: str
    epochs: int
    trainable: list[str]  # names of the groups that train in this phase
    lr: list[
        float
    ]  # peak lr of every group (a frozen group's rate only reaches its norm params under bn=train)
    schedule: dict  # schedules.check()-ed config: {"name": "one_cycle", "pct_start": ...}
    # inside the groups this phase freezes, these parameters still train: None, or "bias" (BitFit)
    partial: str | None = None


@dataclass
class Plan:
    strategy: str
    groups: list[str]
    phases: list[Phase]
    bn: str = "train"  # policy for norm layers inside frozen groups
    optimizer_state: str = "keep"  # on unfreeze: keep the state of params already training, or reset all
    version: int = PLAN_VERSION
    notes: list[str] = field(default_factory=list)
    # the rule that decides during training and its settings ({"rule": "autofreeze", "interval": 10, ...}),
    # None for a fixed plan (harness/engine/adaptive.py)
    adaptive: dict | None = None

    @property
    def total_epochs(self) -> int:
        """The epochs of the plan as compiled; an adaptive rule may end a phase earlier (lp_ft's probe)."""
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

    def phase_at(self, epoch: int, lengths: list[int] | None = None) -> tuple[int, int]:
        """(phase index, epoch within that phase) of a 0-based global epoch; ``lengths``: the epochs each
        phase really ran (an adaptive rule may end one early), else the plan's."""
        for i, length in enumerate(lengths or [p.epochs for p in self.phases]):
            if epoch < length:
                return i, epoch
            epoch -= length
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
                inside = " (their biases and norm layers train)" if p.partial == "bias" else ""
                lines.append(f"    frozen [{', '.join(frozen)}]{inside}")
        if self.adaptive:
            settings = ", ".join(f"{k} {v}" for k, v in self.adaptive.items() if k not in ("rule", "ends"))
            lines.append(f"  adaptive: {self.adaptive['rule']} ({settings}), decided during training")
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


# --- partial and adaptive fine-tuning (the rules: harness/plan/adaptive.py) ------------------------------


def _one_rate(cfg: Mapping, key: str, name: str) -> float:
    rate = lrs.parse_lr(cfg.get(key), f"strategy.{key}")
    if not isinstance(rate, float):
        raise ConfigError(
            f"strategy.{key} must be one number for {name} (it spreads the rate over the groups itself)"
        )
    return rate


def _lp_ft(cfg, groups, schedule):
    """Kumar et al. 2022: a linear probe (the head alone, a constant ``probe_lr``) until validation accuracy
    has not improved for ``patience`` epochs (at most ``probe_epochs``), the best probe's weights kept; then
    every group fine-tunes from that head for ``epochs`` at ``lr`` (null: probe_lr / 10, a small rate)."""
    probe_lr = _one_rate(cfg, "probe_lr", "lp_ft")
    ft_lr = probe_lr / 10 if cfg.get("lr") is None else lrs.parse_lr(cfg["lr"], "strategy.lr")
    patience = checks.integer(cfg.get("patience"), "strategy.patience", low=1)
    probe = Phase(
        "probe",
        cfg["probe_epochs"],
        freeze(groups),
        lrs.spread(probe_lr, len(groups)),
        schedules.check({"name": "constant"}),
    )
    tune = Phase(
        "finetune",
        cfg["epochs"],
        list(groups),
        lrs.spread(ft_lr, len(groups), "strategy.lr"),
        schedule,
    )
    return [probe, tune], {"rule": "lp_ft", "phase": 0, "patience": patience}


def _llrd(cfg, groups, schedule):
    """Layer-wise lr decay: group i of L gets ``lr * gamma ** (L - 1 - i)`` (timm's default gamma 0.75)."""
    gamma = checks.number(cfg.get("gamma"), "strategy.gamma", above=0.0, high=1.0)
    rates = rules.llrd_rates(_one_rate(cfg, "lr", "llrd"), len(groups), gamma)
    return [Phase("llrd", cfg["epochs"], list(groups), rates, schedule)]


def _l2sp(cfg, groups, schedule):
    """Li et al. 2018: every group trains; the loss gets alpha/2 ||w - w0||^2 on the groups copied from the
    pretrained start and beta/2 ||w||^2 on the others (the new head), in place of weight decay."""
    alpha = checks.number(cfg.get("alpha"), "strategy.alpha", low=0.0)
    beta = checks.number(cfg.get("beta"), "strategy.beta", low=0.0)
    phases = _single_phase("l2sp", list(groups), cfg, groups, schedule)
    return phases, {"rule": "l2sp", "alpha": alpha, "beta": beta}


def _bitfit(cfg, groups, schedule):
    """Ben Zaken et al. 2022: only biases, norm-layer parameters and the head train."""
    if cfg.get("bn", "train") != "train":
        raise ConfigError(
            f"strategy.bn={cfg.get('bn')!r}: bitfit trains the norm-layer parameters by definition; use bn=train"
        )
    (phase,) = _single_phase("bitfit", freeze(groups), cfg, groups, schedule)
    phase.partial = "bias"
    return [phase]


def _freezeout(cfg, groups, schedule):
    """Brock et al. 2017: group i's lr anneals by cosine to 0 at its end time t_i (a fraction of the run),
    then the group is frozen and leaves the backward pass; the head trains to the end."""
    t0 = checks.number(cfg.get("t0"), "strategy.t0", low=0.0, below=1.0)
    scaling = checks.one_of(
        cfg.get("scaling", "linear"), "strategy.scaling", rules.SCALINGS, what="a FreezeOut scaling"
    )
    scale_lr = checks.boolean(cfg.get("scale_lr", False), "strategy.scale_lr")
    ends = rules.freezeout_ends(len(groups), t0, scaling)
    rates = lrs.spread(lrs.parse_lr(cfg["lr"], "strategy.lr"), len(groups), "strategy.lr")
    # The per-group cosine replaces the run's schedule (schedule=... does not apply to this strategy).
    own = schedules.check({"name": "freezeout", "ends": ends, "scale_lr": scale_lr})
    phase = Phase("freezeout", cfg["epochs"], list(groups), rates, own)
    return [phase], {"rule": "freezeout", "t0": t0, "scaling": scaling, "scale_lr": scale_lr}


def _autofreeze(cfg, groups, schedule):
    """Liu et al. 2021: every ``interval`` steps, freeze the input-side groups whose gradient-norm change is
    below the ``percentile``-th percentile; a frozen prefix runs through the prefix cache."""
    interval = checks.integer(cfg.get("interval"), "strategy.interval", low=1)
    p = checks.number(cfg.get("percentile"), "strategy.percentile", above=0.0, below=100.0)
    freeze(groups)  # a one-group model has nothing to freeze: the one-group error
    phases = _single_phase("autofreeze", list(groups), cfg, groups, schedule)
    return phases, {"rule": "autofreeze", "interval": interval, "percentile": p}


def _auto_rgn(cfg, groups, schedule):
    """Lee et al. 2023: each group's lr is scaled by its relative gradient norm ||g|| / ||w||, divided by the
    largest group's, recomputed every ``interval`` steps from that step's gradients."""
    interval = checks.integer(cfg.get("interval"), "strategy.interval", low=1)
    phases = _single_phase("auto_rgn", list(groups), cfg, groups, schedule)
    return phases, {"rule": "auto_rgn", "interval": interval}


COMPILERS = {
    "never": _never,
    "head_only": _head_only,
    "full_unfreeze": _full_unfreeze,
    "freeze_to": _freeze_to,
    "gradual": _gradual,
    "surgical": _surgical,
    "lp_ft": _lp_ft,
    "llrd": _llrd,
    "l2sp": _l2sp,
    "bitfit": _bitfit,
    "freezeout": _freezeout,
    "autofreeze": _autofreeze,
    "auto_rgn": _auto_rgn,
}


def compile_plan(strategy_cfg: Mapping, schedule_cfg: Mapping, groups: list[str]) -> Plan:
    """The plan for ``strategy_cfg`` on a model with ``groups``; all checks happen here, before training."""
    # Every key of the strategy, present and allowed: the compilers below read them as given.
    strategy_cfg = schema.check_values("strategy", strategy_cfg, unknown=True, missing=True)
    name, bn = strategy_cfg["name"], strategy_cfg["bn"]
    state = strategy_cfg.get("optimizer_state", DEFAULT_OPTIMIZER_STATE.get(name, "keep"))
    compiled = COMPILERS[name](strategy_cfg, list(groups), schedules.check(schedule_cfg))
    phases, adaptive = compiled if isinstance(compiled, tuple) else (compiled, None)
    notes = []
    if len(phases) > 1:
        notes.append(
            "optimizer state is kept across phases: params already training keep their moments, newly unfrozen params start fresh"
            if state == "keep"
            else "the optimizer is rebuilt at every phase: all moments reset"
        )
    if name == "l2sp":
        notes.append("weight decay is off: the L2-SP penalty takes its place")
    if name == "freezeout":
        notes.append("each group's cosine to 0 replaces the run's schedule")
    return Plan(name, list(groups), phases, bn=bn, optimizer_state=state, notes=notes, adaptive=adaptive)
