"""Figures (matplotlib, Agg): transferability in the paper's layout, strategy comparisons, search views.

Every function returns a :class:`matplotlib.figure.Figure` made without pyplot: no global backend or figure
state, so it works the same in scripts, Hydra callbacks and notebooks (where it displays inline); :func:`save`
writes it as PNG and PDF. Accuracies are
percent on every axis, differences points, time seconds. A treatment has one colour and one marker in every
panel and figure (:data:`STYLE`).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis import paper as paper_ref
from analysis.stats import t_interval

# treatment -> (colour, marker), fixed so the same treatment looks the same everywhere. Colour-blind-safe
# (Okabe-Ito) hues, one per treatment: the "+" treatments are not paler copies of their frozen ones (light pink
# AnB+ and light blue BnB+ could not be told apart near the baseB line), and their markers are hollow
# (:data:`HOLLOW`), so frozen vs fine-tuned reads from the marker too.
STYLE = {
    "baseB": ("#000000", None),
    "BnB": ("#0072B2", "o"),
    "BnB+": ("#009E73", "s"),
    "AnB": ("#D55E00", "D"),
    "AnB+": ("#CC79A7", "^"),
    "random": ("#7f7f7f", "X"),
    "warm": ("#E69F00", "P"),
    "scratch": ("#56B4E9", "v"),
}
HOLLOW = {"BnB+", "AnB+"}  # fine-tuned copies: hollow markers (white face, coloured edge)
CYCLE = [
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]
MARKERS = ["o", "s", "D", "^", "v", "P", "X", "*", "<", ">"]
RC = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
}


def save(fig, folder: str | Path, name: str) -> dict:
    """``<folder>/<name>.png`` (150 dpi) and ``.pdf``; closes the figure; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"png": folder / f"{name}.png", "pdf": folder / f"{name}.pdf"}
    fig.savefig(paths["png"], dpi=150, bbox_inches="tight")
    fig.savefig(paths["pdf"], bbox_inches="tight")
    close(fig)
    return paths


def close(fig) -> None:
    """Done with ``fig``. The figures made here are registered nowhere (no pyplot): dropping them frees them. A
    figure a caller made with pyplot (``plt.subplots``) is also held by pyplot's registry until closed, for the
    whole process: in a long loop of reports that registry is what grows, so the figure leaves it here."""
    pyplot = sys.modules.get("matplotlib.pyplot")  # not imported: no figure can be in its registry
    if pyplot is not None and getattr(fig.canvas, "manager", None) is not None:
        pyplot.close(fig)


def style_of(name: str, i: int = 0) -> tuple[str, str]:
    return STYLE.get(name, (CYCLE[i % len(CYCLE)], MARKERS[i % len(MARKERS)]))


def marker_style(name: str, size: float = 7) -> dict:
    """Line2D/plot keyword arguments for a treatment's line and marker (hollow for the "+" treatments)."""
    colour, marker = style_of(name)
    kw = {"color": colour, "marker": marker, "markersize": size, "markeredgecolor": colour}
    if name in HOLLOW:
        kw.update(markerfacecolor="white", markeredgewidth=1.8)
    return kw


# --- transferability ---------------------------------------------------------------------------------------------


def transferability_figure(
    td, group: str, *, panels=("measured", "paper"), reference: pd.DataFrame | None = None
):
    """The paper's layout: accuracy against n, one marker per treatment, the baseB line, 95% CI bands, single
    replicates as small points. Panels: ``measured`` (%), ``relative`` (points vs baseB, paired per replicate),
    ``paper`` (its own n = 1..7, %), ``paper_relative``.

    Bands are Student-t intervals over replicates clipped to what an accuracy can be: [0, 100] % in
    ``measured``; in ``relative`` [-baseB, 100 - baseB] points (baseB = the mean of the line). With two
    replicates a t-interval is 12.7 standard errors wide and would otherwise run below 0 %. The legend lists
    only what the panels draw: the treatments the data has (the paper panels show the same ones)."""
    from analysis.transferability import N_TREATMENTS, baseb_per_replicate, ci_table

    ref = paper_ref.load_reference() if reference is None else reference
    table = ci_table(td, numeric=True, group=group)
    layers = td.layers(group)
    values = td.values[(td.values["group"] == group) & td.values["n"].notna()].copy()
    base = baseb_per_replicate(td, group)
    values["delta"] = values["value"] - values["replicate"].map(base)
    replicates = int(table["replicates"].max()) if len(table) else 0
    present = [t for t in N_TREATMENTS if t in set(table["treatment"])]
    b = table[table["treatment"] == "baseB"]
    has_base = bool(len(b)) and not math.isnan(float(b["mean"].iloc[0]))
    base_ci = has_base and not math.isnan(float(b["ci_lo"].iloc[0]))
    rows = table[table["treatment"].isin(present)]
    bands = bool(rows["ci_lo"].notna().any()) or (
        "relative" in panels and bool(rows["delta_lo"].notna().any())
    )
    dots = any(values[values["treatment"] == t].groupby("n").size().max() >= 2 for t in present)
    with mpl.rc_context(RC):
        fig = Figure(figsize=(6.2 * len(panels), 5.2))
        axes = fig.subplots(1, len(panels), squeeze=False)
        for letter, ax, kind in zip("abcd", axes[0], panels, strict=False):
            if kind in ("measured", "relative"):
                _measured_panel(ax, table, values, layers, relative=kind == "relative", treatments=present)
                what = (
                    "difference to baseB (points)"
                    if kind == "relative"
                    else f"{_metric_short(td.metric)} (%)"
                )
                ax.set_ylabel(what)
                ax.set_xlabel(f"n: layers copied from the base (this net: L = {layers})")
                rep = f"95% CI over {replicates} replicates" if replicates > 1 else "1 replicate, no CI"
                what = "vs each replicate's baseB" if kind == "relative" else "mean"
                ax.set_title(f"({letter}) this harness: {what}, {rep}", loc="left")
            else:
                _paper_panel(ax, ref, relative=kind == "paper_relative", treatments=present)
                ax.set_ylabel(
                    "difference to baseB (points)" if kind == "paper_relative" else "top-1 accuracy (%)"
                )
                ax.set_xlabel(f"n: layers copied (paper's net: L = {paper_ref.LAYERS})")
                ax.set_title(f"({letter}) paper: ImageNet half B (no CIs in its table)", loc="left")
        handles = [Line2D([], [], **marker_style(t), label=t) for t in present]
        if has_base or any(k != "measured" for k in panels):
            handles.append(
                Line2D([], [], color="black", linestyle="--", label="baseB (trained on B from scratch)")
            )
        if base_ci and "measured" in panels:
            handles.append(Line2D([], [], color="black", linestyle=":", label="baseB 95% CI"))
        if bands:
            bounds = "[0, 100] %" if "measured" in panels else "the accuracy's bounds"
            handles.append(
                Patch(
                    facecolor="grey",
                    alpha=0.25,
                    label=f"treatment 95% CI (t over replicates, clipped to {bounds})",
                )
            )
        if dots:
            handles.append(
                Line2D(
                    [],
                    [],
                    color="grey",
                    marker="o",
                    linestyle="",
                    markersize=4,
                    alpha=0.6,
                    label="one replicate",
                )
            )
        # a few rows at most, within the figure's width
        ncol = min(len(handles), 3 if len(panels) == 1 else 4)
        fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False, bbox_to_anchor=(0.5, -0.01))
        fig.suptitle(f"{group}\nmetric: {_metric_label(td.metric)}", fontsize=12)
        fig.tight_layout(rect=(0, 0.06 + 0.045 * math.ceil(len(handles) / ncol), 1, 1))
    return fig


def _metric_label(metric: str) -> str:
    from analysis import metrics

    return metrics.LABELS.get(metric, metric)


def _metric_short(metric: str) -> str:
    from analysis import metrics

    return metrics.SHORT.get(metric, metric)


def _measured_panel(ax, table, values, layers, *, relative: bool, treatments) -> None:
    ns = np.arange(1, layers)
    b = table[table["treatment"] == "baseB"]
    base_mean = float(b["mean"].iloc[0]) if len(b) else math.nan
    if relative:
        ax.axhline(0, color="black", linestyle="--", linewidth=1.5)
    elif len(b) and not math.isnan(base_mean):
        mean, lo, hi = b[["mean", "ci_lo", "ci_hi"]].iloc[0]
        ax.axhline(mean, color="black", linestyle="--", linewidth=1.5)
        if not math.isnan(lo):  # thin dotted bounds, not a band: the treatments' bands sit on top of it
            for y in (lo, hi):
                ax.axhline(y, color="black", linestyle=":", linewidth=1.0)
    # A difference to baseB is an accuracy minus baseB: it cannot leave [-baseB, 100 - baseB].
    floor, ceiling = (
        ((-base_mean, 100 - base_mean) if not math.isnan(base_mean) else (-100, 100))
        if relative
        else (0, 100)
    )
    present = [t for t in treatments if t in set(table["treatment"])]
    kept: list[float] = [0.0] if relative else list(b["mean"].dropna())
    bounds: list[float] = [] if relative else list(b[["ci_lo", "ci_hi"]].stack().dropna())
    rnd_kept: list[float] = []
    rnd_bounds: list[float] = []
    random_band = None
    for i, t in enumerate(present):
        colour = STYLE[t][0]
        rows = table[table["treatment"] == t].sort_values("n")
        x = rows["n"].astype(float).to_numpy()
        mean = (rows["delta"] if relative else rows["mean"]).to_numpy(dtype=float)
        lo = np.clip((rows["delta_lo"] if relative else rows["ci_lo"]).to_numpy(dtype=float), floor, ceiling)
        hi = np.clip((rows["delta_hi"] if relative else rows["ci_hi"]).to_numpy(dtype=float), floor, ceiling)
        band = ax.fill_between(x, lo, hi, color=colour, alpha=0.13, linewidth=0)
        if t == "random":
            random_band = band
        ax.plot(x, mean, linewidth=1.8, label=t, zorder=3, **marker_style(t))
        pts = values[values["treatment"] == t]
        y = (pts["delta"] if relative else pts["value"]).to_numpy(dtype=float)
        # the axis range follows every treatment but random (see _clip_far_values)
        (rnd_kept if t == "random" else kept).extend(
            v for v in np.concatenate([mean, y]) if not math.isnan(v)
        )
        (rnd_bounds if t == "random" else bounds).extend(
            v for v in np.concatenate([lo, hi]) if not math.isnan(v)
        )
        if pts.groupby("n").size().max() < 2:  # a lone replicate is the mean itself
            continue
        # side by side, so replicates of different treatments separate
        offset = (i - (len(present) - 1) / 2) * 0.07
        dot = {**marker_style(t, 4), "alpha": 0.55}
        ax.plot(pts["n"].to_numpy(dtype=float) + offset, y, linestyle="", zorder=2, **dot)
    kept = _within_reach(kept, bounds)
    ax.set_xticks(ns)
    ax.set_xlim(0.6, layers - 0.4)
    if _clip_far_values(ax, table, values, kept, relative=relative):
        if random_band is not None:
            random_band.remove()  # it would wash over the whole axis; its means are written at the bottom
    elif kept or rnd_kept:
        shown = _within_reach(kept + rnd_kept, bounds + rnd_bounds)
        pad = 0.08 * max(max(shown) - min(shown), 0.5)
        ax.set_ylim(min(shown) - pad, max(shown) + pad)
    bottom, top = ax.get_ylim()
    margin = 0.02 * (top - bottom)
    ax.set_ylim(max(bottom, floor - margin), min(top, ceiling + margin))  # the axis stays inside the bounds


def _within_reach(values: list[float], bounds: list[float]) -> list[float]:
    """``values`` (means and points) plus the CI ``bounds``, each bound pulled in to at most half the spread of
    the values beyond them: a band past that runs over the axis' edge. With two replicates one t-interval can be
    ten times wider than the data, and an axis fitted to it would flatten every curve."""
    if not values:
        return list(values)
    lo, hi = min(values), max(values)
    reach = 0.5 * max(hi - lo, 0.5)
    return [*values, *(min(max(v, lo - reach), hi + reach) for v in bounds)]


def _clip_far_values(ax, table, values, kept: list[float], *, relative: bool) -> bool:
    """Random frozen layers can sit tens of points below everything else and flatten every other curve; then
    the axis keeps to the others and the clipped random points are written at the bottom edge. Returns whether
    it did so."""
    if not kept:
        return False
    lo, hi = min(kept), max(kept)
    span = max(hi - lo, 0.5)
    rnd = table[table["treatment"] == "random"]
    col = "delta" if relative else "mean"
    if not (rnd[col] < lo - 1.5 * span).any():
        return False
    near = rnd.loc[rnd[col] >= lo - 1.5 * span, col]  # moderately low random means stay on the axis
    lo = min([lo, *near])
    span = max(hi - lo, 0.5)
    bottom, top = lo - 0.15 * span, hi + 0.15 * span
    ax.set_ylim(bottom - 0.12 * span, top)
    colour, _ = STYLE["random"]
    for _, r in rnd[rnd[col] < bottom - 0.12 * span].iterrows():
        ax.annotate(
            f"random n={int(r['n'])}:\n{r[col]:.1f} ↓",
            xy=(float(r["n"]), bottom - 0.1 * span),
            ha="center",
            va="bottom",
            fontsize=9,
            color=colour,
        )
    return True


def _paper_panel(ax, ref: pd.DataFrame, *, relative: bool, treatments) -> None:
    base = float(ref.loc[ref["treatment"] == "baseB", "top1"].iloc[0])
    ax.axhline(0 if relative else base, color="black", linestyle="--", linewidth=1.5)
    for t in treatments:
        rows = ref[ref["treatment"] == t].sort_values("n")
        if rows.empty:
            continue
        y = rows["top1"].to_numpy(dtype=float) - (base if relative else 0)
        ax.plot(rows["n"], y, linewidth=1.8, label=t, **marker_style(t))
    ax.set_xticks(range(1, paper_ref.LAYERS))
    ax.set_xlim(0.6, paper_ref.LAYERS - 0.4)


# --- strategies ---------------------------------------------------------------------------------------------------


def accuracy_vs_time(
    runs: pd.DataFrame, *, metric: str = "metrics.test_acc", by: str = "strategy", title: str = ""
):
    """One point per run (accuracy % against wall seconds), and per ``by`` value the mean with 95% CI bars."""
    with mpl.rc_context(RC):
        fig = Figure(figsize=(7.5, 5))
        ax = fig.subplots()
        for i, (name, part) in enumerate(runs.groupby(by, sort=True)):
            colour, marker = style_of(str(name), i)
            x, y = part["timing.seconds"].astype(float), 100 * part[metric].astype(float)
            ax.plot(x, y, linestyle="", marker=marker, color=colour, alpha=0.45, markersize=6)
            cx, cy = t_interval(x.to_numpy()), t_interval(y.to_numpy())
            # Bars stop where the quantity does (accuracy in [0, 100] %, time >= 0): with two seeds a t-interval
            # can be ten times wider than the data and would otherwise flatten the whole plot.
            xerr = None if not cx.has_ci else [[cx.mean - max(cx.lo, 0)], [cx.hi - cx.mean]]
            yerr = None if not cy.has_ci else [[cy.mean - max(cy.lo, 0)], [min(cy.hi, 100) - cy.mean]]
            ax.errorbar(
                cx.mean,
                cy.mean,
                xerr=xerr,
                yerr=yerr,
                marker=marker,
                markersize=10,
                color=colour,
                capsize=4,
                linewidth=1.6,
                markeredgecolor="black",
                label=f"{name} (n={len(part)})",
            )
        ax.set_ylim(max(ax.get_ylim()[0], -2), min(ax.get_ylim()[1], 102))
        ax.set_xlim(left=max(ax.get_xlim()[0], 0))
        ax.set_xlabel("wall time per run (s)")
        ax.set_ylabel(f"{metric.removeprefix('metrics.')} (%)")
        ax.set_title(title or f"accuracy against wall time per {by}: runs, and mean with 95% CI", loc="left")
        ax.legend(title=by, loc="best")
        fig.tight_layout()
    return fig


def learning_curves(
    history: pd.DataFrame,
    *,
    by: str = "strategy",
    metric: str = "val_acc",
    hue: str | None = None,
    title: str = "",
):
    """Per ``by`` value, ``metric`` (%) against epoch, one line per run (coloured by ``hue`` if given, e.g.
    ``transfer.n``); dotted lines mark phase changes (unfreeze points), with the new phase's name."""
    names = sorted(history[by].dropna().astype(str).unique())
    cols = min(3, max(1, len(names)))
    rows = math.ceil(len(names) / cols) if names else 1
    with mpl.rc_context(RC):
        fig = Figure(figsize=(5.2 * cols, 4 * rows))
        axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
        for i, (ax, name) in enumerate(zip(axes.flat, names, strict=False)):
            colour, marker = style_of(name, i)
            part = history[history[by].astype(str) == name]
            boundaries = {}
            hues = sorted(part[hue].dropna().unique()) if hue else []
            for _, run in part.groupby("folder"):
                run = run.sort_values("epoch")
                label = None
                if hue and pd.notna(run[hue].iloc[0]):
                    k = hues.index(run[hue].iloc[0])
                    colour = CYCLE[k % len(CYCLE)]
                    label = f"{hue.split('.')[-1]}={_short(run[hue].iloc[0])}"
                ax.plot(
                    run["epoch"],
                    100 * run[metric].astype(float),
                    color=colour,
                    marker=marker,
                    markersize=4,
                    alpha=0.8,
                    linewidth=1.4,
                    label=label,
                )
                change = run["phase_index"].diff().fillna(0) != 0
                for _, r in run[change].iterrows():
                    boundaries[float(r["epoch"]) - 0.5] = str(r["phase"])
            for x, phase in boundaries.items():
                ax.axvline(x, color="black", linestyle=":", linewidth=1.2)
                ax.annotate(
                    f"→ {phase}",
                    xy=(x, 0.97),
                    xycoords=("data", "axes fraction"),
                    xytext=(3, 0),
                    textcoords="offset points",
                    fontsize=9,
                    ha="left",
                    va="top",
                )
            ax.set_title(f"{by} = {name} ({part['folder'].nunique()} runs)", loc="left")
            if hue:
                handles, labels = ax.get_legend_handles_labels()
                unique = dict(zip(labels, handles, strict=True))
                keys = [f"{hue.split('.')[-1]}={_short(v)}" for v in hues]  # in the order of the values
                keys = [k for k in keys if k in unique]
                ax.legend([unique[k] for k in keys], keys, fontsize=8, loc="lower right")
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"{metric} (%)")
            ax.xaxis.get_major_locator().set_params(integer=True)
        for ax in list(axes.flat)[len(names) :]:
            ax.set_visible(False)
        fig.suptitle(title or "learning curves; dotted: phase boundaries (unfreeze points)", fontsize=12)
        fig.tight_layout()
    return fig


def _short(value) -> str:
    return f"{int(value)}" if isinstance(value, float) and value.is_integer() else str(value)


def lr_curves(history: pd.DataFrame, *, by: str = "strategy", title: str = ""):
    """Per ``by`` value (its first run), each layer group's lr against optimizer steps: solid = the rate at each
    epoch's last step, dashed = the epoch's peak (the record keeps these two per epoch). Frozen (lr 0) is not
    drawn on the log axis."""
    from analysis.load import lr_long

    names = sorted(history[by].dropna().astype(str).unique())
    cols = min(3, max(1, len(names)))
    rows = math.ceil(len(names) / cols) if names else 1
    with mpl.rc_context(RC):
        fig = Figure(figsize=(5.2 * cols, 4 * rows))
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, name in zip(axes.flat, names, strict=False):
            part = history[history[by].astype(str) == name]
            first = sorted(part["folder"].unique())[0]
            long = lr_long(part[part["folder"] == first])
            # Groups with the very same rates (a scalar lr) are one curve, named by all of them.
            curves: dict[tuple, list[str]] = {}
            for group, g in long.groupby("group", sort=False):
                g = g.sort_values("step")
                curves.setdefault(tuple(g["lr"].round(12)) + tuple(g["lr_max"].round(12)), []).append(group)
            for j, groups in enumerate(curves.values()):
                g = long[long["group"] == groups[0]].sort_values("step")
                colour = CYCLE[j % len(CYCLE)]
                label = ", ".join(groups) + (" (same rate)" if len(groups) > 1 else "")
                ax.plot(
                    g["step"],
                    g["lr"].where(g["lr"] > 0),
                    color=colour,
                    marker="o",
                    markersize=5,
                    linewidth=1.8,
                    label=label,
                )
                ax.plot(
                    g["step"],
                    g["lr_max"].where(g["lr_max"] > 0),
                    color=colour,
                    linestyle="--",
                    linewidth=1,
                    alpha=0.7,
                )
            change = long.drop_duplicates("epoch").sort_values("epoch")
            for step in change.loc[change["phase_index"].diff().fillna(0) != 0, "step"]:
                # the step count at the end of the epoch before the new phase: where the unfreeze happened
                ax.axvline(step - _steps_per_epoch(change), color="black", linestyle=":", linewidth=1.2)
            ax.set_yscale("log")
            ax.set_title(f"{by} = {name}", loc="left")
            ax.set_xlabel("optimizer step")
            ax.set_ylabel("learning rate")
            ax.legend(title="layer group", fontsize=8, title_fontsize=9, loc="lower left")
        for ax in list(axes.flat)[len(names) :]:
            ax.set_visible(False)
        fig.suptitle(
            title
            or "per-group learning rate (solid: at epoch end, dashed: epoch peak; "
            "missing = frozen; dotted: unfreeze)",
            fontsize=12,
        )
        fig.tight_layout()
    return fig


def _steps_per_epoch(per_epoch: pd.DataFrame) -> float:
    steps = per_epoch["step"].diff().dropna()
    return float(steps.iloc[0]) if len(steps) else 0.0


# --- search ---------------------------------------------------------------------------------------------------


def optimization_history(
    trials: pd.DataFrame, *, objective: str, direction: str = "maximize", title: str = ""
):
    """Objective per trial number, the best so far, and pruned/failed trials as ticks along the bottom."""
    with mpl.rc_context(RC):
        fig = Figure(figsize=(8, 4.8))
        ax = fig.subplots()
        done = trials[trials["state"] == "COMPLETE"].sort_values("number")
        y = done[objective].astype(float)
        scale = 100 if objective.endswith("acc") and y.max() <= 1 else 1
        ax.plot(done["number"], scale * y, "o", color=CYCLE[0], label=f"complete ({len(done)})")
        best = (y.cummax() if direction == "maximize" else y.cummin()) * scale
        ax.step(done["number"], best, where="post", color=CYCLE[1], linewidth=2, label="best so far")
        for state, colour, marker in (("PRUNED", "#7f7f7f", "|"), ("FAIL", "#d62728", "x")):
            part = trials[trials["state"] == state]
            if len(part):
                ax.plot(
                    part["number"],
                    np.full(len(part), 0.02),
                    marker=marker,
                    linestyle="",
                    markersize=12,
                    color=colour,
                    transform=ax.get_xaxis_transform(),
                    label=f"{state.lower()} ({len(part)}, no final value)",
                )
        ax.set_xlabel("trial number")
        unit = " (%)" if scale == 100 else ""
        ax.set_ylabel(f"{objective}{unit}")
        ax.set_title(title or "optimization history", loc="left")
        ax.legend(loc="best")
        ax.xaxis.get_major_locator().set_params(integer=True)
        fig.tight_layout()
    return fig


def param_importances(importances: pd.Series, *, title: str = ""):
    with mpl.rc_context(RC):
        fig = Figure(figsize=(7.5, 0.6 * max(len(importances), 2) + 1.6))
        ax = fig.subplots()
        imp = importances.sort_values()
        ax.barh([str(i) for i in imp.index], imp.to_numpy(), color=CYCLE[0])
        for y, v in enumerate(imp.to_numpy()):
            ax.annotate(
                f"{v:.2f}", xy=(v, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=9
            )
        ax.set_xlabel("importance (fANOVA share of objective variance, sums to 1)")
        ax.set_xlim(0, max(1.0, float(imp.max()) * 1.15) if len(imp) else 1)
        title = title or "parameter importances"
        complete = importances.attrs.get("complete_trials")
        if importances.attrs.get("no_variance"):  # analysis.search.importances: nothing to share out
            title += f"\nNO VARIANCE: all {complete} complete trials scored the same"
        elif importances.attrs.get("warning"):  # analysis.search.importances: too few trials to rank by
            from analysis.search import MIN_TRIALS_FOR_IMPORTANCES as least

            title += f"\nUNRELIABLE: only {complete} complete trials (fewer than {least})"
        ax.set_title(title, loc="left", color="#b2182b" if importances.attrs.get("warning") else "black")
        fig.tight_layout()
    return fig
