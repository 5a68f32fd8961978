"""Which runs a table uses, which it leaves out and why, and which runs belong to the same experiment.

A table never averages across experiments: runs are grouped by *experiment identity*, the part of their
config that is not a dimension of the grid (treatment, n, seeds, ...) and that decides the numbers. Two
folders of the same grid merge; a grid with other epochs, another model or the dissimilar split stays apart.

Left out, always with a reason and counted: failed, pruned, another schema version, unreadable records,
job folders with no record, a NaN metric, and duplicates (the same run id twice, e.g. a grid run twice into
one folder: the same config gives the same numbers, so counting it twice would fake a replicate).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

# Config keys that never change what a run computes. The record module owns that list (the run id hashes the
# rest), so it is read from there: a key the harness adds (diagnostics, caches) never splits an experiment.
# experiment_name is left in: it names the grid, so here it is part of the identity. The device is added:
# `auto` picks whatever the machine has.
try:  # harness.record is a stdlib-only module: the schema's owner
    from harness.record import NOT_IDENTITY as _RECORD_NOT_IDENTITY
except ImportError:  # analysis installed without the harness: the list as of record version 1
    _RECORD_NOT_IDENTITY = (
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
        "diagnostics",
    )
NOT_IDENTITY = tuple(k for k in dict.fromkeys((*_RECORD_NOT_IDENTITY, "device")) if k != "experiment_name")
# Columns that name an experiment in labels (the identity itself is the whole config).
LABEL_COLUMNS = ("experiment", "data", "model", "split", "transfer.b_domain")


@dataclass
class Selection:
    """The runs a view uses, the ones it leaves out (with ``reason`` and ``detail``) and those outside it."""

    view: str
    used: pd.DataFrame
    left_out: pd.DataFrame  # columns: folder, group, reason, detail
    outside: int = 0  # runs in the folder that are not part of this view at all (e.g. bases, other kinds)
    outside_kinds: dict = field(default_factory=dict)

    def counts(self, group: str | None = None) -> pd.DataFrame:
        """Used and left-out runs per reason (of one group, or of the whole view)."""
        used = self.used if group is None else self.used[self.used["group"] == group]
        out = self.left_out if group is None else self.left_out[self.left_out["group"] == group]
        rows = [{"reason": "used", "runs": len(used)}]
        rows += [{"reason": r, "runs": int(c)} for r, c in out["reason"].value_counts().sort_index().items()]
        return pd.DataFrame(rows)

    def text(self, group: str | None = None) -> str:
        """One line for a table's caption: ``used 58 of 61 runs; left out: 2 failed, 1 NaN metric (...)``."""
        used = self.used if group is None else self.used[self.used["group"] == group]
        out = self.left_out if group is None else self.left_out[self.left_out["group"] == group]
        line = f"used {len(used)} of {len(used) + len(out)} runs"
        if len(out):
            line += "; left out: " + ", ".join(
                f"{c} {r}" for r, c in out["reason"].value_counts().sort_index().items()
            )
        else:
            line += "; none left out"
        return line


def reason_of(problem: str | None) -> str:
    """The short category of a load ``problem`` (the full text stays in ``detail``)."""
    text = str(problem)
    for prefix, reason in (
        ("failed", "failed"),
        ("pruned", "pruned"),
        ("schema version", "other schema version"),
        ("unreadable", "unreadable"),
        ("record of an unexpected shape", "unreadable"),
        ("no result.json", "no record (job died or still running)"),
    ):
        if text.startswith(prefix):
            return reason
    return "bad status"


def select(
    runs: pd.DataFrame, *, view: str, in_view: pd.Series, metric: str | None, vary: Sequence[str]
) -> Selection:
    """Split the runs of ``in_view`` into used and left out, and give every row its experiment ``group``.

    ``vary``: config keys (``config.`` columns, a trailing ``*`` for a prefix) that are grid dimensions or
    replicates of this view, so not part of the experiment identity. ``metric``: the column a table averages.
    Groups are formed by the usable runs; a left-out run joins the group with its identity or, when its config
    differs (a diverged lr, a job that died before resolving its config), the one group with its label.
    """
    outside = runs[~in_view]
    runs = runs[in_view].copy()
    reasons = pd.Series(None, index=runs.index, dtype=object)
    details = pd.Series(None, index=runs.index, dtype=object)
    bad = runs["problem"].notna()
    reasons[bad] = runs.loc[bad, "problem"].map(reason_of)
    details[bad] = runs.loc[bad, "problem"]
    if metric is not None:
        values = (
            pd.to_numeric(runs[metric], errors="coerce")
            if metric in runs
            else pd.Series(math.nan, index=runs.index)
        )
        nan = ~bad & ~values.map(lambda v: isinstance(v, float) and math.isfinite(v))
        reasons[nan], details[nan] = "NaN metric", f"{metric} is missing or not finite"
    good = reasons.isna()
    digest, base = _identities(runs, vary)
    runs["group"] = base
    runs.loc[good, "group"] = _labels(runs[good], digest[good], base[good], vary)
    by_digest = dict(zip(digest[good], runs.loc[good, "group"], strict=True))
    by_base = runs[good].groupby(base[good])["group"].unique()
    for i in runs.index[~good]:
        if digest[i] in by_digest:
            runs.at[i, "group"] = by_digest[digest[i]]
        elif base[i] in by_base and len(by_base[base[i]]) == 1:
            runs.at[i, "group"] = by_base[base[i]][0]
    left = [
        {
            "folder": runs.at[i, "folder"],
            "group": runs.at[i, "group"],
            "reason": reasons[i],
            "detail": details[i],
        }
        for i in runs.index[~good]
    ]
    ok = runs[good]
    # The same run id twice in one experiment: keep the newest, leave the other out as a duplicate (not a
    # replicate). Two experiments may share a run (a grid and its quick version): each keeps its copy.
    ok = ok.sort_values(
        ["timing.finished", "folder"] if "timing.finished" in ok else ["folder"], kind="stable"
    )
    dup = ok["run_id"].notna() & ok.duplicated(subset=["group", "run_id"], keep="last")
    kept = ok[~dup]
    for _, r in ok[dup].iterrows():
        twin = kept.loc[(kept["run_id"] == r["run_id"]) & (kept["group"] == r["group"]), "folder"].iloc[0]
        left.append(
            {
                "folder": r["folder"],
                "group": r["group"],
                "reason": "duplicate run",
                "detail": f"same run id {r['run_id']} as {twin} (same config, same numbers): counted once",
            }
        )
    left_out = pd.DataFrame(left, columns=["folder", "group", "reason", "detail"])
    used = kept.sort_values(["group", "folder"], kind="stable").reset_index(drop=True)
    return Selection(view, used, left_out, len(outside), outside["kind"].value_counts().to_dict())


def identity_columns(runs: pd.DataFrame, vary: Sequence[str]) -> list[str]:
    prefixes = tuple(f"config.{k}." for k in NOT_IDENTITY) + tuple(
        "config." + v[:-1] for v in vary if v.endswith("*")
    )
    exact = {f"config.{k}" for k in NOT_IDENTITY} | {"config." + v for v in vary if not v.endswith("*")}
    return [
        c for c in runs.columns if c.startswith("config.") and c not in exact and not c.startswith(prefixes)
    ]


def experiment_groups(runs: pd.DataFrame, vary: Sequence[str]) -> pd.Series:
    """A readable experiment label per run; runs with the same label but another identity get the keys that
    differ appended (``transferability · mnist5k/convnet · random_half (epochs=3)``)."""
    if runs.empty:
        return pd.Series([], dtype=object, index=runs.index)
    digest, base = _identities(runs, vary)
    return _labels(runs, digest, base, vary)


def _identities(runs: pd.DataFrame, vary: Sequence[str]) -> tuple[pd.Series, pd.Series]:
    """(a digest of each run's identity config, its readable base label)."""
    if runs.empty:
        empty = pd.Series([], dtype=object, index=runs.index)
        return empty, empty
    columns = identity_columns(runs, vary)
    digest = runs[columns].apply(lambda r: _digest({k: v for k, v in r.items() if _present(v)}), axis=1)
    return digest.astype(object), runs.apply(_label, axis=1).astype(object)


def _labels(runs: pd.DataFrame, digest: pd.Series, base: pd.Series, vary: Sequence[str]) -> pd.Series:
    labels = base.copy()
    columns = identity_columns(runs, vary)
    for _, part in runs.groupby(base, sort=False):
        ids = digest[part.index]
        if ids.nunique() <= 1:
            continue
        # Identities sharing a label: name each by the config keys that tell them apart.
        differ = [c for c in columns if part[c].astype(str).nunique() > 1][:3]
        for i in ids.unique():
            first = part[ids == i].iloc[0]
            extra = ", ".join(f"{c.removeprefix('config.')}={first[c]}" for c in differ) or f"id {i}"
            labels[ids[ids == i].index] = f"{base[first.name]} ({extra})"
    return labels


def _label(row: pd.Series) -> str:
    parts = [str(row.get("experiment") or "no experiment_name"), f"{row.get('data')}/{row.get('model')}"]
    if _present(row.get("split")):
        split = str(row.get("split"))
        if _present(row.get("transfer.b_domain")):
            split += f" (B: {row.get('transfer.b_domain')})"
        parts.append(split)
    return " · ".join(parts)


def _present(v) -> bool:
    return not (v is None or (pd.api.types.is_scalar(v) and pd.isna(v)))


def _digest(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:10]
