"""Strategies compared by accuracy and by the compute each spent (``experiment=strategy_benchmark``, or any
strategy comparison whose records have a ``compute`` section).

- :func:`benchmark_frame`: one row per run: experiment group (one per data size), strategy variant, seed,
  training images, test accuracy (%), FLOPs (the record's ``compute.flops``: every pass the run executed),
  wall seconds, epochs;
- :func:`benchmark_table`: per (group, variant) means and 95% t-intervals over seeds of accuracy, FLOPs and
  seconds, FLOPs relative to ``never``, the accuracy difference to ``never`` paired by seed (the same seed is
  the same base network and the same data subset), and whether the variant is on the Pareto front of mean
  accuracy against mean FLOPs (and against mean seconds);
- :func:`findings`: the "which strategy when" lines per data size and the issue's two targets, each with the
  numbers it rests on;
- :func:`accuracy_vs_cost`: the figure, one panel per data size; :func:`section`: the report's section.

Reads plain records (``result.json``), never harness objects.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.stats import Interval, t_interval
from analysis.strategies import strategy_runs
from analysis.tables import escape_md

METRIC = "metrics.test_acc"
REFERENCE = "never"
COSTS = {"flops": "FLOPs executed (forward + backward, all passes)", "seconds": "wall seconds per run"}
TARGET_POINTS = 0.5  # autofreeze/freezeout: within this many points of never ...
TARGET_SHARE = 0.6  # ... at no more than this share of its FLOPs
NEAR_BEST = 0.5  # "as accurate as the best" for the finding: within this many points of the best mean

# One look per strategy in every panel: the fixed plans filled, the adaptive and partial ones hollow.
STYLE = {
    "never": ("#000000", "o"),
    "head_only": ("#7f7f7f", "s"),
    "full_unfreeze": ("#1f77b4", "D"),
    "freeze_to": ("#17becf", "v"),
    "gradual": ("#2ca02c", "^"),
    "surgical": ("#bcbd22", "P"),
    "lp_ft": ("#843c39", "D"),
    "llrd": ("#9467bd", "^"),
    "l2sp": ("#8c564b", "s"),
    "bitfit": ("#e377c2", "v"),
    "freezeout": ("#ff7f0e", "o"),
    "autofreeze": ("#d62728", "*"),
    "auto_rgn": ("#393b79", "X"),
}
ADAPTIVE = ("lp_ft", "llrd", "l2sp", "bitfit", "freezeout", "autofreeze", "auto_rgn")


def _record(path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError, TypeError):
        return {}


def benchmark_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per usable ordinary run that has a compute section (see the module docstring)."""
    sel = strategy_runs(runs, METRIC)
    rows = []
    for _, r in sel.used.iterrows():
        record = _record(r.get("path"))
        compute = record.get("compute") or {}
        if compute.get("flops") is None:
            continue
        config = record.get("config") or {}
        rows.append(
            {
                "group": r["group"],
                "variant": r["variant"],
                "strategy": r["strategy"],
                "seed": r["seed"],
                "train_fraction": (config.get("data") or {}).get("train_fraction"),
                "train_images": (record.get("data") or {}).get("train"),
                "acc": 100 * float(r[METRIC]),
                "flops": float(compute["flops"]),
                "train_flops": float(compute.get("train_flops") or math.nan),
                "seconds": float(r["timing.seconds"]),
                "train_seconds": float(compute.get("train_seconds") or math.nan),
                "epochs": len(record.get("history") or []),
                "froze": _froze(record),
                "folder": r["folder"],
            }
        )
    columns = [
        "group", "variant", "strategy", "seed", "train_fraction", "train_images", "acc", "flops",
        "train_flops", "seconds", "train_seconds", "epochs", "froze", "folder",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _froze(record: dict) -> str:
    """When each group froze, from the record's adaptive section: ``conv1@e1, conv2@e2``."""
    adaptive = record.get("adaptive") or {}
    return ", ".join(f"{g}@e{at['epoch']}" for g, at in (adaptive.get("froze_at") or {}).items())


def size_label(part: pd.DataFrame) -> str:
    fraction = part["train_fraction"].dropna()
    images = part["train_images"].dropna()
    share = f"{100 * float(fraction.iloc[0]):g} % of B's training data" if len(fraction) else "B"
    return share + (f" ({int(images.iloc[0])} images)" if len(images) else "")


def pareto_front(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """True for the points no other point dominates (as cheap or cheaper and as accurate or more, better in
    one); ties on both count as the front for each."""
    cost, acc = np.asarray(cost, dtype=float), np.asarray(acc, dtype=float)
    front = np.ones(len(cost), dtype=bool)
    for i in range(len(cost)):
        better = (cost <= cost[i]) & (acc >= acc[i]) & ((cost < cost[i]) | (acc > acc[i]))
        front[i] = not better.any()
    return front


def paired_difference(part: pd.DataFrame, a: str, b: str, value: str = "acc") -> Interval:
    """``a - b`` of ``value`` paired by seed (the seeds both have), with its 95% t-interval."""
    wide = part.pivot_table(index="seed", columns="variant", values=value, aggfunc="mean")
    if a not in wide or b not in wide:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0)
    diff = (wide[a] - wide[b]).dropna()
    return t_interval(diff.to_numpy())


def benchmark_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (group, variant): runs, acc/FLOPs/seconds mean and 95% CI, FLOPs and seconds relative to never,
    accuracy minus never's paired by seed, and the Pareto flags (see the module docstring)."""
    rows = []
    for group, part in frame.groupby("group", sort=False):
        never_flops = part.loc[part["variant"] == REFERENCE, "flops"].mean()
        never_seconds = part.loc[part["variant"] == REFERENCE, "seconds"].mean()
        for variant, runs in part.groupby("variant", sort=True):
            acc, flops, sec = (t_interval(runs[c].to_numpy()) for c in ("acc", "flops", "seconds"))
            delta = paired_difference(part, variant, REFERENCE)
            rows.append(
                {
                    "group": group,
                    "data": size_label(part),
                    "variant": variant,
                    "strategy": runs["strategy"].iloc[0],
                    "runs": len(runs),
                    "epochs": runs["epochs"].mean(),
                    "acc_mean": acc.mean,
                    "acc_lo": acc.lo,
                    "acc_hi": acc.hi,
                    "flops_mean": flops.mean,
                    "flops_lo": flops.lo,
                    "flops_hi": flops.hi,
                    "flops_vs_never": flops.mean / never_flops if never_flops else math.nan,
                    "seconds_mean": sec.mean,
                    "seconds_lo": sec.lo,
                    "seconds_hi": sec.hi,
                    "seconds_vs_never": sec.mean / never_seconds if never_seconds else math.nan,
                    "vs_never": delta.mean if variant != REFERENCE else math.nan,
                    "vs_never_lo": delta.lo if variant != REFERENCE else math.nan,
                    "vs_never_hi": delta.hi if variant != REFERENCE else math.nan,
                    "froze": "; ".join(sorted({f for f in runs["froze"] if f})),
                }
            )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["pareto_flops"] = False
    table["pareto_seconds"] = False
    for _, part in table.groupby("group", sort=False):
        table.loc[part.index, "pareto_flops"] = pareto_front(part["flops_mean"], part["acc_mean"])
        table.loc[part.index, "pareto_seconds"] = pareto_front(part["seconds_mean"], part["acc_mean"])
    return table


def _ci(lo: float, hi: float, sign: str = "") -> str:
    return "" if math.isnan(lo) else f"[{lo:{sign}.2f}, {hi:{sign}.2f}]"


def shown_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table as report.md shows it: sorted by accuracy, CIs as text, FLOPs in GFLOPs."""
    t = table.sort_values("acc_mean", ascending=False)
    return pd.DataFrame(
        {
            "strategy": t["variant"],
            "runs": t["runs"],
            "epochs": t["epochs"],
            "test acc (%)": t["acc_mean"],
            "95% CI": [_ci(a, b) for a, b in zip(t["acc_lo"], t["acc_hi"], strict=True)],
            "vs never (pts, paired)": [
                "" if math.isnan(d) else f"{d:+.2f} {_ci(a, b, '+')}"
                for d, a, b in zip(t["vs_never"], t["vs_never_lo"], t["vs_never_hi"], strict=True)
            ],
            "GFLOPs": t["flops_mean"] / 1e9,
            "FLOPs / never": t["flops_vs_never"],
            "seconds": t["seconds_mean"],
            "s / never": t["seconds_vs_never"],
            "Pareto (FLOPs)": ["yes" if p else "" for p in t["pareto_flops"]],
            "Pareto (s)": ["yes" if p else "" for p in t["pareto_seconds"]],
            "froze (group@epoch)": t["froze"],
        }
    )


# --- findings ----------------------------------------------------------------------------------------------


def findings(table: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Per data size: the most accurate strategy, the strategies indistinguishable from it, the cheapest one
    near it, the Pareto front, a "which strategy when" line, and the issue's two targets. Every line carries
    the numbers it rests on; a CI that contains 0 is said to."""
    rows = []
    for group, part in table.groupby("group", sort=False):
        runs = frame[frame["group"] == group]
        data = part["data"].iloc[0]
        best = part.loc[part["acc_mean"].idxmax()]
        ties = []
        for _, r in part.iterrows():
            if r["variant"] == best["variant"]:
                continue
            d = paired_difference(runs, r["variant"], best["variant"])
            if d.has_ci and d.lo <= 0 <= d.hi:
                ties.append(r["variant"])
        near = part[part["acc_mean"] >= best["acc_mean"] - NEAR_BEST].sort_values("flops_mean")
        cheap = near.iloc[0]
        front = part[part["pareto_flops"]].sort_values("flops_mean")
        rows.append(
            {
                "group": group,
                "data": data,
                "id": "best",
                "finding": f"most accurate: {best['variant']}",
                "numbers": f"{best['acc_mean']:.2f} % {_ci(best['acc_lo'], best['acc_hi'])}".strip()
                + _share(best),
            }
        )
        rows.append(
            {
                "group": group,
                "data": data,
                "id": "ties",
                "finding": "not distinguishable from it (paired 95% CI of the difference contains 0): "
                + (", ".join(ties) or "none"),
                "numbers": f"{len(ties)} of {len(part) - 1}",
            }
        )
        rows.append(
            {
                "group": group,
                "data": data,
                "id": "cheapest_near_best",
                "finding": f"cheapest within {NEAR_BEST:g} pts of the best mean: {cheap['variant']}",
                "numbers": f"{cheap['acc_mean']:.2f} %" + _share(cheap),
            }
        )
        rows.append(
            {
                "group": group,
                "data": data,
                "id": "pareto",
                "finding": "Pareto front, accuracy against FLOPs (cheapest first): "
                + " < ".join(front["variant"]),
                "numbers": ", ".join(f"{r.variant} {r.acc_mean:.2f} %" for r in front.itertuples()),
            }
        )
        rows.append({"group": group, "data": data, "id": "when", "finding": _when(best, cheap, front, ties)})
        rows += _targets(group, data, part, runs)
    return pd.DataFrame(rows, columns=["group", "data", "id", "finding", "numbers", "holds"])


def _share(row) -> str:
    """``, 0.45x never's FLOPs (0.52x its seconds)``, or a note when never was not run."""
    if math.isnan(row["flops_vs_never"]):
        return " (never not run: no FLOP ratio)"
    return f", {row['flops_vs_never']:.2f}x never's FLOPs ({row['seconds_vs_never']:.2f}x its seconds)"


def _when(best, cheap, front: pd.DataFrame, ties: list[str]) -> str:
    """The one-line answer to "which strategy for this data and budget", from the numbers above."""
    text = f"Best accuracy: {best['variant']} ({best['acc_mean']:.2f} %)"
    if ties:
        text += f", though {len(ties)} other(s) are within its seeds' noise"
    if cheap["variant"] != best["variant"]:
        saving = 1 - cheap["flops_mean"] / best["flops_mean"]
        text += (
            f"; on a compute budget, {cheap['variant']} gets within {NEAR_BEST:g} pts "
            f"({cheap['acc_mean']:.2f} %) for {100 * saving:.0f} % fewer FLOPs than {best['variant']}"
        )
    cheapest = front.iloc[0]
    if cheapest["variant"] not in (best["variant"], cheap["variant"]):
        saving = 1 - cheapest["flops_mean"] / best["flops_mean"]
        text += (
            f"; the cheapest point on the front is {cheapest['variant']} ({cheapest['acc_mean']:.2f} %, "
            f"{100 * saving:.0f} % fewer FLOPs than {best['variant']})"
        )
    return text + "."


def _targets(group: str, data: str, part: pd.DataFrame, runs: pd.DataFrame) -> list[dict]:
    """The issue's targets, one line per variant of autofreeze and freezeout (a grid may hold several)."""
    rows = []
    if REFERENCE not in set(part["variant"]):
        return rows
    for _, r in part[part["strategy"].isin(("autofreeze", "freezeout"))].iterrows():
        name = r["variant"]
        d = paired_difference(runs, name, REFERENCE)
        holds = d.mean >= -TARGET_POINTS and r["flops_vs_never"] <= TARGET_SHARE
        rows.append(
            {
                "group": group,
                "data": data,
                "id": f"target_{name}",
                "finding": f"target: {name} within {TARGET_POINTS:g} pts of never's test accuracy at <= "
                f"{100 * TARGET_SHARE:.0f} % of its FLOPs",
                "numbers": f"{d.mean:+.2f} pts {_ci(d.lo, d.hi, '+')} at {100 * r['flops_vs_never']:.0f} % of "
                f"never's FLOPs ({100 * r['seconds_vs_never']:.0f} % of its seconds)",
                "holds": "yes" if holds else "no",
            }
        )
    if {"lp_ft", "full_unfreeze"} <= set(part["variant"]):
        d = paired_difference(runs, "lp_ft", "full_unfreeze")
        rows.append(
            {
                "group": group,
                "data": data,
                "id": "target_lp_ft",
                "finding": "target: lp_ft >= full_unfreeze (test accuracy, paired by seed)",
                "numbers": f"{d.mean:+.2f} pts {_ci(d.lo, d.hi, '+')}"
                + (" (the CI contains 0)" if d.has_ci and d.lo <= 0 <= d.hi else ""),
                "holds": "yes" if d.mean >= 0 else "no",
            }
        )
    return rows


# --- figures -----------------------------------------------------------------------------------------------


def accuracy_vs_cost(frame: pd.DataFrame, table: pd.DataFrame, cost: str = "flops") -> Figure:
    """Test accuracy against ``cost`` (``flops``, log scale, or ``seconds``), one panel per data size: every
    run a small dot, every strategy its mean with 95% CI bars on both axes, the Pareto front of the means as
    a dashed staircase through its points (labelled)."""
    if cost not in COSTS:
        raise ValueError(f"cost={cost!r}; choose one of {', '.join(COSTS)}")
    groups = list(dict.fromkeys(table["group"]))
    with mpl.rc_context({"font.size": 10, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 8}):
        fig = Figure(figsize=(6.4 * len(groups), 5.6))
        axes = fig.subplots(1, len(groups), squeeze=False)[0]
        for ax, group in zip(axes, groups, strict=True):
            part, runs = table[table["group"] == group], frame[frame["group"] == group]
            for _, r in part.iterrows():
                colour, marker = STYLE.get(r["strategy"], ("#333333", "o"))
                hollow = r["strategy"] in ADAPTIVE
                dots = runs[runs["variant"] == r["variant"]]
                x = dots[cost].to_numpy(dtype=float) / (1e9 if cost == "flops" else 1)
                ax.plot(x, dots["acc"], linestyle="", marker=marker, color=colour, alpha=0.35, markersize=4)
                scale = 1e9 if cost == "flops" else 1
                mean = r[f"{cost}_mean"] / scale
                lo, hi = r[f"{cost}_lo"] / scale, r[f"{cost}_hi"] / scale
                xerr = None if math.isnan(lo) else [[mean - max(lo, 0)], [hi - mean]]
                yerr = (
                    None
                    if math.isnan(r["acc_lo"])
                    else [[r["acc_mean"] - r["acc_lo"]], [r["acc_hi"] - r["acc_mean"]]]
                )
                ax.errorbar(
                    mean,
                    r["acc_mean"],
                    xerr=xerr,
                    yerr=yerr,
                    marker=marker,
                    markersize=9,
                    color=colour,
                    markerfacecolor="white" if hollow else colour,
                    markeredgewidth=1.6,
                    capsize=3,
                    linewidth=1.2,
                    label=r["variant"],
                    zorder=3,
                )
            front = part[part[f"pareto_{cost}"]].sort_values(f"{cost}_mean")
            fx = front[f"{cost}_mean"].to_numpy() / (1e9 if cost == "flops" else 1)
            ax.step(fx, front["acc_mean"], where="post", color="#444444", linestyle="--", linewidth=1.2, zorder=2,
                    label="Pareto front (means)")  # fmt: skip
            _front_labels(ax, front, fx)
            if cost == "flops":
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
                # minor ticks labelled at 2 and 5 times a power of ten only, so labels never run together
                ax.xaxis.set_minor_formatter(
                    mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else "")
                )
            ax.set_xlabel("GFLOPs executed per run (log scale)" if cost == "flops" else COSTS[cost])
            ax.set_ylabel("test accuracy on B (%)")
            _clip_far(ax, part, runs, cost)
            seeds = int(part["runs"].max())
            ax.set_title(
                f"{size_label(runs)}: mean and 95% CI over {seeds} seed{'s' * (seeds != 1)}", loc="left"
            )
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=7, frameon=False, bbox_to_anchor=(0.5, -0.01))
        fig.suptitle(
            f"Accuracy against {'compute' if cost == 'flops' else 'wall time'}: fixed plans filled, adaptive and "
            "partial strategies hollow; dots are single runs",
            x=0.01,
            ha="left",
            fontsize=11,
        )
        fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    return fig


def _clip_far(ax, part: pd.DataFrame, runs: pd.DataFrame, cost: str, span: float = 12.0) -> None:
    """Keep the axis on the strategies that compete: a mean more than ``span`` points below the best gets an
    arrow at the bottom edge, at its cost, and its name and value in a box in the corner, so no strategy is
    silently off the plot."""
    import textwrap

    best = float(part["acc_mean"].max())
    floor = max(float(runs["acc"].min()) - 1.0, best - span)
    ax.set_ylim(floor, min(100.5, float(runs["acc"].max()) + 0.7))
    scale = 1e9 if cost == "flops" else 1
    below = part[part["acc_mean"] < floor].sort_values("acc_mean", ascending=False)
    for _, r in below.iterrows():
        colour, _ = STYLE.get(r["strategy"], ("#333333", "o"))
        x = r[f"{cost}_mean"] / scale
        ax.annotate(
            "", (x, floor), xytext=(x, floor + 0.05 * span), arrowprops={"arrowstyle": "->", "color": colour}
        )
    if len(below):
        text = f"below {floor:.1f} % (arrows): " + ", ".join(
            f"{r.variant} {r.acc_mean:.1f}%" for r in below.itertuples()
        )
        ax.text(
            0.01,
            0.09,
            textwrap.fill(text, 58),
            transform=ax.transAxes,
            fontsize=8,
            va="bottom",
            bbox={"facecolor": "white", "edgecolor": "#bbbbbb", "alpha": 0.9},
        )


def _front_labels(ax, front: pd.DataFrame, xs: np.ndarray) -> None:
    """One label per point of the front; strategies at the very same point (equal runs) share it."""
    points: dict[tuple[float, float], list[str]] = {}
    for x, (_, r) in zip(xs, front.iterrows(), strict=True):
        points.setdefault((round(float(x), 6), round(float(r["acc_mean"]), 6)), []).append(r["variant"])
    for (x, y), names in points.items():
        ax.annotate(
            " = ".join(names),
            (x, y),
            textcoords="offset points",
            xytext=(5, -11),
            fontsize=8,
            color="#222222",
        )


# --- the report's section ----------------------------------------------------------------------------------


def section(doc, runs: pd.DataFrame) -> dict | None:
    """Write the benchmark section into ``doc`` (analysis.report's document); None when no run has FLOPs."""
    frame = benchmark_frame(runs)
    if frame.empty or frame["variant"].nunique() < 2:
        return None
    table = benchmark_table(frame)
    found = findings(table, frame)
    doc.add(
        "## Strategy benchmark: accuracy against compute",
        "Test accuracy (`metrics.test_acc`, the weights each run ends with) against the FLOPs each run executed "
        "(its record's `compute.flops`: matmul and convolution FLOPs of every forward and backward pass, "
        "evaluations and the frozen prefix's one-time cost included, as `torch.utils.flop_counter."
        "FlopCounterMode` counts them) and against its wall seconds. Means over seeds with 95% t-intervals; "
        "differences to never are paired by seed (a seed is one base network and one data subset). Seconds "
        "were measured on a machine shared with other jobs: FLOPs are exact, seconds are noisy.",
    )
    for cost in COSTS:
        doc.figure(
            accuracy_vs_cost(frame, table, cost),
            f"benchmark_accuracy_vs_{cost}",
            f"Test accuracy against {COSTS[cost]}, one panel per data size, with the Pareto front",
        )
    info = {}
    for group in dict.fromkeys(table["group"]):
        part = table[table["group"] == group]
        slug = doc.slug(f"benchmark_{group}")
        data = part["data"].iloc[0]
        doc.add(f"### {escape_md(data)}", f"Experiment group: {escape_md(group)}.")
        doc.table(
            part.drop(columns="group"),
            f"{slug}_table",
            f"Strategies on {data}, sorted by test accuracy",
            shown=shown_table(part),
            digits={"epochs": 1, "GFLOPs": 1, "FLOPs / never": 2, "s / never": 2, "seconds": 1},
        )
        rows = found[found["group"] == group]
        when = rows.loc[rows["id"] == "when", "finding"]
        if len(when):
            doc.add(f"**Which strategy when ({escape_md(data)}).** {escape_md(when.iloc[0])}")
        shown = rows[rows["id"] != "when"][["finding", "numbers", "holds"]].fillna("")
        doc.table(rows.drop(columns="group"), f"{slug}_findings", f"Findings on {data}", shown=shown)
        info[group] = {"data": data, "strategies": len(part), "runs": int(part["runs"].sum())}
    return info
