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

from analysis import metrics as metrics_mod
from analysis import paper as paper_ref
from analysis.selection import Selection, select
from analysis.stats import Interval, t_interval, verdict, welch_interval

METRICS = {name: metrics_mod.column(name) for name in metrics_mod.FIELDS}  # name -> runs column
N_TREATMENTS = ("BnB", "BnB+", "AnB", "AnB+", "random")  # the treatments that copy n layers; table order
ORDER = ("baseB", *N_TREATMENTS, "warm", "scratch")
# Grid dimensions and replicates of a transfer grid: not part of an experiment's identity. A treatment's
# strategy, init and half are what the treatment was rewritten into, so they vary with it too.
VARY = (
    "seed",
    "init_seed",  # each network of a replicate draws its own (harness/transfer/plan.py)
    "split.seed",
    "transfer.treatment",
    "transfer.n",
    "transfer.cache_dir",
    "strategy.*",
    "init.*",
    "half",
)
TOLERANCE = 1.0  # points: "about equal" means the whole 95% CI of the difference lies within +-1 point
BOUNDS = (0.0, 100.0)  # accuracy in percent: a confidence interval of an accuracy is clipped to these
# What the base summaries of a record say about how each base was trained (harness: transfer.base/baseB)
BASE_FIELDS = ("half", "seed", "init_seed", "epochs", "best_epoch", "stopped", "still_rising", "path")


@dataclass
class TransferData:
    """The runs of transfer grids, ready for tables: one value (percent) per used run and per baseB."""

    metric: str
    selection: Selection
    values: pd.DataFrame  # group, treatment, n, layers, replicate, split_seed, seed, folder, value
    bases: pd.DataFrame  # group, key, replicate, value (one row per distinct baseB of a group)
    notes: dict = field(default_factory=dict)  # group -> list of caveats a reader must see
    # group, role (baseA | baseB), key, and BASE_FIELDS: every distinct base the used runs name, once per group
    base_info: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(self.values["group"]))

    def layers(self, group: str) -> int:
        return int(self.values.loc[self.values["group"] == group, "layers"].max())

    @property
    def label(self) -> str:
        """What the values are, for captions and axes."""
        return metrics_mod.LABELS[self.metric]


def transfer_data(runs: pd.DataFrame, metric: str = metrics_mod.DEFAULT) -> TransferData:
    """Select the treatment runs of ``runs``. ``metric``: ``test_acc_best_val_k`` (default: test accuracy at the
    k epochs with the best validation accuracy), ``test_acc`` (last epoch), or ``test_acc_best_k`` (older
    records only; its epochs were chosen on the test set, so it is labelled optimistic wherever it is shown)."""
    column = metrics_mod.column(metric)
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
    return TransferData(metric, sel, values.reset_index(drop=True), bases, notes, _base_info(used))


def _bases(used: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each distinct baseB once per group (every record carries its baseB; many records share one)."""
    key_col, value_col = "transfer.baseB.key", f"transfer.baseB.{metrics_mod.FIELDS[metric]}"
    if key_col not in used:
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
        value = pd.to_numeric(pd.Series([first.get(value_col)]), errors="coerce").iloc[0]
        for r in replicates:
            rows.append({"group": group, "key": key, "replicate": r, "value": 100 * value})
    return pd.DataFrame(rows, columns=["group", "key", "replicate", "value"])


def _base_info(used: pd.DataFrame) -> pd.DataFrame:
    """Every distinct base (baseA of the A treatments, baseB of all) once per group, with what its summary says
    about its training (``still_rising`` is None when the record predates it)."""
    columns = ["group", "role", "key", *BASE_FIELDS]
    rows = []
    for prefix in ("transfer.base.", "transfer.baseB."):
        key_col = prefix + "key"
        if key_col not in used:
            continue
        for (group, key), part in used.dropna(subset=[key_col]).groupby(["group", key_col], sort=False):
            first = part.iloc[0]
            info = {f: first.get(prefix + f) for f in BASE_FIELDS}
            info = {f: (None if not _present(v) else v) for f, v in info.items()}
            half = info["half"] or ("B" if prefix.endswith("baseB.") else "A")
            rows.append({"group": group, "role": f"base{half}", "key": key, **info})
    frame = pd.DataFrame(rows, columns=columns).drop_duplicates(["group", "key"]).reset_index(drop=True)
    for col in ("seed", "init_seed", "epochs", "best_epoch"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    frame["still_rising"] = frame["still_rising"].astype("boolean")  # <NA>: the record does not say
    return frame


def _caveats(part: pd.DataFrame, metric: str, bases: pd.DataFrame) -> list[str]:
    notes = []
    field_name = metrics_mod.FIELDS[metric]
    if metric == metrics_mod.OPTIMISTIC:
        notes.append(
            f"metrics.{metrics_mod.OPTIMISTIC} is {metrics_mod.OPTIMISTIC_LABEL}: it averages the k best test "
            f"evaluations of each run, so its epochs were chosen by looking at the test set. Use it for "
            f"comparison with older reports only; metrics.{metrics_mod.BEST_VAL_K} (the default) chooses the "
            f"epochs on validation accuracy."
        )
    if metric != metrics_mod.LAST and "metrics.best_k" in part and len(part):
        k, epochs = part["metrics.best_k"], part["epochs"]
        if (k >= epochs).all():
            notes.append(
                f"metrics.{field_name} averages k={int(k.max())} of {int(epochs.max())} epochs of every run: with "
                f"k >= epochs it is the mean of the whole learning curve (epoch 1 included), so it rewards "
                f"learning fast as much as ending accurate. metrics.test_acc (last epoch) is the alternative "
                f"(`--metric test_acc`)."
            )
    if metric == metrics_mod.BEST_VAL_K and "derived" in part:
        derived = part["derived"].fillna("")
        runs = int(derived.str.contains(f"metrics.{field_name}", regex=False).sum())
        bases_n = int(derived.str.contains(f"baseB.{field_name}", regex=False).sum())
        if runs or bases_n:
            notes.append(
                f"{runs} of {len(part)} records (and the baseB summaries of {bases_n}) predate "
                f"metrics.{field_name}: analysis computed it from each run's per-epoch history (validation and "
                f"test accuracy of every epoch), with the same definition and k."
            )
    if bases["value"].isna().any():
        notes.append(
            f"{bases.loc[bases['value'].isna(), 'key'].nunique()} baseB record(s) have no {field_name}: "
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
    """Per group: the baseB line, mean and 95% CI over distinct base networks, each counted once; the CI is
    clipped to [0, 100] % (``note`` says when).

    Records are deduplicated by ``baseB.key``. A replicate whose treatments name several keys (the same base
    trained again under a new cache key, e.g. after the harness config gained a key mid-grid) counts once, with
    the mean of its keys; replicates that share one base (a fixed ``transfer.base_seed``) count once together.
    ``bases`` = independent bases used, ``keys`` = distinct cache keys seen, ``ci_half`` = the t half-width
    (unclipped)."""
    rows = []
    for group in td.groups:
        b = td.bases[(td.bases["group"] == group) & td.bases["value"].notna()]
        per_rep = b.groupby("replicate").agg(
            keys=("key", lambda k: tuple(sorted(set(k)))), value=("value", "mean")
        )
        distinct = per_rep.drop_duplicates("keys")["value"]
        ci = t_interval(distinct.to_numpy())
        lo, hi, clipped = _clip(ci)
        notes = [_ci_note(ci), CLIPPED_NOTE if clipped else ""]
        nkeys = b["key"].nunique()
        if nkeys > len(per_rep):
            notes.append(
                f"{nkeys} cache keys for {len(per_rep)} replicates: a base trained again under a new key counts once"
            )
        rows.append(
            {
                "group": group,
                "bases": ci.n,
                "keys": nkeys,
                "mean": ci.mean,
                "sd": ci.sd,
                "ci_lo": lo,
                "ci_hi": hi,
                "ci_half": ci.half,
                "note": "; ".join(x for x in notes if x),
            }
        )
    columns = ["group", "bases", "keys", "mean", "sd", "ci_lo", "ci_hi", "ci_half", "note"]
    return pd.DataFrame(rows, columns=columns)


CLIPPED_NOTE = "CI clipped to [0, 100] %"
NO_N = "no n"  # the paper view's column for treatments without n (warm, scratch)


def _clip(ci: Interval) -> tuple[float, float, bool]:
    """The interval's bounds inside :data:`BOUNDS` (an accuracy cannot leave them, a t-interval of two
    replicates easily does), and whether clipping changed them."""
    if not ci.has_ci:
        return ci.lo, ci.hi, False
    lo, hi = max(ci.lo, BOUNDS[0]), min(ci.hi, BOUNDS[1])
    return lo, hi, (lo, hi) != (ci.lo, ci.hi)


def ci_table(td: TransferData, numeric: bool = False, *, group: str | None = None) -> pd.DataFrame:
    """Mean and 95% CI per (treatment, n), percent.

    Default: the paper's view, one row per treatment (baseB first, at n = 0) and one column per n, each cell
    ``"mean ± half-width"`` of the t-interval over replicates with one decimal (``"97.4 (no CI)"`` for a single
    replicate, empty where the grid has no runs; where the interval is clipped at 0 or 100 %, its two sides,
    ``"98.0 +2.0/-3.0"``). With one experiment (or ``group=``) the index is the treatment;
    with several it is (group, treatment), each group named once.

    ``numeric=True``: the numbers behind it, one row per (group, treatment, n): runs, replicates, mean, sd,
    ci_lo/ci_hi (clipped to [0, 100] %; ``note`` says when), ci_half (the t half-width, unclipped), and the
    paired difference to baseB (``delta``, points) with its CI. The baseB rows (n = 0) come from
    :func:`baseb_line`."""
    table = _ci_numbers(td)
    if group is not None and len(table):
        table = table[table["group"] == group]
    return table.reset_index(drop=True) if numeric else paper_view(table)


def paper_view(table: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """A numeric :func:`ci_table` as the paper's treatment x n table of ``"mean ± CI"`` strings."""
    if table.empty:
        return pd.DataFrame(index=pd.Index([], name="treatment"))
    groups = list(dict.fromkeys(table["group"]))
    ns: list = sorted({int(n) for n in table["n"].dropna()})
    if table["n"].isna().any():
        ns.append(NO_N)  # warm and scratch: treatments that copy no n layers
    parts = []
    for g in groups:
        rows = table[table["group"] == g]
        treatments = [t for t in ORDER if t in set(rows["treatment"])]
        treatments += [t for t in dict.fromkeys(rows["treatment"]) if t not in treatments]
        cells = pd.DataFrame("", index=pd.Index(treatments, name="treatment"), columns=pd.Index(ns, name="n"))
        for _, r in rows.iterrows():
            cells.loc[r["treatment"], int(r["n"]) if _present(r["n"]) else NO_N] = _pm(r, digits)
        used = [n for n in ns if (cells[n] != "").any()]
        parts.append(cells[used])
    if not parts:
        return pd.DataFrame(index=pd.Index([], name="treatment"))
    out = (
        pd.concat(parts, keys=groups, names=["group", "treatment"]).fillna("") if len(parts) > 1 else parts[0]
    )
    out.attrs["groups"] = groups
    out.attrs["caption"] = "mean ± half-width of the 95% t-interval over replicates, percent; baseB at n = 0"
    return out


def _pm(row, digits: int) -> str:
    """``mean ± half``; where the interval was clipped at 0 or 100 %, the two sides: ``98.0 +2.0/-3.0``."""
    mean, half = row["mean"], row["ci_half"]
    if not _present(mean):
        return ""
    if not _present(half):
        return f"{mean:.{digits}f} (no CI)"
    lo, hi = row["ci_lo"], row["ci_hi"]
    if lo > mean - half + 1e-9 or hi < mean + half - 1e-9:  # clipped to BOUNDS
        return f"{mean:.{digits}f} +{hi - mean:.{digits}f}/-{mean - lo:.{digits}f}"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def _ci_numbers(td: TransferData) -> pd.DataFrame:
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
                "ci_half": b["ci_half"],
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
            lo, hi, clipped = _clip(ci)
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
                    "ci_lo": lo,
                    "ci_hi": hi,
                    "ci_half": ci.half,
                    "delta": dci.mean,
                    "delta_lo": dci.lo,
                    "delta_hi": dci.hi,
                    "note": "; ".join(x for x in (_ci_note(ci), CLIPPED_NOTE if clipped else "") if x),
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

    The first row of each group, ``U``, is the check the paper's findings rest on: bases trained to
    convergence. It says ``no`` ("undertrained bases") when a base's record says it was still rising at its
    end, or when BnB+ is above baseB beyond its CI at some n (:func:`undertrained` has the details).
    """
    paper = paper_cells(reference)
    flags = undertrained(td)
    rows = []
    for group in td.groups:
        layers = td.layers(group)
        cells = _cells(td, group)
        rows.append({"group": group, **_check_bases(td, group, flags[flags["group"] == group])})
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
    if f.claim == "greater_each" and holds == "no":
        why += " (the mean over n, so not above baseB at every n)"
        measured += "; per n: " + _every_n(cells, layers, tolerance, holds, why)[2]
    if f.claim == "greater_each" and not math.isnan(ci.mean) and holds != "no":
        # A mean over n whose whole CI is below 0 already says "not above at every n": keep that "no".
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


# --- undertrained bases ------------------------------------------------------------------------------------------
# The paper's bases are trained to convergence. A base stopped while its validation accuracy still rose gives a
# low baseB line, and then fine-tuning a copy of it (BnB+) simply trains it longer and beats it: every
# "treatment vs baseB" finding is then about training time, not about transfer.


def _distinct_baseb(td: TransferData, group: str) -> np.ndarray:
    """baseB values of a group, each independent base once (as :func:`baseb_line` counts them)."""
    b = td.bases[(td.bases["group"] == group) & td.bases["value"].notna()]
    per_rep = b.groupby("replicate").agg(
        keys=("key", lambda k: tuple(sorted(set(k)))), value=("value", "mean")
    )
    return per_rep.drop_duplicates("keys")["value"].to_numpy()


def bnb_plus_vs_baseb(td: TransferData, group: str) -> dict[int, Interval]:
    """Per n: Welch's interval of BnB+ minus baseB (points), BnB+ one value per replicate, baseB each base once."""
    part = td.values[(td.values["group"] == group) & (td.values["treatment"] == "BnB+")]
    base = _distinct_baseb(td, group)
    out = {}
    for n, cell in part.groupby("n"):
        out[int(n)] = welch_interval(cell.groupby("replicate")["value"].mean().to_numpy(), base)
    return out


def undertrained(td: TransferData) -> pd.DataFrame:
    """The signs of undertrained bases, one row each: a base whose record says ``still_rising`` (its best
    validation accuracy came within the last ``patience`` epochs of its end), and every n where BnB+ is above
    baseB beyond its CI (Welch's interval of BnB+ minus baseB entirely above 0). Columns: group, flag
    (``still rising`` | ``BnB+ above baseB``), role, key, n, d, d_lo, d_hi, detail."""
    columns = ["group", "flag", "role", "key", "n", "d", "d_lo", "d_hi", "detail"]
    rows = []
    info = td.base_info
    for _, b in info[info["still_rising"].fillna(False).astype(bool)].iterrows():
        rows.append(
            {
                "group": b["group"],
                "flag": "still rising",
                "role": b["role"],
                "key": b["key"],
                "n": None,
                "d": math.nan,
                "d_lo": math.nan,
                "d_hi": math.nan,
                "detail": f"{b['role']} {b['key']} (seed {_int(b['seed'])}, init seed {_int(b['init_seed'])}): "
                f"best validation accuracy at epoch {_int(b['best_epoch'])} of {_int(b['epochs'])} "
                f"(stopped: {b['stopped'] or 'not recorded'}); still rising at its end, it may not have "
                f"converged",
            }
        )
    for group in td.groups:
        for n, ci in bnb_plus_vs_baseb(td, group).items():
            if ci.has_ci and ci.lo > 0:
                rows.append(
                    {
                        "group": group,
                        "flag": "BnB+ above baseB",
                        "role": "baseB",
                        "key": None,
                        "n": n,
                        "d": ci.mean,
                        "d_lo": ci.lo,
                        "d_hi": ci.hi,
                        "detail": f"BnB+ at n = {n} is {ci.mean:+.2f} [{ci.lo:+.2f}, {ci.hi:+.2f}] pts above baseB "
                        f"(Welch, 95%): fine-tuning a copy of baseB beats it, the sign of a baseB trained too "
                        f"short",
                    }
                )
    return pd.DataFrame(rows, columns=columns)


def undertrained_text(flags: pd.DataFrame) -> str | None:
    """One line for the top of a report: "undertrained bases: ...", or None when nothing is flagged."""
    if flags.empty:
        return None
    parts = []
    rising = flags[flags["flag"] == "still rising"]
    if len(rising):
        parts.append(
            f"{rising['key'].nunique()} base(s) still rising at their end ("
            + ", ".join(f"{r} {k}" for r, k in zip(rising["role"], rising["key"], strict=True))
            + ")"
        )
    above = flags[flags["flag"] == "BnB+ above baseB"]
    for group, part in above.groupby("group", sort=False):
        ns = ", ".join(str(int(n)) for n in part["n"])
        parts.append(f"BnB+ above baseB beyond its CI at n = {ns} in {group}")
    return "undertrained bases: " + "; ".join(parts)


def _int(v) -> str:
    return "?" if not _present(v) else str(int(v))


def _check_bases(td: TransferData, group: str, flags: pd.DataFrame) -> dict:
    row = {
        "id": "U",
        "finding": "Bases trained to convergence (no base still rising at its end; BnB+ not above baseB)",
        "paper": "bases trained to convergence (450k iterations); BnB+ ~ baseB",
    }
    info = td.base_info[td.base_info["group"] == group]
    known = info["still_rising"].notna()
    checks = {n: ci for n, ci in bnb_plus_vs_baseb(td, group).items() if ci.has_ci}
    worst = max(checks.items(), key=lambda kv: kv[1].lo, default=(None, None))[1]
    numbers = {
        "d": worst.mean if worst else math.nan,
        "d_lo": worst.lo if worst else math.nan,
        "d_hi": worst.hi if worst else math.nan,
        "replicates": worst.n if worst else 0,
    }
    measured = [
        f"{int(known.sum())} of {len(info)} bases record whether they were still rising; "
        f"{int(len(flags[flags['flag'] == 'still rising']))} were",
        "BnB+ - baseB (Welch) per n: "
        + (
            ", ".join(f"n = {n}: {ci.mean:+.2f} [{ci.lo:+.2f}, {ci.hi:+.2f}]" for n, ci in checks.items())
            or "n/a"
        ),
    ]
    row["measured"] = "; ".join(measured)
    if len(flags):
        return {**row, **numbers, "holds": "no", "why": undertrained_text(flags)}
    if len(info) and known.all():
        why = "no base was still rising at its end" + (
            "; BnB+ is not above baseB beyond its CI at any n"
            if checks
            else " (no BnB+ with a CI to compare)"
        )
        return {**row, **numbers, "holds": "yes", "why": why}
    if checks:
        return {
            **row,
            **numbers,
            "holds": "inconclusive",
            "why": "BnB+ is not above baseB beyond its CI, but the base records do not say whether they were "
            "still rising (records of an older harness)",
        }
    return {
        **row,
        **numbers,
        "holds": "not measured",
        "why": "the bases do not record whether they were still rising, and no BnB+ runs with a CI",
    }


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
    table = ci_table(td, numeric=True)
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
