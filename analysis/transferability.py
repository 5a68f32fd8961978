"""The transferability experiment (Yosinski et al. 2014) as tables: mean and 95% CI per (treatment, n), the
baseB line, the check of the paper's findings, and the paper's numbers side by side.

Replicates are (split seed, training seed) pairs; each has its own bases, so differences to baseB are taken
within a replicate (paired) before the interval is computed. Accuracies are percent, differences points.
The paper's net has L = 8 weight layers (n = 1..7); ours has L of its own (the convnet: 5, n = 1..4). Layer
sets in the findings are defined relative to L (see :func:`middle` and :func:`upper`), and the side-by-side
views always show each source against its own n.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import paper as paper_ref
from analysis.selection import Selection, select
from analysis.stats import Interval, t_interval, verdict, welch_interval

METRICS = {"test_acc_best_k": "metrics.test_acc_best_k", "test_acc": "metrics.test_acc"}
N_TREATMENTS = ("BnB", "BnB+", "AnB", "AnB+", "random")  # the treatments that copy n layers; table order
ORDER = ("baseB", *N_TREATMENTS, "warm", "scratch")
# Grid dimensions and replicates of a transfer grid: not part of an experiment's identity. A treatment's
# strategy, init and half are what the treatment was rewritten into, so they vary with it too.
VARY = (
    "seed",
    "split.seed",
    "transfer.treatment",
    "transfer.n",
    "transfer.rewritten",
    "transfer.cache_dir",
    "strategy.*",
    "init.*",
    "half",
)
TOLERANCE = 1.0  # points: "about equal" means the whole 95% CI of the difference lies within +-1 point


@dataclass
class TransferData:
    """The runs of transfer grids, ready for tables: one value (percent) per used run and per baseB."""

    metric: str
    selection: Selection
    values: pd.DataFrame  # group, treatment, n, layers, replicate, split_seed, seed, folder, value
    bases: pd.DataFrame  # group, key, replicate, value (one row per distinct baseB of a group)
    notes: dict = field(default_factory=dict)  # group -> list of caveats a reader must see

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(self.values["group"]))

    def layers(self, group: str) -> int:
        return int(self.values.loc[self.values["group"] == group, "layers"].max())


def transfer_data(runs: pd.DataFrame, metric: str = "test_acc_best_k") -> TransferData:
    """Select the treatment runs of ``runs`` (``metric``: ``test_acc_best_k``, the paper's, or ``test_acc``)."""
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}: choose one of {', '.join(METRICS)}")
    column = METRICS[metric]
    sel = select(
        runs,
        view=f"transferability ({column})",
        in_view=runs["kind"] == "treatment",
        metric=column,
        vary=VARY,
    )
    used = sel.used
    values = pd.DataFrame(
        {
            "group": used["group"],
            "treatment": used["transfer.treatment"],
            "n": pd.to_numeric(used["transfer.n"], errors="coerce"),
            "layers": pd.to_numeric(used.get("transfer.layers"), errors="coerce"),
            "split_seed": used.get("transfer.split_seed"),
            "seed": used.get("transfer.seed"),
            "folder": used["folder"],
            "value": 100 * used[column].astype(float),
        }
    )
    values["replicate"] = [
        f"split {s}, seed {d}" for s, d in zip(values["split_seed"], values["seed"], strict=True)
    ]
    bases = _bases(used, metric)
    notes: dict[str, list[str]] = {}
    for group, part in used.groupby("group", sort=False):
        notes[group] = _caveats(part, metric, bases[bases["group"] == group])
    return TransferData(metric, sel, values.reset_index(drop=True), bases, notes)


def _bases(used: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each distinct baseB once per group (every record carries its baseB; many records share one)."""
    key_col, value_col = "transfer.baseB.key", f"transfer.baseB.{metric}"
    if key_col not in used or value_col not in used:
        return pd.DataFrame(columns=["group", "key", "replicate", "value"])
    rows = []
    for (group, key), part in used.groupby(["group", key_col], sort=False):
        first = part.iloc[0]
        replicates = sorted(
            {
                f"split {s}, seed {d}"
                for s, d in zip(part["transfer.split_seed"], part["transfer.seed"], strict=True)
            }
        )
        value = pd.to_numeric(pd.Series([first[value_col]]), errors="coerce").iloc[0]
        for r in replicates:
            rows.append({"group": group, "key": key, "replicate": r, "value": 100 * value})
    return pd.DataFrame(rows, columns=["group", "key", "replicate", "value"])


def _caveats(part: pd.DataFrame, metric: str, bases: pd.DataFrame) -> list[str]:
    notes = []
    if metric == "test_acc_best_k" and "metrics.best_k" in part:
        k, epochs = part["metrics.best_k"], part["epochs"]
        if len(part) and (k >= epochs).all():
            notes.append(
                f"metrics.test_acc_best_k averages the best k={int(k.max())} of {int(epochs.max())} test evaluations "
                f"of every run: with k >= epochs it is the mean of the whole learning curve (epoch 1 included), so "
                f"it rewards learning fast as much as ending accurate. metrics.test_acc (last epoch) is the "
                f"alternative (`--metric test_acc`)."
            )
    if bases["value"].isna().any():
        notes.append(
            f"{bases.loc[bases['value'].isna(), 'key'].nunique()} baseB record(s) have no {metric}: "
            f"left out of the baseB line and of every comparison with baseB"
        )
    replicates = part.groupby(["transfer.treatment", "transfer.n"], dropna=False).size()
    if len(replicates) and replicates.max() < 2:
        notes.append(
            "one replicate per (treatment, n): no confidence intervals; every finding is inconclusive "
            "(run more split seeds, e.g. experiment=transferability)"
        )
    return notes


# --- tables ----------------------------------------------------------------------------------------------------


def baseb_per_replicate(td: TransferData, group: str) -> dict[str, float]:
    b = td.bases[(td.bases["group"] == group) & td.bases["value"].notna()]
    return b.groupby("replicate")["value"].mean().to_dict()


def baseb_line(td: TransferData) -> pd.DataFrame:
    """Per group: the baseB line, mean and 95% CI over distinct base networks, each counted once.

    Records are deduplicated by ``baseB.key``. A replicate whose treatments name several keys (the same base
    trained again under a new cache key, e.g. after the harness config gained a key mid-grid) counts once, with
    the mean of its keys; replicates that share one base (a fixed ``transfer.base_seed``) count once together.
    ``bases`` = independent bases used, ``keys`` = distinct cache keys seen."""
    rows = []
    for group in td.groups:
        b = td.bases[(td.bases["group"] == group) & td.bases["value"].notna()]
        per_rep = b.groupby("replicate").agg(
            keys=("key", lambda k: tuple(sorted(set(k)))), value=("value", "mean")
        )
        distinct = per_rep.drop_duplicates("keys")["value"]
        ci = t_interval(distinct.to_numpy())
        note = _ci_note(ci)
        nkeys = b["key"].nunique()
        if nkeys > len(per_rep):
            note = "; ".join(
                x
                for x in (
                    note,
                    f"{nkeys} cache keys for {len(per_rep)} replicates: a base trained "
                    f"again under a new key counts once",
                )
                if x
            )
        rows.append(
            {
                "group": group,
                "bases": ci.n,
                "keys": nkeys,
                "mean": ci.mean,
                "sd": ci.sd,
                "ci_lo": ci.lo,
                "ci_hi": ci.hi,
                "note": note,
            }
        )
    return pd.DataFrame(rows, columns=["group", "bases", "keys", "mean", "sd", "ci_lo", "ci_hi", "note"])


def ci_table(td: TransferData) -> pd.DataFrame:
    """Per (group, treatment, n): runs, replicates, mean, sd and 95% CI (percent), and the paired difference to
    baseB (``delta``, points) with its CI. The baseB rows (n = 0) come from :func:`baseb_line`."""
    rows = []
    line = baseb_line(td).set_index("group")
    for group in td.groups:
        part = td.values[td.values["group"] == group]
        layers = td.layers(group)
        b = line.loc[group]
        rows.append(
            {
                "group": group,
                "treatment": "baseB",
                "n": 0,
                "layers": layers,
                "runs": int(b["bases"]),
                "replicates": int(b["bases"]),
                "mean": b["mean"],
                "sd": b["sd"],
                "ci_lo": b["ci_lo"],
                "ci_hi": b["ci_hi"],
                "delta": 0.0,
                "delta_lo": math.nan,
                "delta_hi": math.nan,
                "note": b["note"],
            }
        )
        base = baseb_per_replicate(td, group)
        for (treatment, n), cell in part.groupby(["treatment", "n"], dropna=False, sort=False):
            per_rep = cell.groupby("replicate")["value"].mean()  # several runs of one replicate count once
            ci = t_interval(per_rep.to_numpy())
            diffs = [v - base[r] for r, v in per_rep.items() if r in base]
            dci = (
                t_interval(np.array(diffs)) if diffs else Interval(math.nan, math.nan, math.nan, math.nan, 0)
            )
            rows.append(
                {
                    "group": group,
                    "treatment": treatment,
                    "n": n,
                    "layers": layers,
                    "runs": len(cell),
                    "replicates": ci.n,
                    "mean": ci.mean,
                    "sd": ci.sd,
                    "ci_lo": ci.lo,
                    "ci_hi": ci.hi,
                    "delta": dci.mean,
                    "delta_lo": dci.lo,
                    "delta_hi": dci.hi,
                    "note": _ci_note(ci),
                }
            )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["n"] = table["n"].astype("Int64")
    table["_order"] = table["treatment"].map({t: i for i, t in enumerate(ORDER)}).fillna(len(ORDER))
    table = table.sort_values(["group", "_order", "treatment", "n"], kind="stable").drop(columns="_order")
    table["group"] = pd.Categorical(table["group"], categories=td.groups, ordered=True)
    return (
        table.sort_values("group", kind="stable")
        .assign(group=lambda t: t["group"].astype(str))
        .reset_index(drop=True)
    )


def _ci_note(ci: Interval) -> str:
    if ci.n == 0:
        return "no runs"
    return "1 replicate: no CI" if ci.n == 1 else ""


# --- the paper's findings ---------------------------------------------------------------------------------------

Cell = dict  # (treatment, n) -> value (%), and "baseB" -> value, for one replicate


def middle(layers: int) -> list[int]:
    """The 'middle layers': n with n/L in [0.35, 0.65]. The paper's dip at n = 3..5 of L = 8 is exactly this
    band; for L = 5 it is n = 2, 3."""
    return [n for n in range(1, layers) if 0.35 <= n / layers <= 0.65]


def upper(layers: int) -> list[int]:
    """The upper half of n = 1..L-1: n > (L-1)/2 (L = 5: n = 3, 4; the paper's L = 8: n = 4..7; the paper
    quotes its +2.1 for n >= 5)."""
    return [n for n in range(1, layers) if n > (layers - 1) / 2]


def _mean_of(cell: Cell, treatment: str, ns: list[int]) -> float | None:
    values = [cell.get((treatment, n)) for n in ns]
    if not ns or any(v is None for v in values):
        return None
    return float(np.mean(values))


def _minus(a, b):
    return None if a is None or b is None else a - b


def _ns(ns: list[int]) -> str:
    if not ns:
        return "n = (none)"
    if len(ns) > 2 and ns == list(range(ns[0], ns[-1] + 1)):
        return f"n = {ns[0]}-{ns[-1]}"
    return "n = " + ", ".join(map(str, ns))


@dataclass(frozen=True)
class Finding:
    id: str
    text: str
    claim: str  # less | greater | equal | greater_each (greater at every n) | dissimilar
    paper_says: str  # the paper's statement, for numbers not in the reference table
    contrast: Callable[[Cell, int], float | None] | None
    terms: Callable[[int], str]  # what d is, for a net of L layers


FINDINGS = (
    Finding(
        "F1",
        "AnB ~ baseB for n = 1, 2 (general first layers)",
        "equal",
        "",
        lambda c, L: _minus(_mean_of(c, "AnB", [1, 2]), c.get("baseB")),
        lambda L: "mean AnB(n = 1, 2) - baseB",
    ),
    Finding(
        "F2",
        "AnB falls as n grows (specific top layers)",
        "less",
        "",
        lambda c, L: _minus(c.get(("AnB", L - 1)), c.get(("AnB", 1))),
        lambda L: f"AnB(n = {L - 1}) - AnB(n = 1)",
    ),
    Finding(
        "F3",
        "BnB dips in the middle layers (fragile co-adaptation)",
        "less",
        "",
        lambda c, L: _minus(_mean_of(c, "BnB", middle(L)), c.get("baseB")),
        lambda L: f"mean BnB({_ns(middle(L))}) - baseB",
    ),
    Finding(
        "F4",
        "BnB recovers at the top",
        "greater",
        "",
        lambda c, L: _minus(c.get(("BnB", L - 1)), _mean_of(c, "BnB", middle(L))),
        lambda L: f"BnB(n = {L - 1}) - mean BnB({_ns(middle(L))})",
    ),
    Finding(
        "F5",
        "BnB+ ~ baseB (fine-tuning undoes the co-adaptation loss)",
        "equal",
        "",
        lambda c, L: _minus(_mean_of(c, "BnB+", list(range(1, L))), c.get("baseB")),
        lambda L: f"mean BnB+({_ns(list(range(1, L)))}) - baseB",
    ),
    Finding(
        "F6",
        "AnB+ > baseB at every n (transfer + fine-tuning generalises better)",
        "greater_each",
        "+1.6 averaged (paper text)",
        lambda c, L: _minus(_mean_of(c, "AnB+", list(range(1, L))), c.get("baseB")),
        lambda L: f"mean AnB+({_ns(list(range(1, L)))}) - baseB",
    ),
    Finding(
        "F7",
        "AnB+ > baseB in the upper half of n",
        "greater",
        "+2.1 for n >= 5 (paper text; here the upper half of n)",
        lambda c, L: _minus(_mean_of(c, "AnB+", upper(L)), c.get("baseB")),
        lambda L: f"mean AnB+({_ns(upper(L))}) - baseB",
    ),
    Finding(
        "F8",
        "The drop at the top n is larger for a dissimilar split",
        "dissimilar",
        "about 3x larger at n = 7 (paper text; not in the reference table)",
        None,
        lambda L: f"[AnB(n = {L - 1}) - baseB] dissimilar - same, similar split",
    ),
    Finding(
        "F9",
        "Random frozen layers are far worse than transferred ones",
        "less",
        "far worse (paper text; not in the reference table)",
        lambda c, L: _minus(_mean_of(c, "random", list(range(1, L))), _mean_of(c, "AnB", list(range(1, L)))),
        lambda L: f"mean over {_ns(list(range(1, L)))} of random - AnB",
    ),
)


def _cells(td: TransferData, group: str) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    part = td.values[(td.values["group"] == group) & td.values["n"].notna()]
    for (rep, treatment, n), v in part.groupby(["replicate", "treatment", "n"])["value"].mean().items():
        cells.setdefault(rep, {})[(treatment, int(n))] = v
    for rep, v in baseb_per_replicate(td, group).items():
        cells.setdefault(rep, {})["baseB"] = v
    return cells


def paper_cells(reference: pd.DataFrame | None = None) -> dict[str, Cell]:
    ref = paper_ref.load_reference() if reference is None else reference
    cell: Cell = {}
    for _, r in ref.iterrows():
        cell["baseB" if r["treatment"] == "baseB" else (r["treatment"], int(r["n"]))] = float(r["top1"])
    return {"paper": cell}


def _contrast(cells: dict[str, Cell], f, layers: int) -> tuple[Interval, int]:
    """Interval of a per-replicate difference; also how many replicates lacked a term and were skipped."""
    diffs = [f(c, layers) for c in cells.values()]
    kept = [d for d in diffs if d is not None and not math.isnan(d)]
    ci = t_interval(np.array(kept)) if kept else Interval(math.nan, math.nan, math.nan, math.nan, 0)
    return ci, len(diffs) - len(kept)


def _pts(ci: Interval) -> str:
    return ci.text(digits=2, signed=True).replace(" (n=", " pts (n=") if not math.isnan(ci.mean) else "n/a"


def findings(
    td: TransferData, tolerance: float = TOLERANCE, reference: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The paper's findings (DESIGN.md section 3), checked per group. Columns: group, id, finding, paper,
    measured, holds (yes | no | inconclusive | not measured), why, d, d_lo, d_hi, replicates.

    Rule (:func:`analysis.stats.verdict`): each finding is a difference d in points with a 95% CI over
    replicates; ``less``/``greater`` hold when the whole CI is on the claimed side of 0 and fail when it is
    entirely on the other side; ``~`` holds when the whole CI lies within +-``tolerance`` and fails when it lies
    entirely outside; anything else, or a single replicate, is inconclusive.
    """
    paper = paper_cells(reference)
    rows = []
    for group in td.groups:
        layers = td.layers(group)
        cells = _cells(td, group)
        for f in FINDINGS:
            rows.append({"group": group, **_check(f, td, group, cells, layers, paper, tolerance)})
    columns = [
        "group",
        "id",
        "finding",
        "paper",
        "measured",
        "holds",
        "why",
        "d",
        "d_lo",
        "d_hi",
        "replicates",
    ]
    return pd.DataFrame(rows, columns=columns)


def _check(f: Finding, td: TransferData, group: str, cells, layers: int, paper, tolerance: float) -> dict:
    row = {"id": f.id, "finding": f.text}
    if f.claim == "dissimilar":
        return {**row, **_check_dissimilar(f, td, group, layers, tolerance)}
    pci, _ = _contrast(paper, f.contrast, paper_ref.LAYERS)
    paper_text = f"{f.terms(paper_ref.LAYERS)} = {pci.mean:+.1f} pts" if not math.isnan(pci.mean) else ""
    row["paper"] = "; ".join(t for t in (f.paper_says, paper_text) if t)
    ci, skipped = _contrast(cells, f.contrast, layers)
    measured = f"{f.terms(layers)} = {_pts(ci)}"
    if skipped:
        measured += f"; {skipped} replicate(s) lack a term and are not counted"
    claim = "greater" if f.claim == "greater_each" else f.claim
    holds, why = verdict(ci, claim, tolerance)
    if f.claim == "greater_each" and not math.isnan(ci.mean):
        holds, why, per_n = _every_n(cells, layers, tolerance, holds, why)
        measured += f"; per n: {per_n}"
    return {
        **row,
        "measured": measured,
        "holds": holds,
        "why": why,
        "d": ci.mean,
        "d_lo": ci.lo,
        "d_hi": ci.hi,
        "replicates": ci.n,
    }


def _every_n(cells, layers, tolerance, holds, why):
    """AnB+ above baseB at *every* n: yes only if every n's CI is above 0; no if some n's CI is below 0."""
    verdicts, shown = [], []
    for n in range(1, layers):
        ci, _ = _contrast(cells, lambda c, L, n=n: _minus(c.get(("AnB+", n)), c.get("baseB")), layers)
        verdicts.append(verdict(ci, "greater", tolerance)[0])
        shown.append(f"{ci.mean:+.2f}" if not math.isnan(ci.mean) else "n/a")
    if "not measured" in verdicts:
        return "not measured", "some n have no AnB+ runs", ", ".join(shown)
    if all(v == "yes" for v in verdicts):
        return "yes", "at every n the whole CI is above 0", ", ".join(shown)
    if "no" in verdicts:
        bad = [str(n) for n, v in zip(range(1, layers), verdicts, strict=True) if v == "no"]
        return "no", f"at n = {', '.join(bad)} the whole CI is below 0", ", ".join(shown)
    return "inconclusive", f"{why}; not every n's CI is above 0", ", ".join(shown)


def dissimilar_partner(td: TransferData, group: str) -> tuple[str | None, str | None]:
    """(similar group, dissimilar group) of the same experiment, data and model, when both are present."""
    info = td.selection.used.drop_duplicates("group").set_index("group")
    me = info.loc[group]
    same = info[
        (info["experiment"] == me["experiment"])
        & (info["data"] == me["data"])
        & (info["model"] == me["model"])
    ]
    domain = same["transfer.b_domain"] if "transfer.b_domain" in same else pd.Series(None, index=same.index)
    similar = [g for g in same.index if not _present(domain[g])]
    dissimilar = [g for g in same.index if _present(domain[g])]
    return (similar[0] if similar else None), (dissimilar[0] if dissimilar else None)


def _present(v) -> bool:
    return not (v is None or (pd.api.types.is_scalar(v) and pd.isna(v)))


def _check_dissimilar(f: Finding, td: TransferData, group: str, layers: int, tolerance: float) -> dict:
    similar, dissimilar = dissimilar_partner(td, group)
    empty = {"paper": f.paper_says, "d": math.nan, "d_lo": math.nan, "d_hi": math.nan, "replicates": 0}
    if similar is None or dissimilar is None:
        return {
            **empty,
            "measured": "no dissimilar split in these runs (its B half differs in kind, "
            "`transfer.b_domain` set, e.g. split=mnist_dissimilar)",
            "holds": "not measured",
            "why": "needs a similar and a dissimilar grid of the same experiment",
        }

    def drops(g):
        L = td.layers(g)
        out = [_minus(c.get(("AnB", L - 1)), c.get("baseB")) for c in _cells(td, g).values()]
        return np.array([d for d in out if d is not None and not math.isnan(d)]), L

    sim, ls = drops(similar)
    dis, ld = drops(dissimilar)
    if not len(sim) or not len(dis):
        return {
            **empty,
            "measured": "AnB at the top n or baseB missing in one of the two grids",
            "holds": "not measured",
            "why": "no drop to compare",
        }
    ci = welch_interval(dis, sim)
    s, d = t_interval(sim), t_interval(dis)
    ratio = d.mean / s.mean if s.mean else math.nan
    other = dissimilar if group == similar else similar
    measured = (
        f"drop AnB(n = {ls - 1}) - baseB: similar {_pts(s)}, dissimilar {_pts(d)}, ratio {ratio:.1f}x; "
        f"dissimilar - similar = {_pts(ci)} (Welch; paired with group '{other}')"
    )
    holds, why = verdict(ci, "less", tolerance)
    return {
        **empty,
        "measured": measured,
        "holds": holds,
        "why": why,
        "d": ci.mean,
        "d_lo": ci.lo,
        "d_hi": ci.hi,
        "replicates": ci.n,
    }


# --- the paper side by side -------------------------------------------------------------------------------------


def side_by_side(td: TransferData, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Long table, each source at its own depth: source (group label or 'paper'), treatment, layers, n,
    depth = n/L, top1 (%), delta (points vs that source's baseB)."""
    ref = paper_ref.load_reference() if reference is None else reference
    rows = []
    pbase = float(ref.loc[ref["treatment"] == "baseB", "top1"].iloc[0])
    for _, r in ref.iterrows():
        rows.append(
            {
                "source": "paper",
                "treatment": r["treatment"],
                "layers": paper_ref.LAYERS,
                "n": int(r["n"]),
                "depth": r["n"] / paper_ref.LAYERS,
                "top1": float(r["top1"]),
                "delta": float(r["top1"]) - pbase,
            }
        )
    table = ci_table(td)
    for _, r in table.iterrows():
        if not _present(r["n"]):
            continue
        rows.append(
            {
                "source": r["group"],
                "treatment": r["treatment"],
                "layers": r["layers"],
                "n": int(r["n"]),
                "depth": r["n"] / r["layers"],
                "top1": r["mean"],
                "delta": r["delta"],
            }
        )
    return pd.DataFrame(rows, columns=["source", "treatment", "layers", "n", "depth", "top1", "delta"])


def side_by_side_wide(long: pd.DataFrame, group: str) -> pd.DataFrame:
    """One row per treatment: difference to baseB (points) here at n = 1..L-1 and in the paper at n = 1..7."""
    here = long[long["source"] == group]
    paper = long[long["source"] == "paper"]
    out = {}
    for name, part in (("here", here), ("paper", paper)):
        for _, r in part.iterrows():
            out.setdefault(r["treatment"], {})[f"{name} n={r['n']}" if r["n"] else f"{name} baseB (%)"] = (
                r["top1"] if r["treatment"] == "baseB" else r["delta"]
            )
    wide = pd.DataFrame.from_dict(out, orient="index")
    order = [t for t in ORDER if t in wide.index]
    cols = sorted(wide.columns, key=lambda c: (not c.startswith("here"), "baseB" not in c, _n_of(c)))
    return wide.loc[order, cols].rename_axis("treatment").reset_index()


def _n_of(column: str) -> int:
    return int(column.rsplit("=", 1)[1]) if "=" in column else 0
