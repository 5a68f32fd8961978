"""Figures of what fine-tuning does to each layer group, from result records (plain dicts of ``result.json``).

- :func:`phase_map`: which groups train in each phase and at which lr (the picture of "freeze, fit, unfreeze,
  fit"), epochs across, groups up the side (input at the bottom, head on top);
- :func:`weight_change_heatmap`: ``||W_t - W_0|| / ||W_0||`` per group and epoch on the same axes, with the
  phase boundaries; cells that did not change at all are drawn apart (a log scale has no zero);
- :func:`cka_figure`: linear CKA per layer for baseB, AnB+ and BnB+ (see its docstring for what is compared).

Tables: :func:`diagnostics_frame` (one row per epoch and group) and :func:`cka_frame` (one row per run,
group and comparison). Every figure function returns a :class:`matplotlib.figure.Figure`; :func:`save`
writes PNG and PDF. Reads plain data only (the record schema is documented in ``harness/record.py``); from a
runs DataFrame: ``records = [json.loads(Path(p).read_text()) for p in runs["path"]]``.

    save(cka_figure(records), folder, "cka_per_layer")   # treatments' records; bases found by path
    write_run_figures(record, folder)                    # phase_map.png, weight_change.png
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from analysis.figures import HOLLOW, STYLE, save  # one look per treatment in every figure; one way to save

RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
}
FROZEN_COLOUR = "#f2f2f2"
NORM_ONLY_COLOUR = "#d9d9d9"
ZERO_COLOUR = "#ffffff"
CKA_AGAINST = {
    "start": (
        "cka",
        "vs its own start",
        "CKA(start, trained): how much training changed each layer's representation (1 = unchanged). "
        "Start = the network as training began: random init for baseB; for the treatments layers 1..n "
        "copied from the base, the rest random",
    ),
    "base": (
        "cka_vs_base",
        "vs the base it copied from",
        "CKA(base, trained): similarity of each trained layer to the base network its first n layers came "
        "from (baseB for BnB/BnB+, baseA for AnB/AnB+)",
    ),
    "baseB": (
        "cka_vs_baseB",
        "vs the trained baseB",
        "CKA(baseB, trained): similarity of each trained layer to the same layer of baseB, the network "
        "trained on B from scratch (baseB itself = 1)",
    ),
}


# --- tables ---------------------------------------------------------------------------------------------


def diagnostics_frame(record: Mapping) -> pd.DataFrame:
    """The record's ``diagnostics`` table: one row per (epoch, group); empty when the run had none."""
    section = record.get("diagnostics") or {}
    if not section.get("columns"):
        return pd.DataFrame()
    return pd.DataFrame(section["data"], columns=section["columns"])


def _phase_spans(record: Mapping) -> list[tuple[str, int, int]]:
    """(name, first epoch, last epoch) of every phase of the record's plan, epochs 1-based; the epochs each
    phase really ran when an adaptive rule ended one early (lp_ft's probe)."""
    lengths = (record.get("adaptive") or {}).get("phase_epochs") or [
        p["epochs"] for p in record["plan"]["phases"]
    ]
    spans, start = [], 1
    for phase, length in zip(record["plan"]["phases"], lengths, strict=True):
        spans.append((phase["name"], start, start + length - 1))
        start += length
    return spans


def _title(record: Mapping) -> str:
    config = record.get("config") or {}
    model = (config.get("model") or {}).get("name", "?")
    if (config.get("model") or {}).get("batchnorm"):
        model += " + BatchNorm"
    data = (config.get("data") or {}).get("name", "?")
    plan = record["plan"]
    title = f"{plan['strategy']} on {data}, {model}"
    # The BN policy only means something when a frozen group holds norm layers (summary bn column not "-").
    if any(r["trainable"] != "yes" and r["bn"] != "-" for rows in record["summary"] for r in rows):
        title += f"; norm layers of frozen groups: bn={plan['bn']}"
    return title


def _lr(value: float) -> str:
    """2.0e-3 rather than 0.002 next to 3.2e-05: one format for every rate of a figure."""
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


# --- the phase map ---------------------------------------------------------------------------------------


def phase_map(record: Mapping) -> Figure:
    """Which group trains in which phase, and at which peak lr: epochs across, groups up the side.

    A training group's cell is coloured by its phase's peak lr (log scale) and labelled with it; a frozen
    group is pale grey, a frozen group whose norm layers still train (``bn=train``, fastai's ``train_bn``)
    darker grey and labelled "BN only" with that lr. Read from the record's per-phase summary, so it needs no
    diagnostics.
    """
    if record.get("adaptive") and all("trained_steps" in h for h in record.get("history") or [{}]):
        return _epoch_map(record)
    groups = [g["name"] for g in record["groups"]]
    spans = _phase_spans(record)
    total = spans[-1][2]
    rates = [r["lr"] for rows in record["summary"] for r in rows if r["trainable"] == "yes" and r["lr"] > 0]
    norm = LogNorm(vmin=min(rates), vmax=max(rates)) if rates and min(rates) < max(rates) else None
    cmap = mpl.colormaps["viridis"]
    with mpl.rc_context(RC):
        fig = Figure(figsize=(max(6.0, 1.0 + 0.9 * total), 1.2 + 0.55 * len(groups)))
        ax = fig.subplots()
        for (_, first, last), rows in zip(spans, record["summary"], strict=True):
            for y, row in enumerate(rows):
                if row["trainable"] == "yes":
                    colour = cmap(norm(row["lr"])) if norm else cmap(0.6)
                    label = _lr(row["lr"])
                elif row["trainable"] == "bn only":
                    colour, label = NORM_ONLY_COLOUR, f"BN only\n{_lr(row['lr'])}"
                elif row["trainable"] == "bias":  # BitFit: biases (and norm layers) of a frozen group
                    colour, label = NORM_ONLY_COLOUR, f"biases only\n{_lr(row['lr'])}"
                else:
                    colour, label = FROZEN_COLOUR, "frozen"
                ax.add_patch(
                    Rectangle(
                        (first - 0.5, y - 0.5),
                        last - first + 1,
                        1,
                        facecolor=colour,
                        edgecolor="white",
                        linewidth=2,
                    )
                )
                dark = row["trainable"] == "yes" and (norm is None or norm(row["lr"]) < 0.55)
                ax.text(
                    (first + last) / 2,
                    y,
                    label,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
        _phase_axes(ax, spans, groups, total)
        if norm is not None:
            bar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02)
            bar.set_label("peak lr of the phase (log scale)")
        states = {r["trainable"] for rows in record["summary"] for r in rows}
        handles = [Patch(facecolor=FROZEN_COLOUR, edgecolor="grey", label="frozen")] if "no" in states else []
        if "bn only" in states:
            handles.append(
                Patch(
                    facecolor=NORM_ONLY_COLOUR,
                    edgecolor="grey",
                    label="frozen, but its norm layers' affine params train (bn=train)",
                )
            )
        if "bias" in states:
            handles.append(
                Patch(
                    facecolor=NORM_ONLY_COLOUR,
                    edgecolor="grey",
                    label="frozen, but its biases train (BitFit)",
                )
            )
        if handles:
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, -0.16), ncol=2, frameon=False)
        ax.set_title(f"what trains, and at which lr\n{_title(record)}", loc="left")
        fig.tight_layout()
    return fig


def _epoch_map(record: Mapping) -> Figure:
    """The phase map of an adaptive run, epoch by epoch from its history: a group's cell is coloured by the
    peak lr it really got in that epoch; a group a rule froze during the epoch is coloured for the share of
    the epoch's steps it still trained and grey for the rest; a frozen group is grey."""
    groups = [g["name"] for g in record["groups"]]
    history = record["history"]
    spans = _phase_spans(record)
    total = len(history)
    rates = [v for h in history for v in h["lr_max"].values() if v > 0]
    norm = LogNorm(vmin=min(rates), vmax=max(rates)) if rates and min(rates) < max(rates) else None
    cmap = mpl.colormaps["viridis"]
    rule = record["adaptive"]["rule"]
    with mpl.rc_context(RC):
        fig = Figure(figsize=(max(6.0, 1.0 + 0.9 * total), 1.2 + 0.55 * len(groups)))
        ax = fig.subplots()
        partial = False
        for h in history:
            steps = max(h["trained_steps"].values()) or 1
            e = h["epoch"]
            for y, g in enumerate(groups):
                share = h["trained_steps"].get(g, 0) / steps
                lr = h["lr_max"].get(g, 0.0)
                ax.add_patch(
                    Rectangle(
                        (e - 0.5, y - 0.5), 1, 1, facecolor=FROZEN_COLOUR, edgecolor="white", linewidth=2
                    )
                )
                if share > 0:
                    colour = cmap(norm(lr)) if norm and lr > 0 else cmap(0.6)
                    ax.add_patch(
                        Rectangle(
                            (e - 0.5, y - 0.5), share, 1, facecolor=colour, edgecolor="white", linewidth=2
                        )
                    )
                label = (
                    "frozen" if share == 0 else _lr(lr) if share == 1 else f"{_lr(lr)}\n{100 * share:.0f}%"
                )
                partial = partial or 0 < share < 1
                dark = share > 0.5 and (norm is None or norm(lr) < 0.55)
                ax.text(e, y, label, ha="center", va="center", fontsize=7, color="white" if dark else "black")
        _phase_axes(ax, spans, groups, total)
        if norm is not None:
            bar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02)
            bar.set_label("peak lr the group got in the epoch (log scale)")
        handles = [Patch(facecolor=FROZEN_COLOUR, edgecolor="grey", label="frozen")]
        if partial:
            handles.append(
                Patch(
                    facecolor="white",
                    edgecolor="grey",
                    label=f"{rule} froze it in the epoch: coloured share = steps trained",
                )
            )
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, -0.16), ncol=2, frameon=False)
        ax.set_title(
            f"what trains, epoch by epoch ({rule} decides during training)\n{_title(record)}", loc="left"
        )
        fig.tight_layout()
    return fig


def _phase_axes(ax, spans, groups: list[str], total: int) -> None:
    """Epoch x-axis, group y-axis (head on top), a line at every phase boundary, phase names on top."""
    ax.set_xlim(0.5, total + 0.5)
    ax.set_ylim(-0.5, len(groups) - 0.5)
    ax.set_yticks(range(len(groups)), groups)
    step = max(1, math.ceil(total / 20))
    ax.set_xticks(range(1, total + 1, step))
    ax.set_xlabel("epoch")
    ax.set_ylabel("layer group (input at the bottom)")
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    top = ax.secondary_xaxis("top")
    top.set_xticks(
        [(first + last) / 2 for _, first, last in spans],
        [f"phase {i + 1}: {name}" for i, (name, _, _) in enumerate(spans)],
        fontsize=9 if len(spans) < 6 else 7,
    )
    top.tick_params(length=0)
    for _, first, _ in spans[1:]:
        ax.axvline(first - 0.5, color="#d62728", linewidth=2.5, linestyle="-")


# --- the weight-change heatmap --------------------------------------------------------------------------

# measure -> (what the title says, the colour bar's label)
MEASURES = {
    "change_start": ("relative weight change since the run's start", "||W_t - W_0|| / ||W_0||"),
    "change_phase": ("relative weight change since the phase's start", "||W_t - W_phase|| / ||W_phase||"),
    "update_ratio": (
        "update-to-weight ratio (mean over the epoch's steps)",
        "||W_after - W_before|| / ||W||",
    ),
    "grad_norm": ("gradient norm (mean over the epoch's steps)", "||gradient||"),
    "norm_change": (
        "relative change of the norm layers' affine parameters since the start",
        "||N_t - N_0|| / ||N_0||",
    ),
    "stats_drift": (
        "drift of the norm layers' running mean and var since the start",
        "||s_t - s_0|| / ||s_0||",
    ),
}


def weight_change_heatmap(
    record: Mapping, measure: str = "change_start", *, annotate: bool | None = None
) -> Figure:
    """``measure`` (default: ``||W_t - W_0|| / ||W_0||``) per group and epoch, log colour scale.

    Cells with exactly 0.0 (the group did not move at all: bit-identical weights) are white and labelled
    "0"; a frozen epoch (hatched) must show 0 unless its norm layers train (``bn=train``), in which case the
    cell is labelled "BN" (the change is the norm affine parameters'). Phase boundaries are red lines.
    """
    frame = diagnostics_frame(record)
    if frame.empty:
        raise ValueError("the record has no diagnostics table (the run had diagnostics.weights=false)")
    if measure not in MEASURES:
        raise ValueError(f"measure={measure!r}; choose one of {', '.join(MEASURES)}")
    groups = list(dict.fromkeys(frame["group"]))
    spans = _phase_spans(record)
    total = spans[-1][2]
    values = frame.pivot(index="group", columns="epoch", values=measure).reindex(groups)
    trainable = frame.pivot(index="group", columns="epoch", values="trainable").reindex(groups)
    norm_moved = frame.pivot(index="group", columns="epoch", values="norm_change").reindex(groups)
    # Frozen groups the run itself flagged (weights moved although frozen): their cells say so.
    leaks = {
        (p["group"], p["phase_index"])
        for p in (record["diagnostics"].get("problems") or [])
        if p["kind"].startswith("frozen")
    }
    phase_of = dict(zip(frame["epoch"], frame["phase_index"], strict=False))
    grid = values.to_numpy(dtype=float)
    positive = grid[np.isfinite(grid) & (grid > 0)]
    annotate = total <= 24 if annotate is None else annotate
    cmap = mpl.colormaps["magma_r"]
    with mpl.rc_context(RC):
        fig = Figure(figsize=(max(6.5, 1.6 + 0.95 * total), 1.4 + 0.6 * len(groups)))
        ax = fig.subplots()
        norm = None
        if positive.size:
            lo, hi = positive.min(), positive.max()
            norm = LogNorm(vmin=lo if lo < hi else lo / 10, vmax=hi)
            masked = np.ma.masked_where(~(np.isfinite(grid) & (grid > 0)), grid)
            image = ax.imshow(
                masked,
                cmap=cmap,
                norm=norm,
                aspect="auto",
                origin="lower",
                extent=(0.5, total + 0.5, -0.5, len(groups) - 0.5),
                interpolation="nearest",
            )
            bar = fig.colorbar(image, ax=ax, pad=0.02)
            bar.set_label(f"{MEASURES[measure][1]}  (log scale)")
        ax.set_facecolor(ZERO_COLOUR)
        labels: set[str] = set()
        for y, g in enumerate(groups):
            for e in range(1, total + 1):
                value = values.loc[g, e] if e in values.columns else math.nan
                frozen = e in trainable.columns and not bool(trainable.loc[g, e])
                if frozen:  # hatch the frozen epochs, so "frozen and 0" reads at a glance
                    ax.add_patch(
                        Rectangle(
                            (e - 0.5, y - 0.5),
                            1,
                            1,
                            fill=False,
                            hatch="///",
                            edgecolor="#bdbdbd",
                            linewidth=0,
                        )
                    )
                if not annotate or value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                box = None
                if value == 0:
                    text, colour = "0", "black"
                    box = {
                        "facecolor": "white",
                        "edgecolor": "none",
                        "pad": 1.5,
                    }  # readable over the hatching
                else:
                    text = _lr(value)
                    if frozen and (g, phase_of[e]) in leaks:
                        text += "\nLEAK"
                        labels.add("leak")
                    elif (
                        frozen
                        and measure in ("change_start", "change_phase")
                        and (norm_moved.loc[g, e] or 0) > 0
                    ):
                        text += "\nBN"
                        labels.add("bn")
                    colour = "white" if norm is not None and norm(value) > 0.55 else "black"
                ax.text(e, y, text, ha="center", va="center", fontsize=7.5, color=colour, bbox=box)
        _phase_axes(ax, spans, groups, total)
        handles = [
            Patch(facecolor="white", edgecolor="#bdbdbd", hatch="///", label="frozen by the plan"),
            Patch(facecolor=ZERO_COLOUR, edgecolor="black", label="0 = bit-identical to the start"),
        ]
        notes = {
            "bn": "BN: frozen, only its norm layers' affine params moved (bn=train)",
            "leak": "LEAK: frozen, yet its weights moved (see the record's warnings)",
        }
        handles += [Patch(facecolor="white", edgecolor="white", label=notes[k]) for k in sorted(labels)]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, -0.16), ncol=2, frameon=False)
        ax.set_title(
            f"{MEASURES[measure][0]}, per group at the end of each epoch\n{_title(record)}", loc="left"
        )
        fig.tight_layout()
    return fig


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


# --- CKA per layer ----------------------------------------------------------------------------------------


def _run_label(record: Mapping) -> str | None:
    """``BnB``/``AnB+``/... for a treatment, ``baseA``/``baseB`` for a base, else None."""
    section = record.get("transfer") or {}
    if section.get("treatment"):
        return section["treatment"]
    config = record.get("config") or {}
    init = config.get("init") or {}
    if (
        config.get("half") in ("A", "B")
        and not init.get("from")
        and not (config.get("transfer") or {}).get("treatment")
    ):
        return f"base{config['half']}"
    return None


def with_bases(records: Iterable[Mapping]) -> list[Mapping]:
    """``records`` plus the records of the bases their treatments used (``transfer.base``/``transfer.baseB``
    name the cache folder holding the base's ``result.json``), each once: a sweep folder holds only the
    treatments, the bases live in the shared cache. A base whose record cannot be read is left out."""
    records = list(records)
    seen = {str(r.get("run_id")) for r in records}
    out = list(records)
    for record in records:
        section = record.get("transfer") or {}
        for base in (section.get("baseB"), section.get("base")):
            if not base or not base.get("path"):
                continue
            try:
                found = json.loads((Path(base["path"]) / "result.json").read_text())
            except (OSError, ValueError):
                continue
            if str(found.get("run_id")) not in seen:
                seen.add(str(found.get("run_id")))
                out.append(found)
    return out


def cka_frame(records: Iterable[Mapping]) -> pd.DataFrame:
    """One row per (run, group, comparison): treatment, n, seed, split_seed, group, layer (1-based), against
    (``start`` | ``base`` | ``baseB``), cka. Runs without CKA or that are neither a base nor a treatment are
    left out; a base's ``n`` is NaN."""
    rows = []
    for record in records:
        label = _run_label(record)
        if label is None or record.get("status") != "ok":
            continue
        groups = [g["name"] for g in record.get("groups") or []]
        section = record.get("transfer") or {}
        split = (record.get("config") or {}).get("split") or {}
        for against, (key, _, _) in CKA_AGAINST.items():
            for group, value in (record.get(key) or {}).items():
                rows.append(
                    {
                        "treatment": label,
                        "n": section.get("n", math.nan),
                        "seed": record["config"].get("seed"),
                        "split_seed": section.get("split_seed", split.get("seed")),
                        "group": group,
                        "layer": groups.index(group) + 1,
                        "against": against,
                        "cka": math.nan if value is None else float(value),
                    }
                )
    return pd.DataFrame(
        rows, columns=["treatment", "n", "seed", "split_seed", "group", "layer", "against", "cka"]
    )


def cka_figure(
    records: Iterable[Mapping] | pd.DataFrame,
    *,
    against: str = "start",
    treatments: tuple[str, ...] = ("baseB", "AnB+", "BnB+"),
) -> Figure:
    """Linear CKA per layer (x: layer group, input first) for baseB and the ``+`` treatments, one panel per n.

    ``against="start"`` (the default, the question "how much does fine-tuning change the representation?"):
    each trained network against itself as training began. For baseB that start is its random init, so its
    curve is how far training from scratch moves each layer; for AnB+/BnB+ layers 1..n start as copies of the
    base and the rest random, so the curve shows whether the copied layers are kept (near 1) or rewritten.
    ``against="baseB"``: each trained network against the trained baseB (baseB itself is 1 everywhere, drawn
    dashed); ``against="base"``: against the base it copied from. Lines are means over replicates (seeds,
    splits); with more than one, each replicate is a small dot. The grey band marks the copied layers 1..n.
    Records of treatments are enough: the bases they name are read from the cache (:func:`with_bases`).
    """
    frame = records if isinstance(records, pd.DataFrame) else cka_frame(with_bases(records))
    if against not in CKA_AGAINST:
        raise ValueError(f"against={against!r}; choose one of {', '.join(CKA_AGAINST)}")
    frame = frame[(frame["against"] == against) & frame["treatment"].isin(treatments)]
    if frame.empty:
        raise ValueError(
            f"no CKA '{against}' values for {', '.join(treatments)} (runs need diagnostics.cka=true)"
        )
    ns = sorted(int(n) for n in frame["n"].dropna().unique()) or [None]
    layer_names = frame.drop_duplicates("layer").sort_values("layer")["group"].tolist()
    layers = len(layer_names)
    _, short, long = CKA_AGAINST[against]
    # One y-range for all panels, from a round value below the lowest point (0 when values reach down there).
    bottom = (
        max(0.0, math.floor((frame["cka"].min() - 0.05) * 10) / 10) if frame["cka"].notna().any() else 0.0
    )
    runs = frame.drop_duplicates(["treatment", "n", "seed", "split_seed"]).groupby(
        ["treatment", "n"], dropna=False
    )
    replicates = int(runs.size().max())
    long += (
        f". Lines: means over {replicates} replicates (dots: single runs)"
        if replicates > 1
        else ". One replicate per point (no spread shown)"
    )
    with mpl.rc_context(RC):
        fig = Figure(figsize=(3.4 * len(ns) + 0.6, 4.2))
        axes = fig.subplots(1, len(ns), sharey=True, squeeze=False)[0]
        for ax, n in zip(axes, ns, strict=True):
            if n is not None:
                ax.axvspan(0.5, n + 0.5, color="#bdbdbd", alpha=0.35, linewidth=0)
                copied = "layer 1" if n == 1 else f"layers 1..{n}"
                ax.text(0.6, bottom + 0.01, f"copied\n({copied})", fontsize=8, color="#525252", va="bottom")
            for t in treatments:
                part = frame[frame["treatment"] == t]
                if not t.startswith("base"):  # a base does not depend on n: the same curve in every panel
                    part = part[part["n"] == n]
                if part.empty:
                    continue
                colour, marker = STYLE.get(t, ("#2ca02c", "o"))
                marker = marker or "o"  # baseB has no marker in the accuracy plots; here it is a curve too
                mean = part.groupby("layer")["cka"].mean()
                dashed = t == "baseB" and against == "baseB"
                hollow = {"markerfacecolor": "white", "markeredgewidth": 1.6} if t in HOLLOW else {}
                ax.plot(
                    mean.index,
                    mean.to_numpy(),
                    color=colour,
                    marker=marker,
                    markersize=6,
                    linewidth=1.8,
                    linestyle="--" if dashed else "-",
                    label=t,
                    zorder=3,
                    **hollow,
                )
                if part.groupby("layer").size().max() > 1:
                    ax.plot(
                        part["layer"],
                        part["cka"],
                        linestyle="",
                        marker=marker,
                        color=colour,
                        alpha=0.4,
                        markersize=3.5,
                        zorder=2,
                    )
            if against == "baseB" and "baseB" in treatments:
                ax.axhline(
                    1.0,
                    color=STYLE["baseB"][0],
                    linestyle="--",
                    linewidth=1.2,
                    label="baseB (itself: 1)",
                )
            ax.set_xticks(range(1, layers + 1), layer_names, rotation=0)
            ax.set_xlim(0.5, layers + 0.5)
            ax.set_ylim(bottom, 1.04)
            ax.set_xlabel("layer (group), input first")
            ax.set_title(f"n = {n}" if n is not None else "", loc="left")
            ax.grid(True, alpha=0.3)
        axes[0].set_ylabel(f"linear CKA {short}")
        handles, labels = axes[0].get_legend_handles_labels()
        for ax in axes[1:]:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        fig.legend(
            handles, labels, loc="lower center", ncol=len(labels), frameon=False, bbox_to_anchor=(0.5, -0.02)
        )
        fig.suptitle(_wrap(long, 40 * len(ns) + 30), fontsize=10, x=0.01, ha="left")
        fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def write_run_figures(record: Mapping, folder: str | Path) -> dict[str, dict[str, Path]]:
    """The phase map and the weight-change heatmap of one run, saved under ``folder``."""
    out = {"phase_map": save(phase_map(record), folder, "phase_map")}
    if not diagnostics_frame(record).empty:
        out["weight_change"] = save(weight_change_heatmap(record), folder, "weight_change")
    return out
