"""What a finished job means for its trial: read the job's ``result.json`` (the source of truth) and turn it
into an Optuna state (COMPLETE, PRUNED, FAIL), objective values and the attributes the trials table shows.

The objective is ``metrics.val_acc``, the validation accuracy of the *last* epoch: that is the model the
run ends with, the one its checkpoint holds and the one a re-run of ``best.yaml`` reproduces. The best
epoch's accuracy (``best_val_acc``) would be picked after looking at every epoch's validation score, an
optimistic number no single model delivers unless the run stops there; it can be chosen explicitly with
``search.objectives=[best_val_acc]``. Test metrics are never objectives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from harness import record as records
from harness.errors import ConfigError

# Where each objective lives in a record.
OBJECTIVE_PATHS = {
    "val_acc": ("metrics", "val_acc"),
    "best_val_acc": ("metrics", "best_val_acc"),
    "val_loss": ("metrics", "val_loss"),
    "seconds": ("timing", "seconds"),
    "train_seconds": ("timing", "train_seconds"),
}
# What the job reports each epoch for pruning, per objective (None: that objective cannot be pruned on).
EPOCH_METRIC = {"val_acc": "val_acc", "best_val_acc": "val_acc", "val_loss": "val_loss"}


def check_objectives(objectives: list[str], directions: list[str]) -> None:
    if not objectives:
        raise ConfigError("search.objectives is empty; the usual one is [val_acc]")
    for name in objectives:
        if name.startswith("test"):
            raise ConfigError(
                f"search.objectives: '{name}' is a test metric; a search must not choose on the test set "
                f"(use val_acc)"
            )
        if name not in OBJECTIVE_PATHS:
            raise ConfigError(
                f"search.objectives: '{name}' is unknown; allowed: {', '.join(OBJECTIVE_PATHS)}"
            )
    if len(directions) != len(objectives):
        raise ConfigError(
            f"search.directions has {len(directions)} entries for {len(objectives)} objectives; give one each"
        )
    for d in directions:
        if d not in ("maximize", "minimize"):
            raise ConfigError(f"search.directions: '{d}' must be maximize or minimize")


class State(StrEnum):
    """What a finished job makes of its trial: the Optuna states a trial can end in (a str, so it prints and
    compares as its name)."""

    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"

    @property
    def trial_state(self) -> TrialState:
        return TrialState[self.value]


@dataclass
class Outcome:
    state: State
    values: list[float] | None = None
    reason: str | None = None
    attrs: dict[str, Any] = field(
        default_factory=dict
    )  # status, reason, stopped_epoch, epochs, metrics, seconds


def objective_values(record: dict, objectives: list[str]) -> list[float | None]:
    values = []
    for name in objectives:
        section, key = OBJECTIVE_PATHS[name]
        values.append((record.get(section) or {}).get(key))
    return values


def read_outcome(folder: str | Path, objectives: list[str], *, number: int, study: str) -> Outcome:
    """The outcome of trial ``number`` from ``folder/result.json``; a missing or foreign record is a FAIL."""
    path = Path(folder) / records.RECORD_NAME
    if not path.is_file():
        return Outcome(
            State.FAIL,
            reason=f"no {records.RECORD_NAME} in {folder}: the job failed before training (see its log)",
        )
    try:
        record = records.read_record(path)
    except (OSError, ValueError) as e:
        return Outcome(State.FAIL, reason=f"{path} cannot be read: {e}")
    trial = (record.get("config") or {}).get("trial") or {}
    if trial.get("number") != number or trial.get("study") != study:
        return Outcome(
            State.FAIL,
            reason=f"{path} belongs to trial {trial.get('number')} of '{trial.get('study')}', not this one",
        )
    return outcome_of_record(record, objectives)


def outcome_of_record(record: dict, objectives: list[str]) -> Outcome:
    metrics = record.get("metrics") or {}
    attrs = {
        "status": record.get("status"),
        "reason": record.get("reason"),
        "stopped_epoch": record.get("stopped_epoch"),
        "epochs": len(record.get("history") or []),
        "val_acc": metrics.get("val_acc"),
        "best_val_acc": metrics.get("best_val_acc"),
        "seconds": (record.get("timing") or {}).get("seconds"),
        "run_id": record.get("run_id"),
    }
    status = record.get("status")
    if status == "pruned":
        return Outcome(State.PRUNED, reason=record.get("reason"), attrs=attrs)
    if status != "ok":
        return Outcome(State.FAIL, reason=record.get("reason") or f"status {status!r}", attrs=attrs)
    values = objective_values(record, objectives)
    bad = [name for name, v in zip(objectives, values, strict=True) if not _finite(v)]
    if bad:
        shown = ", ".join(f"{n}={v}" for n, v in zip(objectives, values, strict=True))
        return Outcome(State.FAIL, reason=f"objective not a finite number: {shown}", attrs=attrs)
    return Outcome(State.COMPLETE, values=[float(v) for v in values], attrs=attrs)


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
