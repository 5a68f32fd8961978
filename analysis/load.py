"""Finished runs as DataFrames: :func:`load_runs` (one row per run) and :func:`load_history` (one row per epoch).

A path can be one ``result.json``, a run folder, a multirun or sweep folder, or all of ``outputs/``: every
``result.json`` below it is a run. Nothing is dropped here: failed and pruned runs, records of another schema
version, unreadable files and job folders that never wrote a record all get a row, with ``problem`` saying why
a table should not use it. Tables decide what to leave out (:mod:`analysis.selection`) and say so.

Loading reads JSON only (never harness objects). An index next to the records (``.freezelab-index.json`` in
the scanned folder) keeps each record's flattened row and history keyed by (mtime, size, inode) of its file, so
a second load of thousands of runs re-reads only the records that changed. The index is JSON rather than
pickle because a shared results folder must never be a way to run code.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from analysis import metrics as metrics_mod

RECORD_NAME = "result.json"
# The record schema this analysis reads (harness.record.RECORD_VERSION; a test keeps the two equal).
SUPPORTED_VERSION = 1
INDEX_NAME = ".freezelab-index.json"
STARTED_NAME = "started.json"  # harness.store: a run began in this folder (its run id, when, where)
INDEX_VERSION = 5  # bump when the flattened row or the history entries change shape
SKIP_DIRS = {"wandb", "checkpoints", "__pycache__", "report"}  # never hold records; can be large

# Columns every runs DataFrame has, in this order (the rest follow: metrics.*, timing.*, transfer.*, config.*).
FRONT = [
    "folder",
    "kind",
    "status",
    "problem",
    "experiment",
    "data",
    "model",
    "strategy",
    "split",
    "half",
    "seed",
    "init_seed",
    "lr",
    "lr_lo",
    "lr_hi",
    "transfer.treatment",
    "transfer.n",
    "transfer.split_seed",
    "epochs",
    "run_id",
    "version",
    "reason",
]


class NoRunsError(ValueError):
    """A path holds no ``result.json`` at all."""


def find_records(path: str | Path) -> tuple[list[str], list[str]]:
    """(records, job folders without a record) below ``path``, as absolute paths; hidden folders and
    ``wandb``/``checkpoints`` are skipped (hidden ones hold Hydra's metadata or bases still being built).
    A job folder without a record counts only when it holds ``started.json`` (the job began a run and died, or
    still runs); a folder with neither (a config error that exited 2, an ``lr_find``: Hydra made the folder,
    no run began) is not a run. Plain strings, not Path objects: with thousands of runs, path objects cost more
    than the scan."""
    path = Path(path).resolve()
    if path.is_file():
        return [str(path)], []
    records, orphans = [], []
    stack = [str(path)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as e:
            warnings.warn(f"cannot list {folder}: {e}", stacklevel=2)
            continue
        names = {e.name for e in entries}
        if RECORD_NAME in names:
            records.append(os.path.join(folder, RECORD_NAME))
        elif STARTED_NAME in names:
            orphans.append(folder)  # a run began here and never wrote its record: killed, or still running
        for e in entries:
            if not e.name.startswith(".") and e.name not in SKIP_DIRS and e.is_dir(follow_symlinks=False):
                stack.append(e.path)
    return sorted(records), sorted(orphans)


def load_runs(
    paths: str | Path | Iterable[str | Path], *, cache: bool = True, dedupe: bool = True
) -> pd.DataFrame:
    """One row per run below ``paths`` (a path or several).

    A run is its identity (``run_id``, the hash of its resolved config) within an experiment: a sweep killed
    and run again leaves the same run in two folders (the rerun's record says ``reused_from``), or a record in
    one and a dead job in the other. ``dedupe=True`` keeps one row per (experiment, run_id), the most finished
    (ok, then pruned, failed, no record; the trained original over a reused copy; then the newest), and says
    in ``copies`` how many folders held it and in ``copies_in`` which others. ``dedupe=False``: a row per folder.

    Columns: ``folder``, ``kind`` (treatment | base | trial | run), ``status`` (ok | failed | pruned | unreadable
    | no_record), ``problem`` (why a table should leave the run out, else None), short config columns
    (``experiment``, ``data``, ``model``, ``strategy``, ``split``, ``half``, ``seed``, ``init_seed`` (the seed of
    the run's fresh weights), ``lr`` = peak lr, ``lr_lo``/``lr_hi`` = the rates of the first and the last trainable
    layer group in the plan's last phase (see :func:`plan_lr_range`), ``epochs`` run), ``metrics.*`` (see :mod:`analysis.metrics`: an older record's
    test-selected ``test_acc_best_k`` is read as ``metrics.test_acc_best_k_optimistic``), ``derived`` (the
    fields analysis computed from the record's history because the record predates them, else None),
    ``timing.*`` (``started``/``finished`` as UTC timestamps), ``transfer.*``, ``trial.*``, ``harness.*``,
    ``environment.*``, ``sweep`` (the multirun folder, if any) and every config leaf as ``config.<dotted key>``
    (lists as JSON text). Raises :class:`NoRunsError` when no record is found.
    """
    rows = []
    sources = _as_paths(paths)
    for path in sources:
        rows += [entry["row"] for entry in _load_entries(path, cache=cache)]
    frame = _frame(one_per_run(rows) if dedupe else rows)
    # load_history(runs) re-reads through the same folders (and their indexes) instead of file by file.
    frame.attrs["sources"] = [str(p.resolve()) for p in sources]
    return frame


def load_history(source, *, cache: bool = True) -> pd.DataFrame:
    """The long per-epoch history: one row per (run, epoch).

    ``source`` is a path (or paths), or a runs DataFrame from :func:`load_runs` (its rows select the runs).
    Columns: ``folder``, identifying columns of the run, ``epoch``, ``phase``, ``phase_index``, ``step`` (optimizer
    steps done at the epoch's end), ``elapsed_s`` (training seconds so far), the epoch's metrics, and per layer
    group ``lr.<group>`` (the rate at the epoch's last step, 0 when frozen) and ``lr_max.<group>`` (its peak in
    the epoch). :func:`lr_long` turns the lr columns into one row per (run, epoch, group).
    """
    if isinstance(source, pd.DataFrame):
        wanted = set(source["folder"])
        paths = [Path(p) for p in source.attrs.get("sources", [])] or [
            Path(p) for p in source["path"].dropna()
        ]
    else:
        wanted, paths = None, _as_paths(source)
    entries = [entry for path in paths for entry in _load_entries(path, cache=cache)]
    if wanted is None:  # the runs load_runs would give: each run once
        wanted = {row["folder"] for row in one_per_run([entry["row"] for entry in entries])}
    rows = []
    for entry in entries:
        if entry["row"]["folder"] in wanted:
            rows += _history_rows(entry["row"], entry["history"])
    columns = [
        "folder",
        "kind",
        "status",
        "experiment",
        "strategy",
        "transfer.treatment",
        "transfer.n",
        "seed",
        "epoch",
        "phase",
        "phase_index",
        "step",
        "elapsed_s",
    ]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    rest = [c for c in frame.columns if c not in columns]
    lr_cols = sorted(c for c in rest if c.startswith(("lr.", "lr_max.")))
    return frame[columns + [c for c in rest if c not in lr_cols] + lr_cols]


def lr_long(history: pd.DataFrame) -> pd.DataFrame:
    """Per-group rates as rows: folder, epoch, step, phase, group, lr, lr_max (NaN where a model lacks a group)."""
    groups = sorted({c.split(".", 1)[1] for c in history.columns if c.startswith("lr.")})
    parts = []
    for g in groups:
        part = history[["folder", "epoch", "step", "phase", "phase_index"]].copy()
        part["group"] = g
        part["lr"] = history.get(f"lr.{g}")
        part["lr_max"] = history.get(f"lr_max.{g}")
        parts.append(part.dropna(subset=["lr"]))
    if not parts:
        return pd.DataFrame(
            columns=["folder", "epoch", "step", "phase", "phase_index", "group", "lr", "lr_max"]
        )
    return pd.concat(parts, ignore_index=True)


# --- reading, with the index --------------------------------------------------------------------------------


def _as_paths(paths) -> list[Path]:
    if isinstance(paths, str | Path):
        paths = [paths]
    out = [Path(p).expanduser() for p in paths]
    for p in out:
        if not p.exists():
            raise FileNotFoundError(
                f"{p} does not exist (give a run folder, a sweep folder, outputs/ or a {RECORD_NAME})"
            )
    return out


def _load_entries(path: Path, *, cache: bool) -> list[dict]:
    records, orphans = find_records(path)
    if not records and not orphans:
        raise NoRunsError(
            f"no {RECORD_NAME} below {path}: a run writes its record when it ends. Is the sweep still running, "
            f"or is this the wrong folder? (hidden folders, wandb/ and checkpoints/ are not searched)"
        )
    root = path.resolve()
    use_index = cache and root.is_dir()
    index = _read_index(root) if use_index else {}
    prefix = len(str(root)) + 1
    entries, fresh, changed = [], {}, False
    for rec in records:
        rel = rec[prefix:] if use_index else rec
        try:
            st = os.stat(rec)
        except OSError:
            continue  # removed between the scan and now
        key = [st.st_mtime_ns, st.st_size, st.st_ino]  # os.replace (atomic writes) gives a new inode
        entry = index.get(rel)
        if entry is None or entry.get("key") != key:
            entry = {"key": key, **_read_one(Path(rec))}
            changed = True
        entry["row"]["folder"] = os.path.dirname(rec)
        entry["row"]["path"] = rec
        fresh[rel] = entry
        entries.append(entry)
    sweeps: dict[str, str | None] = {}
    for entry in entries:
        entry["row"]["sweep"] = _sweep_of(entry["row"]["folder"], sweeps)
    for folder in orphans:
        row = _orphan_row(Path(folder))
        row["sweep"] = _sweep_of(folder, sweeps)
        entries.append({"row": row, "history": []})
    if use_index and (changed or set(fresh) != set(index)):
        _write_index(root, fresh)
    return entries


def _read_index(folder: Path) -> dict:
    data = _read_json(folder / INDEX_NAME)
    return (data.get("entries") or {}) if data.get("version") == INDEX_VERSION else {}


def _write_index(folder: Path, entries: Mapping) -> None:
    """Write the index atomically (a reader sees the old or the new one); an unwritable folder only loses speed."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{INDEX_NAME}.", suffix=".tmp", dir=folder)
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"version": INDEX_VERSION, "entries": entries}, f, separators=(",", ":"))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; others who read the folder may use it too
        os.replace(tmp, folder / INDEX_NAME)
    except (OSError, TypeError, ValueError) as e:
        Path(tmp).unlink(missing_ok=True)
        warnings.warn(f"could not write the load index in {folder}: {e}", stacklevel=3)


def _read_one(path: Path) -> dict:
    try:
        with open(path) as f:
            record = json.load(f)
        if not isinstance(record, dict):
            raise ValueError(f"the record is a JSON {type(record).__name__}, not an object")
    except (OSError, ValueError) as e:
        return {
            "row": _bad_row(path, "unreadable", f"unreadable {RECORD_NAME}: {type(e).__name__}: {e}"),
            "history": [],
        }
    try:
        return {"row": flatten_record(record, path), "history": _history_of(record)}
    except (TypeError, AttributeError, KeyError, ValueError) as e:  # a record of an unexpected shape
        return {
            "row": _bad_row(path, "unreadable", f"record of an unexpected shape: {type(e).__name__}: {e}"),
            "history": [],
        }


def _bad_row(path: Path, status: str, problem: str) -> dict:
    return {
        "folder": str(path.parent),
        "path": str(path),
        "kind": "run",
        "status": status,
        "problem": problem,
        "reason": problem,
    }


def _orphan_row(folder: Path) -> dict:
    """A job folder without a record: keep it visible, with what its saved config and its start note say."""
    started = _read_json(folder / STARTED_NAME)
    if started:
        why = (
            f"no {RECORD_NAME}: run {started.get('run_id')} started {started.get('started')} on "
            f"{started.get('host')} (pid {started.get('pid')}) and was killed, or is still running"
        )
    else:  # an unreadable started.json: the folder still marks a run that began
        why = f"no {RECORD_NAME}: a run started here (its {STARTED_NAME} is unreadable) and was killed, or is still running"
    row = _bad_row(folder / RECORD_NAME, "no_record", why)
    try:
        import yaml

        config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text()) or {}
    except Exception:  # an unreadable config only loses the config columns of this row
        config = {}
    if isinstance(config, dict):
        row.update(_short_columns(config, {}))
        row.update({f"config.{k}": v for k, v in flatten(config).items()})
        row["kind"] = "treatment" if (config.get("transfer") or {}).get("treatment") else "run"
    if started:  # the run this job was: a rerun that finished it makes this row a copy (load_runs' dedupe)
        row["run_id"] = started.get("run_id")
        row["experiment"] = started.get("experiment", row.get("experiment"))
    return row


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


STATUS_RANK = {"ok": 0, "pruned": 1, "failed": 2, "no_record": 3}


def one_per_run(rows: list[dict]) -> list[dict]:
    """Each run once (see :func:`load_runs`): rows without a run id (unreadable records) all stay."""
    groups: dict[tuple, list[dict]] = {}
    out = []
    for row in rows:
        if row.get("run_id"):
            groups.setdefault((row.get("experiment"), row["run_id"]), []).append(row)
        else:
            out.append({**row, "copies": 1})

    def rank(row):  # lower is better: usable, most finished, trained here rather than reused
        return (
            row.get("problem") is not None and row.get("status") == "ok",  # e.g. another schema version
            STATUS_RANK.get(row.get("status"), 4),
            row.get("reused_from") is not None,
        )

    for same in groups.values():
        same = sorted(same, key=lambda r: str(r.get("timing.finished") or ""), reverse=True)  # newest first
        best = min(same, key=rank)  # the first of the best: the newest among equals
        others = [r["folder"] for r in same if r is not best]
        out.append({**best, "copies": len(same), "copies_in": "; ".join(others) or None})
    return out


def _sweep_of(folder: str, memo: dict) -> str | None:
    """The run's parent or grandparent folder if it holds ``multirun.yaml`` (a Hydra sweep), else None."""
    parent = os.path.dirname(folder)
    for candidate in (parent, os.path.dirname(parent)):
        if candidate not in memo:
            memo[candidate] = candidate if os.path.isfile(os.path.join(candidate, "multirun.yaml")) else None
        if memo[candidate]:
            return memo[candidate]
    return None


# --- flattening ---------------------------------------------------------------------------------------------


def flatten(tree, prefix: str = "") -> dict:
    """Nested dicts as one level of dotted keys; lists become JSON text so every value is a scalar."""
    out = {}
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            key = f"{prefix}{k}"
            if isinstance(v, Mapping) and v:
                out.update(flatten(v, key + "."))
            elif isinstance(v, list | tuple):
                out[key] = json.dumps(v, default=str)
            elif isinstance(v, Mapping):
                out[key] = None
            else:
                out[key] = v
    return out


def kind_of(record: Mapping, path: Path) -> str:
    if record.get("transfer"):
        return "treatment"
    if path.parent.parent.name == "bases" or (path.parent / "entry.json").is_file():
        return "base"
    if ((record.get("config") or {}).get("trial") or {}).get("number") is not None:
        return "trial"
    return "run"


def problem_of(record: Mapping) -> str | None:
    """Why a table should not use this run, or None."""
    version = record.get("version")
    if version != SUPPORTED_VERSION:
        shown = "missing" if version is None else version
        return f"schema version {shown}: this analysis reads version {SUPPORTED_VERSION}"
    status = record.get("status")
    if status == "ok":
        return None
    reason = record.get("reason") or "no reason recorded"
    if status in ("failed", "pruned"):
        return f"{status}: {reason}"
    return f"status {status!r}: {reason}"


def flatten_record(record: Mapping, path: Path) -> dict:
    config = record.get("config") or {}
    metrics = record.get("metrics") or {}
    timing = record.get("timing") or {}
    history = record.get("history") or []
    row = {
        "kind": kind_of(record, path),
        "status": record.get("status"),
        "problem": problem_of(record),
        "reason": record.get("reason"),
        "run_id": record.get("run_id"),
        "version": record.get("version"),
        "stopped_epoch": record.get("stopped_epoch"),
        "reused_from": (record.get("reused") or {}).get("from"),
        "init_seed": record.get("init_seed"),
        "epochs": len(history),
        **_short_columns(config, record.get("plan") or {}),
    }
    derived = []
    metrics = _renamed(metrics)
    if metrics_mod.BEST_VAL_K not in metrics and history:
        metrics[metrics_mod.BEST_VAL_K] = metrics_mod.best_val_k(history, metrics_mod.k_of(record))
        derived.append(f"metrics.{metrics_mod.BEST_VAL_K}")
    row.update({f"metrics.{k}": _number(v) for k, v in metrics.items()})
    row.update({f"timing.{k}": v for k, v in timing.items()})
    # Transfer treatments: the record's own section (what was run); other runs: what their config says.
    section = record.get("transfer") or {"treatment": (config.get("transfer") or {}).get("treatment")}
    if record.get("transfer"):
        section = dict(section)
        for role in ("base", "baseB"):
            if isinstance(section.get(role), Mapping):
                section[role], was_derived = _base_summary(section[role])
                derived += [f"transfer.{role}.{metrics_mod.BEST_VAL_K}"] if was_derived else []
    row.update({f"transfer.{k}": v for k, v in flatten(section).items()})
    row["derived"] = "; ".join(derived) or None
    row.update({f"trial.{k}": v for k, v in (config.get("trial") or {}).items() if k in ("number", "study")})
    row.update({f"harness.{k}": v for k, v in (record.get("harness") or {}).items()})
    env = record.get("environment") or {}
    row.update({f"environment.{k}": env.get(k) for k in ("device", "threads", "torch")})
    row["data.train"] = (record.get("data") or {}).get("train")
    row["warnings"] = "; ".join(map(str, record.get("warnings") or [])) or None
    row.update({f"config.{k}": v for k, v in flatten(config).items()})
    return row


def _short_columns(config: Mapping, plan: Mapping) -> dict:
    def name(section):
        value = config.get(section)
        return value.get("name") if isinstance(value, Mapping) else value

    lo, hi = plan_lr_range(plan) or lr_range(_lr_setting(config))
    return {
        "experiment": config.get("experiment_name"),
        "data": name("data"),
        "model": name("model"),
        "strategy": plan.get("strategy") or name("strategy"),
        "split": name("split"),
        "half": config.get("half"),
        "seed": config.get("seed"),
        "lr": peak_lr(config),
        "lr_lo": lo,
        "lr_hi": hi,
        "batch_size": config.get("batch_size"),
    }


def _lr_setting(config: Mapping):
    """The run's configured rate: the strategy's ``base_lr`` or ``lr`` if set, else the top-level ``lr``."""
    strategy = config.get("strategy") if isinstance(config.get("strategy"), Mapping) else {}
    for value in (strategy.get("base_lr"), strategy.get("lr"), config.get("lr")):
        if lr_range(value) != (None, None):
            return value
    return None


def plan_lr_range(plan: Mapping) -> tuple[float, float] | None:
    """(rate of the first trainable group, rate of the last) in the plan's last phase: what the run's slice
    became (``full_unfreeze``: ``base_lr/2/lr_mult .. base_lr/2``, as fastai's ``fine_tune``); None without one."""
    phases = plan.get("phases") or []
    if not phases or not isinstance(phases[-1].get("lr"), list):
        return None
    last = phases[-1]
    trainable = set(last.get("trainable") or [])
    rates = [float(r) for g, r in zip(plan.get("groups") or [], last["lr"], strict=False) if g in trainable]
    return (rates[0], rates[-1]) if rates else None


def lr_range(value) -> tuple[float | None, float | None]:
    """(rate of the first layer group, rate of the last) of an lr setting, as the harness spreads it (fastai's
    ``slice``): a number ``x`` -> (x, x); ``{hi: x}`` -> (x/10, x) (``slice(hi)``: every group but the head at
    hi/10); ``{lo: a, hi: b}`` -> (a, b); a list of per-group rates -> (its first, its last)."""

    def number(v):
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    if isinstance(value, Mapping):
        hi, lo = number(value.get("hi")), number(value.get("lo"))
        if hi is None:
            return None, None
        return (hi / 10 if lo is None else lo), hi
    if isinstance(value, list | tuple):
        rates = [number(v) for v in value]
        return (rates[0], rates[-1]) if rates and None not in rates else (None, None)
    x = number(value)
    return x, x


def peak_lr(config: Mapping) -> float | None:
    """The run's peak rate: the strategy's ``lr``/``base_lr`` if set, else the top-level ``lr``; of a slice
    ``{lo, hi}`` its ``hi`` and of a per-group list its last entry (the head's rate)."""
    return lr_range(_lr_setting(config))[1]


def _number(value):
    return float("nan") if value is None else value


def _renamed(values: Mapping) -> dict:
    """A record's metrics (or a base summary) with the test-selected mean under its optimistic name."""
    out = dict(values)
    if metrics_mod.OPTIMISTIC in out:
        out[metrics_mod.OPTIMISTIC_FIELD] = out.pop(metrics_mod.OPTIMISTIC)
    return out


def _base_summary(summary: Mapping) -> tuple[dict, bool]:
    """A base summary of a treatment's record; one from before ``test_acc_best_val_k`` gets it from the base's own
    record (``path`` names its cache folder) when that is readable. Returns (summary, whether it was derived)."""
    out = _renamed(summary)
    if metrics_mod.BEST_VAL_K in out:
        return out, False
    out[metrics_mod.BEST_VAL_K] = _base_best_val_k(str(out.get("path") or ""))
    return out, out[metrics_mod.BEST_VAL_K] is not None


_BASES: dict[tuple, float | None] = {}  # (record path, mtime) -> its value: many treatments name one base


def _base_best_val_k(folder: str) -> float | None:
    path = os.path.join(folder, RECORD_NAME) if folder else ""
    try:
        key = (path, os.stat(path).st_mtime_ns)
    except OSError:
        return None
    if key not in _BASES:
        base = _read_json(Path(path))
        _BASES[key] = metrics_mod.best_val_k(base.get("history") or [], metrics_mod.k_of(base))
    return _BASES[key]


def _history_of(record: Mapping) -> list[dict]:
    out = []
    for h in record.get("history") or []:
        entry = {k: v for k, v in h.items() if k not in ("lr", "lr_max")}
        entry.update({f"lr.{g}": v for g, v in (h.get("lr") or {}).items()})
        entry.update({f"lr_max.{g}": v for g, v in (h.get("lr_max") or {}).items()})
        out.append(entry)
    return out


def _history_rows(row: Mapping, history: list[dict]) -> list[dict]:
    ident = {
        k: row.get(k)
        for k in (
            "folder",
            "kind",
            "status",
            "experiment",
            "strategy",
            "transfer.treatment",
            "transfer.n",
            "seed",
        )
    }
    train, batch = row.get("data.train"), row.get("batch_size")
    steps_per_epoch = math.ceil(train / batch) if train and batch else None
    rows, elapsed = [], 0.0
    for h in history:
        elapsed += h.get("seconds") or 0.0
        epoch = h.get("epoch")
        step = epoch * steps_per_epoch if steps_per_epoch and epoch is not None else None
        rows.append({**ident, **h, "step": step, "elapsed_s": elapsed})
    return rows


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for col in FRONT + ["path", "sweep"]:
        if col not in frame:
            frame[col] = None
    for col in ("timing.started", "timing.finished"):
        if col in frame:
            frame[col] = pd.to_datetime(frame[col], utc=True, errors="coerce")
    for col in [c for c in frame.columns if c.startswith("metrics.")] + ["transfer.n", "seed", "version"]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    config_cols = sorted(c for c in frame.columns if c.startswith("config."))
    front = FRONT + ["path", "sweep"]
    middle = sorted(c for c in frame.columns if c not in front and c not in config_cols)
    frame = frame[front + middle + config_cols]
    return frame.sort_values(["folder"], kind="stable").reset_index(drop=True)
