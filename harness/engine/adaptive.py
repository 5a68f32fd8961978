"""Controllers: what an adaptive strategy decides while a run trains, and the state it keeps for that.

The loop (:mod:`harness.engine.loop`) calls a run's controller at fixed points and knows nothing of the rules:

| call | when | who uses it |
|---|---|---|
| ``on_phase_start(run, index, first)`` | entering a phase (also on resume) | FreezeOut (groups with t_i = 0) |
| ``on_trainable(run)`` | the trainable parameters were set | AutoFreeze, Auto-RGN (which tensor is whose) |
| ``after_backward(run)`` | gradients are in ``.grad``, before the step | L2-SP (penalty), AutoFreeze, Auto-RGN |
| ``after_step(run, epoch, step, phase_steps)`` | after ``optimizer.step()``; True: groups froze | FreezeOut, AutoFreeze |
| ``end_epoch(run, epoch, entry)`` | the epoch is evaluated, before its checkpoint | LP-FT (ends its probe) |

A controller's decisions go into each epoch's history entry (``entry["adaptive"]``) and its whole state into
every checkpoint (:meth:`Controller.state`), so a resumed run decides exactly what the uninterrupted one did.
The rules themselves are plain functions in :mod:`harness.plan.adaptive`. A fixed plan gets the base class,
which decides nothing.
"""

from __future__ import annotations

import math

import torch

from harness.engine.early_stop import EarlyStop
from harness.plan import adaptive as rules
from harness.plan.freezing import GroupParams
from harness.plan.strategies import Phase, Plan


class Controller:
    """A fixed plan: every phase runs its epochs, no group is frozen or re-rated during training."""

    rule: str | None = None

    def __init__(self, plan: Plan):
        self.plan = plan
        self.lengths = [p.epochs for p in plan.phases]  # epochs each phase runs (a rule may shorten one)
        self.frozen: list[str] = []  # groups the rule froze during the current phase
        self.decisions: list[dict] = []  # every decision, in order (the record's adaptive section)
        self._epoch_decisions: list[dict] = []

    # --- where the run is -------------------------------------------------------------------------

    @property
    def total_epochs(self) -> int:
        return sum(self.lengths)

    def phase_at(self, epoch: int) -> tuple[int, int]:
        return self.plan.phase_at(epoch, self.lengths)

    def trainable(self, phase: Phase) -> list[str]:
        """The groups of ``phase`` that train now: the phase's, less those the rule froze."""
        return [g for g in phase.trainable if g not in self.frozen]

    # --- calls from the loop (no-ops here) ----------------------------------------------------------

    def on_phase_start(self, run, index: int, first: bool) -> None:
        if first:
            self.frozen = []

    def on_trainable(self, run) -> None: ...

    def after_backward(self, run) -> None: ...

    def after_step(self, run, epoch: int, step: int, phase_steps: int) -> bool:
        return False

    def end_epoch(self, run, epoch: int, entry: dict) -> None:
        """Add the epoch's decisions (and what the rule measured) to its history entry."""
        if self.rule is not None:
            entry["adaptive"] = {"frozen": list(self.frozen), "decisions": self._epoch_decisions}
        self._epoch_decisions = []

    def _decide(self, decision: dict) -> None:
        self.decisions.append(decision)
        self._epoch_decisions.append(decision)

    # --- checkpoint and record -----------------------------------------------------------------------

    def state(self) -> dict:
        return {
            "rule": self.rule,
            "lengths": list(self.lengths),
            "frozen": list(self.frozen),
            "decisions": list(self.decisions),
            "epoch_decisions": list(self._epoch_decisions),
        }

    def load_state(self, state: dict) -> None:
        self.lengths = list(state["lengths"])
        self.frozen = list(state["frozen"])
        self.decisions = list(state["decisions"])
        self._epoch_decisions = list(state.get("epoch_decisions", []))

    def summary(self) -> dict | None:
        """The record's ``adaptive`` section: the rule, its decisions, and when each group froze."""
        if self.rule is None:
            return None
        froze_at = {}
        for d in self.decisions:
            for g in d.get("froze", []):
                froze_at.setdefault(g, {"epoch": d["epoch"], "step": d["step"]})
        return {
            "rule": self.rule,
            "settings": {k: v for k, v in (self.plan.adaptive or {}).items() if k != "rule"},
            "decisions": list(self.decisions),
            "froze_at": froze_at,
            "phase_epochs": list(self.lengths),
        }


def _group_index(run) -> torch.Tensor:
    """For each tensor of ``run.train_params``, the index of its layer group."""
    owner = {id(p): g for g, gp in enumerate(run.params) for p in gp.all}
    return torch.tensor([owner[id(p)] for p in run.train_params], dtype=torch.long, device=run.device)


def _group_sums(values: list[torch.Tensor], index: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Per group, the sum of the squares of per-tensor norms: a group's squared norm (float64, on device)."""
    out = torch.zeros(n_groups, dtype=torch.float64, device=index.device)
    if values:
        out.index_add_(0, index, torch.stack(values).double().square())
    return out


class LpFt(Controller):
    """LP-FT: the probe phase ends once validation accuracy has not improved for ``patience`` epochs (or at
    its cap), with the best probe's weights put back; fine-tuning starts from that head."""

    rule = "lp_ft"

    def __init__(self, plan: Plan):
        super().__init__(plan)
        self.phase = int(plan.adaptive["phase"])
        self.stop = EarlyStop(int(plan.adaptive["patience"]))

    def end_epoch(self, run, epoch: int, entry: dict) -> None:
        index, in_phase = self.phase_at(epoch)
        if index == self.phase and self.lengths[index] == self.plan.phases[index].epochs:
            done = in_phase + 1
            patience = self.stop.update(run.model.net, epoch + 1, entry["val_acc"])
            if patience or done == self.lengths[index]:
                self.stop.restore(run.model.net)  # fine-tuning starts from the best probe
                self.lengths[index] = done
                self._decide(
                    {
                        "epoch": epoch + 1,
                        "step": None,
                        "ended": self.plan.phases[index].name,
                        "why": "patience" if patience else "cap",
                        "kept_epoch": self.stop.best_epoch,
                        "kept_val_acc": self.stop.best_val,
                    }
                )
        super().end_epoch(run, epoch, entry)

    def state(self) -> dict:
        return {**super().state(), "stop": self.stop.state()}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.stop.load_state(state["stop"])


class L2SP(Controller):
    """L2-SP: after every backward, ``grad += alpha (w - w0)`` on the groups copied from the pretrained start
    and ``grad += beta w`` on the others: the gradient of alpha/2 ||w - w0||^2 + beta/2 ||w||^2."""

    rule = "l2sp"

    def __init__(self, plan: Plan, params: list[GroupParams], transferred: list[str]):
        super().__init__(plan)
        self.alpha, self.beta = float(plan.adaptive["alpha"]), float(plan.adaptive["beta"])
        self.transferred = list(transferred)
        self.anchored = [p for gp in params if gp.name in transferred for p in gp.all]
        self.free = [p for gp in params if gp.name not in transferred for p in gp.all]
        self.anchor = [p.detach().clone() for p in self.anchored]  # w0: as the run began

    def after_backward(self, run) -> None:
        pairs = [(p, w0) for p, w0 in zip(self.anchored, self.anchor, strict=True) if p.grad is not None]
        if pairs and self.alpha:
            torch._foreach_add_(
                [p.grad for p, _ in pairs],
                torch._foreach_sub([p for p, _ in pairs], [w for _, w in pairs]),
                alpha=self.alpha,
            )
        free = [p for p in self.free if p.grad is not None]
        if free and self.beta:
            torch._foreach_add_([p.grad for p in free], free, alpha=self.beta)

    @torch.no_grad()
    def end_epoch(self, run, epoch: int, entry: dict) -> None:
        super().end_epoch(run, epoch, entry)
        dist = sum(float(torch.sum((p - w0) ** 2)) for p, w0 in zip(self.anchored, self.anchor, strict=True))
        size = sum(float(torch.sum(p**2)) for p in self.free)
        entry["adaptive"].update(
            {
                "distance_sq": dist,
                "free_norm_sq": size,
                "penalty": self.alpha / 2 * dist + self.beta / 2 * size,
            }
        )

    def state(self) -> dict:
        return {**super().state(), "anchor": [w.cpu() for w in self.anchor], "transferred": self.transferred}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.anchor = [w.to(p.device) for w, p in zip(state["anchor"], self.anchored, strict=True)]

    def summary(self) -> dict | None:
        return {**super().summary(), "transferred": self.transferred}


class FreezeOut(Controller):
    """FreezeOut: group i is frozen (leaves the backward pass) once the phase reaches its end time t_i, where
    its cosine reaches 0. The lr itself is the phase's ``freezeout`` schedule."""

    rule = "freezeout"

    def __init__(self, plan: Plan):
        super().__init__(plan)
        self.ends = list(plan.phases[0].schedule["ends"])
        self.steps_done = 0

    def _due(self, pos: float) -> list[str]:
        names = self.plan.groups
        return [
            g for g, end in zip(names[:-1], self.ends, strict=False) if pos >= end and g not in self.frozen
        ]

    def on_phase_start(self, run, index: int, first: bool) -> None:
        super().on_phase_start(run, index, first)
        if first and (due := self._due(0.0)):  # t0 = 0: the first group never trains
            self.frozen += due
            self._decide({"epoch": run.epochs_done + 1, "step": self.steps_done, "froze": due, "at": 0.0})

    def after_step(self, run, epoch: int, step: int, phase_steps: int) -> bool:
        self.steps_done += 1
        pos = (step + 1) / phase_steps  # the next step's progress: a group at its end takes no more steps
        due = self._due(pos)
        if not due:
            return False
        self.frozen += due
        self._decide({"epoch": epoch + 1, "step": self.steps_done, "froze": due, "at": pos})
        return True

    def state(self) -> dict:
        return {**super().state(), "steps_done": self.steps_done}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.steps_done = int(state["steps_done"])


class AutoFreeze(Controller):
    """AutoFreeze: per group, the gradient norms of an interval's steps are summed (on the device, no host
    sync); at the interval's end the rule compares them with the previous interval's and freezes an
    input-side prefix (:func:`harness.plan.adaptive.autofreeze_prefix`)."""

    rule = "autofreeze"

    def __init__(self, plan: Plan, device):
        super().__init__(plan)
        self.interval = int(plan.adaptive["interval"])
        self.p = float(plan.adaptive["percentile"])
        self.n = len(plan.groups)
        self.sums = torch.zeros(self.n, dtype=torch.float64, device=device)  # this interval's G per group
        self.count = 0  # steps into the current interval
        self.previous: list[float] | None = None  # the last interval's G
        self.steps_done = 0
        self.index: torch.Tensor | None = None

    def on_trainable(self, run) -> None:
        self.index = _group_index(run)

    def after_backward(self, run) -> None:
        if run.train_params:
            self.sums += _group_sums(run.grad_norms, self.index, self.n).sqrt()

    def after_step(self, run, epoch: int, step: int, phase_steps: int) -> bool:
        self.steps_done += 1
        self.count += 1
        if self.count < self.interval:
            return False
        current = self.sums.tolist()  # the one host read of the interval
        self.sums.zero_()
        self.count = 0
        previous, self.previous = self.previous, current
        if previous is None:
            return False
        frozen = len(self.frozen)
        eta = rules.gradient_change(previous, current)
        k = rules.autofreeze_prefix(eta, frozen, self.p)
        if k == frozen:
            return False
        names = self.plan.groups
        self.frozen = list(names[:k])
        active = range(frozen, self.n)
        self._decide(
            {
                "epoch": epoch + 1,
                "step": self.steps_done,
                "froze": list(names[frozen:k]),
                "eta": {names[g]: (eta[g] if math.isfinite(eta[g]) else None) for g in active},
                "threshold": rules.percentile([eta[g] for g in active], self.p),
            }
        )
        return True

    def state(self) -> dict:
        return {
            **super().state(),
            "sums": self.sums.cpu(),
            "count": self.count,
            "previous": self.previous,
            "steps_done": self.steps_done,
        }

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.sums = state["sums"].to(self.sums.device, self.sums.dtype)
        self.count, self.steps_done = int(state["count"]), int(state["steps_done"])
        self.previous = None if state["previous"] is None else [float(v) for v in state["previous"]]


class AutoRGN(Controller):
    """Auto-RGN: every ``interval`` steps each group's scale becomes its relative gradient norm over the
    largest (:func:`harness.plan.adaptive.rgn_scales`); between updates the scales hold. The loop has set
    each group's rate from the schedule; this multiplies it, before the optimizer step."""

    rule = "auto_rgn"

    def __init__(self, plan: Plan):
        super().__init__(plan)
        self.interval = int(plan.adaptive["interval"])
        self.n = len(plan.groups)
        self.scales = [1.0] * self.n
        self.count = 0
        self.scale_sums = [0.0] * self.n  # this epoch's, for its history entry
        self.steps = 0
        self.index: torch.Tensor | None = None

    def on_trainable(self, run) -> None:
        self.index = _group_index(run)

    @torch.no_grad()
    def after_backward(self, run) -> None:
        if self.count % self.interval == 0 and run.train_params:
            grads = _group_sums(run.grad_norms, self.index, self.n).sqrt()
            weights = _group_sums(torch._foreach_norm(run.train_params), self.index, self.n).sqrt()
            self.scales = rules.rgn_scales(grads.tolist(), weights.tolist())  # one host read per update
        self.count += 1
        for group, scale in zip(run.optimizer.param_groups, self.scales, strict=True):
            group["lr"] *= scale
        self.scale_sums = [s + c for s, c in zip(self.scale_sums, self.scales, strict=True)]
        self.steps += 1

    def end_epoch(self, run, epoch: int, entry: dict) -> None:
        super().end_epoch(run, epoch, entry)
        steps = max(self.steps, 1)
        entry["adaptive"]["rgn_scale"] = {
            g: s / steps for g, s in zip(self.plan.groups, self.scale_sums, strict=True)
        }
        self.scale_sums, self.steps = [0.0] * self.n, 0

    def state(self) -> dict:
        return {**super().state(), "scales": list(self.scales), "count": self.count}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.scales = [float(s) for s in state["scales"]]
        self.count = int(state["count"])


def build_controller(plan: Plan, params: list[GroupParams], transferred: list[str], device) -> Controller:
    """The controller of ``plan``'s rule (``Plan.adaptive``), or the fixed one. ``transferred``: the groups
    copied from a pretrained start (L-2SP anchors them)."""
    rule = (plan.adaptive or {}).get("rule")
    if rule is None:
        return Controller(plan)
    if rule == "lp_ft":
        return LpFt(plan)
    if rule == "l2sp":
        return L2SP(plan, params, transferred)
    if rule == "freezeout":
        return FreezeOut(plan)
    if rule == "autofreeze":
        return AutoFreeze(plan, device)
    if rule == "auto_rgn":
        return AutoRGN(plan)
    raise ValueError(f"plan.adaptive names no known rule: {rule!r}")
