"""The result record (``result.json``): the contract between a run and everything that reads it.

Fields (schema version ``RECORD_VERSION``):
- ``version``, ``run_id`` (hash of the resolved config, see :func:`run_id`), ``status`` (``ok`` | ``failed``
  | ``pruned``), ``reason`` (why it failed or was pruned, else null), ``stopped_epoch``;
- ``config``: the resolved config; ``plan``: the freeze plan (:class:`harness.strategy.Plan` as data);
- ``groups``: per layer group name, modules, #params; ``summary``: per phase, the table printed at phase start;
- ``metrics``: ``val_acc``, ``val_loss``, ``test_acc``, ``test_loss`` (last epoch), ``best_val_acc``,
  ``test_acc_best_k`` (the paper's mean of the k best test evaluations) and ``best_k``;
- ``history``: one entry per epoch: epoch, phase, phase_index, train_loss, val_loss, val_acc, test_acc,
  test_loss (null before the last epoch when ``test_every_epoch=false``), lr (per group, at the epoch's last step), lr_max (per group), seconds, samples_per_s;
- ``timing``: seconds, samples_per_s, started, finished, rss_mb and peak_rss_mb (this process's resident memory
  at the end of the run and at its peak, Linux only); ``environment``: versions, device, threads,
  the settings that decide reproducibility (deterministic_algorithms, cudnn_deterministic, cudnn_benchmark,
  cublas_workspace_config, bf16, compile) and ``nondeterministic``: those of them on that can change a rerun's numbers; ``harness``: version and git commit; ``checkpoint``: path of the last checkpoint;
- ``reused`` (only in the record of a run that had finished earlier, :mod:`harness.store`): ``from`` (the folder
  that trained it), ``store``, ``finished``, ``at``; the numbers are the stored ones, the config this job's;
- ``warnings``: list of strings a reader should see (a resume: after which epoch); optional sections added by features
  (``transfer``, ``trial``, ``diagnostics``).
- ``diagnostics`` (config ``diagnostics.weights``, :mod:`harness.diagnostics`): one row per (epoch, layer group),
  ``pd.DataFrame(d["data"], columns=d["columns"])``: epoch, phase_index, phase, group, trainable, lr, change_start,
  change_phase (``||W_t - W_0|| / ||W_0||``), grad_norm, update_ratio, norm_change, stats_drift; with ``version``,
  ``start_epoch`` and ``problems`` (broken freeze invariants, also lines in ``warnings``); ``cka``, ``cka_vs_base``,
  ``cka_vs_baseB`` (config ``diagnostics.cka``, :mod:`harness.cka`): ``{group: linear CKA}`` of the trained network
  vs its start, its ``init.from`` checkpoint and the trained baseB, on the probe batch ``cka_probe`` describes.

Written atomically: a reader sees the old file or the whole new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from harness.atomic import atomic_write

RECORD_VERSION = 1
RECORD_NAME = "result.json"

# Config keys that do not change what a run computes, so they are not part of its identity.
NOT_IDENTITY = (
    "logger",
    "resume",
    "paths",
    "progress",
    "hydra",
    "trial",
    "checkpoint",
    "lr_find",
    "threads",
    "experiment_name",
    "prefix_cache",
    "search",
)
# [diagnostics] measures only: draws no random numbers, changes no number (tests/test_diagnostics.py)
NOT_IDENTITY += ("diagnostics",)


def write_json_atomic(path: str | Path, data) -> None:
    atomic_write(path, lambda f: json.dump(data, f, indent=1, default=_jsonable))


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def run_id(config: dict) -> str:
    """A short stable hash of the parts of the resolved config that decide the numbers."""
    identity = {k: v for k, v in config.items() if k not in NOT_IDENTITY}
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def best_k_mean(values: list[float], k: int) -> float | None:
    """The paper's metric: the mean of the k best evaluations of a run (all of them if fewer)."""
    finite = sorted((v for v in values if v == v), reverse=True)
    return sum(finite[:k]) / len(finite[:k]) if finite else None


def failed_before_training(config: dict, reason: str) -> dict:
    """The record of a sweep job whose input was rejected: no metrics, the reason, the config it was given."""
    return {
        "version": RECORD_VERSION,
        "run_id": run_id(config),
        "status": "failed",
        "reason": reason,
        "stopped_epoch": 0,
        "config": config,
        "metrics": {"val_acc": None, "val_loss": None, "test_acc": None, "test_loss": None},
        "history": [],
        "warnings": [],
    }


def read_record(path: str | Path) -> dict:
    with open(path) as f:
        return json.load(f)
