"""The result record (``result.json``): the contract between a run and everything that reads it.

Fields (schema version ``RECORD_VERSION``):
- ``version``, ``run_id`` (hash of the resolved config, see :func:`run_id`), ``status`` (``ok`` | ``failed``
  | ``pruned``), ``reason`` (why it failed or was pruned, else null), ``stopped_epoch``;
- ``config``: the resolved config; ``plan``: the freeze plan (:class:`harness.plan.strategies.Plan` as data);
- ``groups``: per layer group name, modules, #params; ``summary``: per phase, the table printed at phase start;
- ``metrics``: ``val_acc``, ``val_loss``, ``test_acc``, ``test_loss`` (of the weights the run ends with: the
  last epoch, or with early stopping the best-validation epoch), ``best_val_acc``, ``test_acc_best_val_k`` (the
  mean test accuracy over the ``best_k`` epochs with the best validation accuracy, later epoch on ties: chosen
  on validation only) and ``best_k`` (how many epochs it averaged);
- ``init_seed``: the seed this network's fresh weights and batch order were drawn with (``init_seed`` in the
  config, else ``seed``; the transfer experiment draws one per network); ``early_stopping`` (null without it):
  patience, epochs trained, best_epoch (its weights are kept), best_val_acc, stopped (``patience`` | ``cap``);
- ``history``: one entry per epoch: epoch, phase, phase_index, train_loss, val_loss, val_acc, test_acc,
  test_loss (null before the last epoch when ``test_every_epoch=false``), lr (per group, at the epoch's last step), lr_max (per group), seconds, samples_per_s;
- ``timing``: seconds, samples_per_s, started, finished, rss_mb and peak_rss_mb (this process's resident memory
  at the end of the run and at its peak, Linux only); ``environment``: versions, device, threads,
  the settings that decide reproducibility (deterministic_algorithms, cudnn_deterministic, cudnn_benchmark,
  cublas_workspace_config, bf16, compile) and ``nondeterministic``: those of them on that can change a rerun's numbers; ``harness``: version and git commit; ``checkpoint``: path of the last checkpoint;
- ``reused`` (only in the record of a run that had finished earlier, :mod:`harness.store`): ``from`` (the folder
  that trained it), ``store``, ``finished``, ``at``; the numbers are the stored ones, the config this job's;
- ``compute`` (:mod:`harness.engine.compute`): the FLOPs the run executed, as ``FlopCounterMode`` counts them:
  ``flops`` (all), ``forward_flops``, ``backward_flops``, ``train_flops`` (training steps and prefix features),
  by bucket ``train_forward_flops``, ``train_backward_flops``, ``eval_forward_flops``, ``prefix_forward_flops``
  (the frozen prefix's one-time cost), ``per_epoch`` (the same per epoch, also in each history entry's
  ``compute``), ``trainable_params`` (per phase: at its start and end, and of all), ``seconds`` (wall, whole run)
  and ``train_seconds``, ``meter_flops`` (the meter's own measuring passes, not in ``flops``);
- ``adaptive`` (null for a fixed plan, :mod:`harness.engine.adaptive`): the rule, its settings, every decision
  (epoch, step, the groups frozen, what it measured), ``froze_at`` per group and ``phase_epochs`` (the epochs
  each phase ran); each epoch's share is in its history entry's ``adaptive``, and every entry says which groups
  trained (``trainable``) for how many steps (``trained_steps``);
- ``base`` (``init.base`` only): the cached base the run started from, as a transfer record names its base;
- ``warnings``: list of strings a reader should see (a resume: after which epoch); optional sections added by features
  (``transfer``, ``trial``, ``diagnostics``).
- ``diagnostics`` (config ``diagnostics.weights``, :mod:`harness.diagnostics.weights`): one row per (epoch, layer group),
  ``pd.DataFrame(d["data"], columns=d["columns"])``: epoch, phase_index, phase, group, trainable, lr, change_start,
  change_phase (``||W_t - W_0|| / ||W_0||``), grad_norm, update_ratio, norm_change, stats_drift; with ``version``,
  ``start_epoch`` and ``problems`` (broken freeze invariants, also lines in ``warnings``); ``cka``, ``cka_vs_base``,
  ``cka_vs_baseB`` (config ``diagnostics.cka``, :mod:`harness.diagnostics.cka`): ``{group: linear CKA}`` of the trained network
  vs its start, its ``init.from`` checkpoint and the trained baseB, on the probe batch ``cka_probe`` describes.

Written atomically: a reader sees the old file or the whole new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import harness
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


def best_val_k_mean(history: list[dict], k: int) -> tuple[float | None, int]:
    """The paper-style metric, chosen on validation only: the mean test accuracy over the k epochs with the
    best validation accuracy (the later epoch on ties), and how many epochs it averaged (fewer when fewer
    epochs have both evaluations). The test set never takes part in choosing the epochs."""
    evaluated = [h for h in history if h.get("test_acc") is not None and h.get("val_acc") == h.get("val_acc")]
    chosen = sorted(evaluated, key=lambda h: (h["val_acc"], h["epoch"]), reverse=True)[:k]
    if not chosen:
        return None, 0
    return sum(h["test_acc"] for h in chosen) / len(chosen), len(chosen)


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


def make_record(cfg, config, rid, run, status, reason, started, seconds, ckpt_file, device) -> dict:
    """The record of a run that trained (or stopped): everything above, from the run and its config."""
    # Imported here: analysis reads records and must not pay for torch.
    from harness.engine.compute import summary as compute_summary
    from harness.plan.summary import phase_rows

    history = run.history
    # The metrics describe the weights the run ends with: the last epoch's, or early stopping's best.
    kept = (
        run.early_stop.best_epoch if run.early_stop and run.early_stop.weights is not None else len(history)
    )
    last = history[kept - 1] if history else {}
    best_k = int(cfg.get("best_k", 3))
    test_acc_best_val_k, k_used = best_val_k_mean(history, best_k)
    samples = sum(len(run.data.train) for _ in history)
    return {
        "version": RECORD_VERSION,
        "run_id": rid,
        "status": status,
        "reason": reason,
        "init_seed": run.seed,
        "stopped_epoch": run.epochs_done if status != "ok" else None,
        "config": config,
        "plan": run.plan.to_dict(),
        "groups": [
            {"name": g.name, "modules": list(g.prefixes), "params": sum(p.numel() for p in gp.all)}
            for g, gp in zip(run.model.groups, run.params, strict=True)
        ],
        "summary": [phase_rows(run.model, run.params, run.plan, i) for i in range(len(run.plan.phases))],
        "metrics": {
            "val_acc": last.get("val_acc"),
            "val_loss": last.get("val_loss"),
            "test_acc": last.get("test_acc"),
            "test_loss": last.get("test_loss"),
            "best_val_acc": max((h["val_acc"] for h in history), default=None),
            "test_acc_best_val_k": test_acc_best_val_k,
            "best_k": k_used,
        },
        "early_stopping": run.early_stop.summary(len(history)) if run.early_stop else None,
        "compute": compute_summary(history, run.compute, trainable_per_phase(run), seconds),
        "adaptive": run.adaptive.summary(),
        "history": history,
        "data": {
            "name": run.data.name,
            "classes": run.data.classes,
            "train": len(run.data.train),
            "val": len(run.data.val),
            "test": len(run.data.test),
            # what the images went through: normalisation (and its source), augmentation, streaming
            "preprocessing": run.data.preprocessing,
            "augment": run.data.augment,
            **run.data.info,
        },
        "timing": {
            "seconds": seconds,
            "train_seconds": sum(h["seconds"] for h in history),
            "samples_per_s": samples / sum(h["seconds"] for h in history) if history else None,
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            **memory_mb(),
        },
        "environment": environment(device, run),
        "harness": {"version": harness.__version__, "git_commit": git_commit()},
        "checkpoint": str(ckpt_file) if cfg.checkpoint.save and ckpt_file.exists() else None,
        "warnings": [],
    }


def trainable_per_phase(run) -> list[dict]:
    """Per phase that ran: its trainable parameters at its start and at its end (a rule may freeze groups
    during it), of how many in all."""
    total = sum(p.numel() for gp in run.params for p in gp.all)
    out = {}
    for h in run.history:
        c = h.get("compute") or {}
        if "trainable_params" not in c:
            continue
        row = out.setdefault(
            h["phase_index"],
            {"phase": h["phase"], "index": h["phase_index"], "start": c["trainable_params"], "epochs": 0},
        )
        row["end"] = c["trainable_params_end"]
        row["epochs"] += 1
    return [{**row, "of": total} for row in out.values()]


def environment(device, run) -> dict:
    """Versions and machine, and the settings that decide whether a rerun gives the same numbers."""
    import torch

    settings = {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "threads": torch.get_num_threads(),
        "bf16": run.bf16,
        "compile": run.compile,
    }
    # What is on that can change the numbers of a rerun with the same seed. On CPU nothing: the same seed and
    # thread count give the same numbers (tests/test_train.py).
    nondeterministic = []
    if device.type == "cuda" and not settings["deterministic_algorithms"]:
        nondeterministic.append(
            "CUDA kernels with atomic adds (e.g. convolution backward): set deterministic=true"
        )
    return {
        "torch": torch.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        **settings,
        "nondeterministic": nondeterministic,
    }


def memory_mb() -> dict:
    """This process's resident memory now and at its peak (Linux; empty elsewhere): a soak reads these per run."""
    try:
        import resource

        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return {
            "rss_mb": pages * os.sysconf("SC_PAGE_SIZE") / 2**20,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    except (OSError, ValueError, ImportError, IndexError):
        return {}
