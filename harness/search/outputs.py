"""What a search leaves next to its study: ``trials.csv`` (and ``trials.parquet`` when a parquet engine is
installed) and ``best.yaml``, the overrides that re-run the best trial with one command.

Both are rewritten from the storage after every finished trial, so they are complete whichever worker
wrote them last and whenever the sweep stopped. Workers sharing the folder read the study and write the files
under one file lock (``.outputs.lock``): the last files written are always from the latest read.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

import optuna
import pandas as pd
import yaml
from filelock import FileLock
from optuna.trial import FrozenTrial, TrialState

from harness.atomic import atomic_write
from harness.search.study import redact, retried_numbers

TABLE_NAME = "trials.csv"
PARQUET_NAME = "trials.parquet"
BEST_NAME = "best.yaml"
LOCK_NAME = ".outputs.lock"  # held by the worker reading the study and rewriting the files
LOCK_TIMEOUT_S = 120  # waited longer than this: skip this rewrite (the next one catches up)
STALE_REASON = "its worker stopped sending heartbeats (killed?); marked FAIL as stale"


def trial_row(t: FrozenTrial, objectives: Sequence[str], retried: set[int]) -> dict:
    attrs = t.user_attrs
    row = {"number": t.number, "state": t.state.name}
    values = t.values or [None] * len(objectives)
    for name, value in zip(objectives, values, strict=False):
        row[name] = value
    row.update({f"params.{k}": v for k, v in t.params.items()})
    reason = attrs.get("reason")
    if t.state == TrialState.FAIL and reason is None:
        # Every FAIL the sweeper tells carries a reason; one without was failed by the stale-trial check.
        reason = STALE_REASON + (" and retried" if t.number in retried else "")
    duration = (
        (t.datetime_complete - t.datetime_start).total_seconds()
        if t.datetime_complete and t.datetime_start
        else None
    )
    row.update(
        {
            "status": attrs.get("status"),
            "reason": reason,
            "stopped_epoch": attrs.get("stopped_epoch"),
            "epochs": attrs.get("epochs"),
            "duration_s": duration,
            "run_seconds": attrs.get("seconds"),  # the job's own time (timing.seconds of its record)
            "started": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
            "completed": t.datetime_complete.isoformat(timespec="seconds") if t.datetime_complete else None,
            "duplicate_of": attrs.get("duplicate_of"),
            "retry_of": t.system_attrs.get("failed_trial"),
            "folder": attrs.get("folder"),
        }
    )
    return row


def trials_table(study: optuna.Study, objectives: Sequence[str]) -> pd.DataFrame:
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    table = pd.DataFrame([trial_row(t, objectives, retried) for t in trials])
    for column in ("stopped_epoch", "epochs", "duplicate_of", "retry_of"):  # integers with gaps, not floats
        if column in table:
            table[column] = table[column].astype("Int64")
    return table


def best_trials(study: optuna.Study, objectives: Sequence[str]) -> list[FrozenTrial]:
    """The best trial (single objective) or the Pareto front, best first objective first."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        return []
    if len(objectives) == 1:
        return [study.best_trial]
    sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
    return sorted(study.best_trials, key=lambda t: (sign * t.values[0], t.number))


def rerun_command(overrides: Sequence[str]) -> str:
    # hydra/sweeper=basic: one run of the trial's config, not the search its preset starts (which needs -m)
    return "python -m harness.train " + " ".join(shlex.quote(o) for o in [*overrides, "hydra/sweeper=basic"])


def best_document(study: optuna.Study, objectives: Sequence[str], storage_url: str) -> dict | None:
    front = best_trials(study, objectives)
    if not front:
        return None
    best = front[0]
    overrides = list(best.user_attrs.get("overrides") or [])
    doc = {
        "study": study.study_name,
        "storage": redact(storage_url),
        "trial": best.number,
        "values": dict(zip(objectives, best.values, strict=True)),
        "params": dict(best.params),
        "folder": best.user_attrs.get("folder"),
        "overrides": overrides,
        "command": rerun_command(overrides),
    }
    if len(objectives) > 1:
        doc["pareto_front"] = [
            {
                "trial": t.number,
                "values": dict(zip(objectives, t.values, strict=True)),
                "folder": t.user_attrs.get("folder"),
            }
            for t in front
        ]
    return doc


def write_outputs(
    study: optuna.Study, objectives: Sequence[str], sweep_dir: str | Path, storage_url: str
) -> dict:
    """Rewrite the trials table and best.yaml in ``sweep_dir``; return the paths written.

    Under a file lock shared by every worker writing to ``sweep_dir``: without it, a worker that read the study
    just before another worker's last trial finished could rename its older table over the newer one, and the
    search would end with a table showing that trial RUNNING. Raises ``filelock.Timeout`` after
    :data:`LOCK_TIMEOUT_S` seconds of waiting (the sweeper reports it and goes on).
    """
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(sweep_dir / LOCK_NAME), timeout=LOCK_TIMEOUT_S):
        return _write_outputs(study, objectives, sweep_dir, storage_url)


def _write_outputs(study: optuna.Study, objectives: Sequence[str], sweep_dir: Path, storage_url: str) -> dict:
    table = trials_table(study, objectives)
    paths = {"table": sweep_dir / TABLE_NAME}
    atomic_write(paths["table"], lambda f: table.to_csv(f, index=False))
    if _parquet_engine():
        paths["parquet"] = sweep_dir / PARQUET_NAME
        atomic_write(
            paths["parquet"],
            lambda f: table.astype(
                {c: "string" for c in table.columns if c.startswith("params.")}
            ).to_parquet(f, index=False),
            binary=True,
        )
    doc = best_document(study, objectives, storage_url)
    if doc is not None:
        paths["best"] = sweep_dir / BEST_NAME
        header = (
            f"# Best trial of study '{doc['study']}': trial {doc['trial']}, "
            + ", ".join(f"{k} {v:.4f}" for k, v in doc["values"].items())
            + "\n# Re-run it (same config and seed: the same numbers on CPU) with:\n#   "
            + doc["command"]
            + "\n"
        )
        atomic_write(
            paths["best"], lambda f: f.write(header + yaml.safe_dump(doc, sort_keys=False, width=1000))
        )
    return paths


def _parquet_engine() -> bool:
    import importlib.util

    return any(importlib.util.find_spec(m) is not None for m in ("pyarrow", "fastparquet"))
