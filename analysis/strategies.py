"""Freezing strategies compared: accuracy and wall time per strategy, learning curves with their unfreeze points,
per-group learning rates. Ordinary runs only (not transfer treatments, bases or search trials).

A strategy's *variant* is its name plus the ``strategy.*`` settings that tell runs of that name apart inside one
experiment (``freeze_to (k=1)`` vs ``freeze_to (k=2)``); seeds are replicates.
"""

from __future__ import annotations

import pandas as pd

from analysis.selection import Selection, select
from analysis.stats import t_interval

VARY = ("seed", "init_seed", "strategy.*", "lr", "init.*")


def strategy_runs(runs: pd.DataFrame, metric: str = "metrics.test_acc") -> Selection:
    """The ordinary runs of ``runs`` with a ``variant`` column, grouped by experiment (seeds are replicates)."""
    sel = select(
        runs, view=f"strategy comparison ({metric})", in_view=runs["kind"] == "run", metric=metric, vary=VARY
    )
    sel.used["variant"] = variants(sel.used)
    return sel


def variants(runs: pd.DataFrame) -> pd.Series:
    out = pd.Series(runs["strategy"].astype(str), index=runs.index, dtype=object)
    settings = [c for c in runs.columns if c.startswith("config.strategy.") and c != "config.strategy.name"]
    settings += [c for c in ("config.lr",) if c in runs]
    for _, part in runs.groupby(["group", "strategy"], sort=False):
        differ = [c for c in settings if part[c].astype(str).nunique() > 1]
        for i, r in part.iterrows():
            if differ:
                extra = ", ".join(f"{c.split('.')[-1]}={r[c]}" for c in differ)
                out[i] = f"{r['strategy']} ({extra})"
    return out


def strategy_table(sel: Selection, metric: str = "metrics.test_acc") -> pd.DataFrame:
    """Per (group, variant): runs, accuracy mean and 95% CI over seeds (%), wall seconds mean and CI, and
    throughput (samples/s)."""
    rows = []
    for (group, variant), part in sel.used.groupby(["group", "variant"], sort=True):
        acc = t_interval(100 * part[metric].astype(float).to_numpy())
        sec = t_interval(part["timing.seconds"].astype(float).dropna().to_numpy())
        rows.append(
            {
                "group": group,
                "variant": variant,
                "runs": len(part),
                "seeds": part["seed"].nunique(),
                "acc_mean": acc.mean,
                "acc_lo": acc.lo,
                "acc_hi": acc.hi,
                "seconds_mean": sec.mean,
                "seconds_lo": sec.lo,
                "seconds_hi": sec.hi,
                "samples_per_s": part.get("timing.samples_per_s", pd.Series(dtype=float))
                .astype(float)
                .mean(),
                "note": "1 run: no CI" if acc.n == 1 else "",
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "group",
            "variant",
            "runs",
            "seeds",
            "acc_mean",
            "acc_lo",
            "acc_hi",
            "seconds_mean",
            "seconds_lo",
            "seconds_hi",
            "samples_per_s",
            "note",
        ],
    )


def phase_boundaries(history: pd.DataFrame) -> pd.DataFrame:
    """Where each run enters a new phase (an unfreeze point): folder, epoch (the first of the new phase), step
    (optimizer steps done before it), phase (its name)."""
    rows = []
    for folder, run in history.groupby("folder", sort=True):
        run = run.sort_values("epoch")
        change = run["phase_index"].diff().fillna(0) != 0
        prev_step = run["step"].shift(1)
        for i in run.index[change]:
            rows.append(
                {
                    "folder": folder,
                    "epoch": run.at[i, "epoch"],
                    "step": prev_step[i],
                    "phase": run.at[i, "phase"],
                }
            )
    return pd.DataFrame(rows, columns=["folder", "epoch", "step", "phase"])
