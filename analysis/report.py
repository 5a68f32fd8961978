"""``python -m analysis.report PATH [--out DIR]``: a self-contained report folder for the runs below PATH.

The folder (default ``PATH/report/``) holds ``report.md`` with the figures embedded by relative path,
``figures/`` (PNG and PDF), ``tables/`` (CSV at full precision, LaTeX with booktabs), ``configs/`` (per
experiment: the config its runs share and the keys that vary) and ``provenance.json``. Sections appear for what
the folder holds: transfer grids, strategy comparisons, searches. Every table says how many runs it used and how
many it left out, and why.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import sys
import warnings
from pathlib import Path

import pandas as pd

from analysis import benchmark, diagnostics, figures, provenance, search, strategies, transferability
from analysis import metrics as metrics_mod
from analysis.load import NoRunsError, load_history, load_runs
from analysis.tables import escape_md, markdown_table, write_table
from analysis.transferability import METRICS, TOLERANCE

MAX_LISTED = 20  # rows of a problem list shown in report.md; the CSV next to it has all of them


class _Doc:
    """The report being written: Markdown lines plus the files next to it."""

    def __init__(self, root: Path, out: Path):
        self.root, self.out, self.lines = root, out, []
        self.slugs: dict[str, str] = {}

    def slug(self, text: str) -> str:
        """A short file-name-safe name for ``text``, unique within this report."""
        if text not in self.slugs:
            short = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:64] or "x"
            if short in self.slugs.values():
                short += "_" + hashlib.sha1(text.encode()).hexdigest()[:6]
            self.slugs[text] = short
        return self.slugs[text]

    def add(self, *lines: str) -> None:
        self.lines += [*lines, ""]

    def figure(self, fig, name: str, caption: str) -> None:
        paths = figures.save(fig, self.out / "figures", name)
        self.add(
            f"![{escape_md(caption)}](figures/{paths['png'].name})",
            f"*{escape_md(caption)}* ([PNG](figures/{paths['png'].name}), [PDF](figures/{paths['pdf'].name}))",
        )

    def table(
        self,
        frame: pd.DataFrame,
        name: str,
        caption: str,
        shown: pd.DataFrame | None = None,
        digits: int | dict = 2,
    ) -> None:
        """``shown`` (formatted for reading) goes into report.md and LaTeX; ``frame`` (full precision) into CSV."""
        shown = frame if shown is None else shown
        paths = write_table(shown, self.out / "tables", name, caption=caption, digits=digits)
        frame.to_csv(paths["csv"], index=False)
        self.add(
            f"**{escape_md(caption)}** ([CSV](tables/{paths['csv'].name}), "
            f"[LaTeX](tables/{paths['tex'].name}))"
        )
        self.add(markdown_table(shown, digits))

    def rel(self, folder) -> str:
        try:
            return str(Path(folder).relative_to(self.root.resolve()))
        except ValueError:
            return str(folder)


def write_report(
    path: str | Path,
    out: str | Path | None = None,
    *,
    metric: str = metrics_mod.DEFAULT,
    tolerance: float = TOLERANCE,
    command: str | None = None,
) -> Path:
    """Write the report for the runs below ``path``; returns the report folder. ``metric``: see
    :mod:`analysis.metrics` (default ``test_acc_best_val_k``; ``test_acc_best_k`` is labelled optimistic)."""
    metrics_mod.check(metric)
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    out = Path(out).expanduser().resolve() if out else (root if root.is_dir() else root.parent) / "report"
    searches = search.find_searches(root)
    try:
        runs = load_runs(root)
    except NoRunsError:
        if not searches:
            raise
        runs = None
    _check_out(out)
    # Written into a hidden sibling and swapped in at the end: a reader (or a grid's callback racing a user)
    # sees the old report or the whole new one, and a crash mid-way leaves nothing that looks finished.
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "figures").mkdir(parents=True)
    try:
        _write(root, tmp, runs, searches, metric, tolerance, command)
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write(
    root: Path,
    out: Path,
    runs: pd.DataFrame | None,
    searches: list,
    metric: str,
    tolerance: float,
    command: str | None,
) -> None:
    doc = _Doc(root, out)
    command = command or provenance.report_command()
    doc.add(
        f"# Report: {escape_md(root.name)}",
        f"Runs below `{root}`; written {provenance.now()} by `{command}`.",
    )
    prov: dict = {
        "report": {
            "written": provenance.now(),
            "command": command,
            "path": str(root),
            "metric": METRICS.get(metric, metric),
            "tolerance_points": tolerance,
            "analysis": provenance.analysis_version(),
        }
    }
    if runs is not None:
        if (runs["kind"] == "treatment").any():
            td = transferability.transfer_data(runs, metric)
            prov["undertrained"] = _undertrained(doc, td)
        _inventory(doc, runs)
        if (runs["kind"] == "treatment").any():
            prov["transferability"] = _transferability(doc, td, runs, tolerance)
        if (runs["kind"] == "run").any():
            # [benchmark] accuracy against FLOPs and seconds, when the runs counted their compute
            prov["benchmark"] = benchmark.section(doc, runs)
            prov["strategies"] = _strategies(doc, runs)
    for folder in searches:
        prov.setdefault("searches", {})[str(folder)] = _search(doc, folder)
    _provenance(doc, runs, prov)
    (out / "provenance.json").write_text(json.dumps(prov, indent=1, default=str))
    (out / "report.md").write_text("\n".join(doc.lines))


class ReportError(ValueError):
    """The report cannot be written where asked."""


def _check_out(out: Path) -> None:
    """The report may go to a new folder, an empty one, or one holding an earlier report (replaced whole, so no
    stale figure survives next to the new ones); any other folder is refused, never deleted."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ReportError(f"--out {out} is a file; give a folder")
    if any(out.iterdir()) and not (out / "report.md").is_file():
        raise ReportError(
            f"--out {out} is not empty and holds no earlier report (no report.md); "
            f"choose an empty or new folder"
        )


def _swap_in(new: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(new, out)
    shutil.rmtree(old, ignore_errors=True)


# --- sections ---------------------------------------------------------------------------------------------------


def _inventory(doc: _Doc, runs: pd.DataFrame) -> None:
    doc.add("## Runs found")
    counts = runs.groupby(["kind", "status"], dropna=False).size().rename("runs").reset_index()
    doc.table(counts, "runs_by_kind_and_status", f"{len(runs)} runs by kind and status")
    bad = runs[runs["problem"].notna()]
    if len(bad):
        listed = pd.DataFrame(
            {"folder": bad["folder"].map(doc.rel), "status": bad["status"], "problem": bad["problem"]}
        )
        doc.add(
            f"{len(bad)} run(s) cannot be used by any table (failed, pruned, another schema version, unreadable "
            f"or without a record); they are counted in every table's *left out* line."
        )
        doc.table(listed, "problems", "Runs with a problem", shown=listed.head(MAX_LISTED))
        if len(bad) > MAX_LISTED:
            doc.add(f"... and {len(bad) - MAX_LISTED} more in the CSV.")


def _ci_shown(table: pd.DataFrame) -> pd.DataFrame:
    def ci(lo, hi, sign=""):
        return "" if math.isnan(lo) else f"[{lo:{sign}.2f}, {hi:{sign}.2f}]"

    return pd.DataFrame(
        {
            "treatment": table["treatment"],
            "n": table["n"],
            "runs": table["runs"],
            "replicates": table["replicates"],
            "mean (%)": table["mean"],
            "95% CI (%)": [ci(lo, hi) for lo, hi in zip(table["ci_lo"], table["ci_hi"], strict=True)],
            "vs baseB (pts)": [
                f"{d:+.2f}" if t != "baseB" and not math.isnan(d) else ""
                for t, d in zip(table["treatment"], table["delta"], strict=True)
            ],
            "95% CI vs baseB": [
                ci(lo, hi, "+") for lo, hi in zip(table["delta_lo"], table["delta_hi"], strict=True)
            ],
            "note": table["note"],
        }
    )


def _undertrained(doc: _Doc, td) -> list[dict]:
    """The warning at the top of the report: bases still rising at their end, grids where BnB+ beats baseB."""
    flags = transferability.undertrained(td)
    if flags.empty:
        return []
    doc.add(f"> **Warning: {escape_md(transferability.undertrained_text(flags))}.**")
    doc.add(
        "> The paper's bases are trained to convergence. A base stopped while its validation accuracy still "
        "rose makes a low baseB line, and fine-tuning a copy of it (BnB+) then beats it by simply training "
        "longer: the comparisons with baseB below measure training time as much as transfer. Train the bases "
        "longer (`transfer.base_epochs`) or until validation accuracy stops improving."
    )
    listed = pd.DataFrame({"experiment": flags["group"], "flag": flags["flag"], "detail": flags["detail"]})
    doc.table(listed, "undertrained", "Undertrained bases", shown=listed.head(MAX_LISTED))
    if len(flags) > MAX_LISTED:
        doc.add(f"... and {len(flags) - MAX_LISTED} more in the CSV.")
    return flags.to_dict("records")


def _other_metric(metric: str) -> str:
    """The metric of the sensitivity table: the last epoch for the default, the default for the others (the
    optimistic one is never chosen for the reader)."""
    return metrics_mod.LAST if metric == metrics_mod.BEST_VAL_K else metrics_mod.BEST_VAL_K


def _transferability(doc: _Doc, td, runs: pd.DataFrame, tolerance: float) -> dict:
    metric = td.metric
    other_metric = _other_metric(metric)
    td_other = transferability.transfer_data(runs, other_metric)
    ci = transferability.ci_table(td, numeric=True)
    line = transferability.baseb_line(td).set_index("group")
    found = transferability.findings(td, tolerance)
    found_other = transferability.findings(td_other, tolerance) if len(td_other.values) else None
    long = transferability.side_by_side(td)
    sel = td.selection
    info = {}
    if not td.groups:
        doc.add("## Transferability", f"No usable treatment runs: {escape_md(sel.text())}.")
        _left_out(doc, sel, None, "transfer_left_out")
        return {"groups": {}, "selection": sel.text()}
    outside = ", ".join(f"{v} of kind {k}" for k, v in sel.outside_kinds.items())
    for group in td.groups:
        slug = doc.slug(group)
        part = td.values[td.values["group"] == group]
        layers = td.layers(group)
        doc.add(f"## Transferability: {escape_md(group)}")
        splits = sorted({int(s) for s in part["split_seed"].dropna()})
        seeds = sorted({int(s) for s in part["seed"].dropna()})
        doc.add(
            f"Metric: `{METRICS[metric]}` in percent: {escape_md(metrics_mod.LABELS[metric])}"
            + (
                f" (**not for claims**: its epochs were chosen on the test set; the default is "
                f"`{METRICS[metrics_mod.BEST_VAL_K]}`)"
                if metric == metrics_mod.OPTIMISTIC
                else ""
            )
            + f". This net has "
            f"L = {layers} weight layers, so n = 1..{layers - 1}; the paper's has L = 8 (n = 1..7). "
            f"Replicates: split seeds {splits} x seeds {seeds}. This experiment: "
            f"{escape_md(sel.text(group))}."
            + (
                f" Runs in the folder that are not transfer treatments: {escape_md(outside)}."
                if outside
                else ""
            )
        )
        for note in td.notes.get(group, []):
            doc.add(f"> **Caveat.** {escape_md(note)}")
        rows = ci[ci["group"] == group]
        if not set(rows["treatment"]) & set(transferability.N_TREATMENTS):
            # e.g. the warm-start grid (warm vs scratch): no n, so no curve against n and no paper findings
            doc.table(
                rows,
                f"transfer_ci_{slug}",
                f"Mean and 95% CI per treatment, {METRICS[metric]}",
                shown=_ci_shown(rows),
            )
            _left_out(doc, sel, group, f"transfer_left_out_{slug}")
            _config_file(doc, sel.used[sel.used["group"] == group], slug)
            info[group] = {"used_runs": int((sel.used["group"] == group).sum()), "selection": sel.text(group)}
            continue
        doc.figure(
            figures.transferability_figure(td, group, panels=("measured", "paper")),
            f"transfer_{slug}",
            "Accuracy against n: this harness (left; lines are means, bands 95% t-intervals over replicates "
            "clipped to [0, 100] %, running past the axis' edge where they are much wider than the data; dashed "
            "the baseB line with its CI) and the paper's numbers at its own n (right, the same treatments)",
        )
        doc.figure(
            figures.transferability_figure(td, group, panels=("relative", "paper_relative")),
            f"transfer_relative_{slug}",
            "The same relative to baseB (points): here paired within each replicate, bands clipped to "
            "[-baseB, 100 - baseB] (an accuracy stays within [0, 100] %); right, the paper",
        )
        _cka(doc, sel.used[sel.used["group"] == group], slug)
        view = transferability.paper_view(rows).reset_index()
        view.columns = [c if c in ("treatment", transferability.NO_N) else f"n = {c}" for c in view.columns]
        doc.table(
            rows,
            f"transfer_table_{slug}",
            f"{_metric_short(metric)} (%), mean ± half-width of the 95% t-interval over replicates (+up/-down "
            f"where the interval is clipped to [0, 100] %), per treatment and n (baseB at n = 0); the CSV has "
            f"every number",
            shown=view,
        )
        doc.table(
            rows,
            f"transfer_ci_{slug}",
            f"Per (treatment, n): runs, replicates, 95% CI (clipped to [0, 100] %) and the paired difference "
            f"to baseB, {METRICS[metric]}, {group}",
            shown=_ci_shown(rows),
        )
        b = line.loc[group]
        doc.add(
            f"baseB line: {b['mean']:.2f} %"
            + (f" [{b['ci_lo']:.2f}, {b['ci_hi']:.2f}]" if not math.isnan(b["ci_lo"]) else " (no CI)")
            + f" over {int(b['bases'])} distinct base network(s), each counted once"
            + (f" ({escape_md(b['note'])})." if b["note"] else ".")
        )
        rows_f = found[found["group"] == group]
        doc.add(
            "### The paper's findings, checked here",
            f"Each finding is a difference d in points with a 95% t-interval over replicates (paired within a "
            f"replicate; Welch between the two grids for the dissimilar split). *Yes*: the whole CI is on the "
            f"claimed side of 0 (for '~', inside +-{tolerance:g} pts); *no*: the whole CI is on the other side "
            f"(for '~', entirely beyond +-{tolerance:g} pts); otherwise, or with one replicate, *inconclusive*. "
            f"Middle layers are n with n/L in [0.35, 0.65] (the paper's 3-5 of 8; here "
            f"{transferability.middle(layers)}); the upper half is n > (L-1)/2 (here {transferability.upper(layers)}; "
            f"the paper quotes n >= 5). Row U checks what the findings rest on, bases trained to convergence: "
            f"*no* (undertrained bases) when a base's record says its validation accuracy was still rising at "
            f"its end, or when BnB+ is above baseB beyond its CI (Welch) at some n.",
        )
        shown = rows_f[["id", "finding", "paper", "measured", "holds", "why"]].rename(
            columns={"paper": "paper's numbers", "measured": "measured here (pts)", "holds": "holds here?"}
        )
        doc.table(rows_f.drop(columns="group"), f"transfer_findings_{slug}", "Findings check", shown=shown)
        if found_other is not None and group in set(found_other["group"]):
            fo = found_other[found_other["group"] == group]
            doc.table(
                fo.drop(columns="group"),
                f"transfer_findings_{other_metric}_{slug}",
                f"Sensitivity: the same check on {METRICS[other_metric]} ({_metric_short(other_metric)})",
                shown=fo[["id", "holds", "measured"]].rename(
                    columns={"holds": "holds here?", "measured": "measured here (pts)"}
                ),
            )
        wide = transferability.side_by_side_wide(long, group)
        doc.table(
            long[long["source"].isin([group, "paper"])],
            f"transfer_vs_paper_{slug}",
            "Side by side with the paper: difference to each source's own baseB (points), each at its own n "
            f"(here L = {layers}, paper L = 8: the same n is not the same depth)",
            shown=wide,
        )
        _left_out(doc, sel, group, f"transfer_left_out_{slug}")
        info[group] = {
            "used_runs": int((sel.used["group"] == group).sum()),
            "split_seeds": splits,
            "seeds": seeds,
            "layers": layers,
            "selection": sel.text(group),
            "caveats": td.notes.get(group, []),
        }
        _config_file(doc, sel.used[sel.used["group"] == group], slug)
    _unattributed(doc, sel, td.groups, "transfer_left_out_other")
    return {"groups": info, "selection": sel.text()}


def _metric_short(metric: str) -> str:
    return metrics_mod.SHORT[metric]


def _records(runs: pd.DataFrame) -> list[dict]:
    out = []
    for folder in runs["folder"]:
        try:
            out.append(json.loads((Path(folder) / "result.json").read_text()))
        except (OSError, ValueError):
            continue  # load_runs already counted it as left out, with the reason
    return out


def _cka(doc: _Doc, used: pd.DataFrame, slug: str) -> None:
    """CKA per layer for baseB, AnB+ and BnB+ (harness/diagnostics/cka.py), when the runs measured it."""
    records = diagnostics.with_bases(_records(used))
    if diagnostics.cka_frame(records).empty:
        return
    doc.figure(
        diagnostics.cka_figure(records),
        f"transfer_cka_{slug}",
        "Linear CKA between each layer's representation at the start of training and after it "
        "(1 = unchanged), for baseB and the '+' treatments, one panel per n",
    )


def _what_trained(doc: _Doc, used: pd.DataFrame, slug: str) -> None:
    """For the first run of each strategy: which groups trained at which lr, and how far each group moved."""
    for variant, part in used.groupby("variant", sort=False):
        records = _records(part.head(1))
        if not records:
            continue
        name = doc.slug(f"{slug}_{variant}")
        doc.figure(
            diagnostics.phase_map(records[0]),
            f"phase_map_{name}",
            f"{variant}: which groups train in each phase, and at which learning rate",
        )
        if not diagnostics.diagnostics_frame(records[0]).empty:
            doc.figure(
                diagnostics.weight_change_heatmap(records[0]),
                f"weight_change_{name}",
                f"{variant}: relative weight change per group over epochs (0 = bit-identical to the start)",
            )


def _unattributed(doc: _Doc, sel, groups: list[str], name: str) -> None:
    """Left-out runs that belong to none of the experiments shown (e.g. a job that died before its config was
    resolved): listed once, so nothing disappears silently."""
    rest = sel.left_out[~sel.left_out["group"].isin(groups)]
    if rest.empty:
        return
    listed = pd.DataFrame(
        {
            "folder": rest["folder"].map(doc.rel),
            "group": rest["group"],
            "reason": rest["reason"],
            "detail": rest["detail"],
        }
    )
    doc.table(
        listed,
        name,
        f"Left out of {sel.view}, in no experiment above ({len(rest)} runs)",
        shown=listed.head(MAX_LISTED),
    )


def _left_out(doc: _Doc, sel, group: str | None, name: str) -> None:
    out = sel.left_out if group is None else sel.left_out[sel.left_out["group"] == group]
    if out.empty:
        return
    listed = pd.DataFrame(
        {"folder": out["folder"].map(doc.rel), "reason": out["reason"], "detail": out["detail"]}
    )
    doc.table(listed, name, f"Left out ({len(out)} runs)", shown=listed.head(MAX_LISTED))


def _strategies(doc: _Doc, runs: pd.DataFrame) -> dict:
    metric = "metrics.test_acc"
    sel = strategies.strategy_runs(runs, metric)
    table = strategies.strategy_table(sel, metric)
    info = {}
    history = load_history(sel.used) if len(sel.used) else None
    for group in dict.fromkeys(sel.used["group"]):
        slug = doc.slug(group)
        used = sel.used[sel.used["group"] == group]
        doc.add(
            f"## Strategy comparison: {escape_md(group)}",
            f"Ordinary runs (not transfer treatments or search trials); {escape_md(sel.text(group))}. "
            f"Accuracy: `{metric}` (last epoch) in percent; time: wall seconds of the whole run.",
        )
        rows = table[table["group"] == group]
        shown = pd.DataFrame(
            {
                "variant": rows["variant"],
                "runs": rows["runs"],
                "seeds": rows["seeds"],
                "test acc (%)": rows["acc_mean"],
                "95% CI (%)": [
                    ("" if math.isnan(a) else f"[{a:.2f}, {b:.2f}]")
                    for a, b in zip(rows["acc_lo"], rows["acc_hi"], strict=True)
                ],
                "wall time (s)": rows["seconds_mean"],
                "samples/s": rows["samples_per_s"],
                "note": rows["note"],
            }
        )
        doc.table(
            rows.drop(columns="group"),
            f"strategies_{slug}",
            "Accuracy and wall time per strategy",
            shown=shown,
        )
        doc.figure(
            figures.accuracy_vs_time(used, metric=metric, by="variant"),
            f"strategies_time_{slug}",
            "Test accuracy against wall time; small markers are runs, large ones the mean with 95% CIs",
        )
        h = history[history["folder"].isin(used["folder"])].copy()
        h["variant"] = h["folder"].map(dict(zip(used["folder"], used["variant"], strict=True)))
        doc.figure(
            figures.learning_curves(h, by="variant"),
            f"strategies_curves_{slug}",
            "Validation accuracy per epoch; dotted lines mark phase changes (unfreeze points)",
        )
        doc.figure(
            figures.lr_curves(h, by="variant"),
            f"strategies_lr_{slug}",
            "Per-group learning rate against optimizer steps (first run of each variant)",
        )
        _what_trained(doc, used, slug)
        bounds = strategies.phase_boundaries(h)
        if len(bounds):
            bounds["folder"] = bounds["folder"].map(doc.rel)
            doc.table(
                bounds,
                f"strategies_phases_{slug}",
                "Phase boundaries (unfreeze points)",
                shown=bounds.head(MAX_LISTED),
            )
        _left_out(doc, sel, group, f"strategies_left_out_{slug}")
        _config_file(doc, used, slug)
        info[group] = {"used_runs": len(used), "selection": sel.text(group)}
    if sel.used.empty:
        doc.add("## Strategy comparison", f"No usable ordinary runs: {escape_md(sel.text())}.")
        _left_out(doc, sel, None, "strategies_left_out")
    else:
        _unattributed(doc, sel, list(dict.fromkeys(sel.used["group"])), "strategies_left_out_other")
    return info


def _search(doc: _Doc, folder: Path) -> dict:
    try:
        trials = search.load_trials(folder)
    except (OSError, ValueError) as e:
        doc.add(f"## Search in {escape_md(doc.rel(folder))}", f"Its trials could not be read: {escape_md(e)}")
        return {"error": str(e)}
    name = trials.attrs.get("study") or folder.name
    slug = doc.slug(f"search_{name}")
    objective = trials.attrs["objectives"][0]
    direction = (trials.attrs.get("directions") or ["maximize"])[0]
    doc.add(
        f"## Search: {escape_md(name)}",
        f"{len(trials)} trials from `{escape_md(trials.attrs['source'])}`; objective `{escape_md(objective)}` "
        f"({direction}); pruned share of finished trials: {search.pruned_share(trials):.0%}.",
    )
    doc.table(search.state_counts(trials), f"{slug}_states", "Trials per state", digits={"share": 2})
    if (trials["state"] == "COMPLETE").any():
        doc.figure(
            figures.optimization_history(trials, objective=objective, direction=direction),
            f"{slug}_history",
            "Optimization history: objective per trial and the best so far",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the report says it, next to the figure
            imp = search.importances(trials, objective)
        done = imp.attrs["complete_trials"]
        if imp.attrs.get("warning"):
            doc.add(f"> **Warning: {escape_md(imp.attrs['warning'])}.**")
        doc.figure(
            figures.param_importances(imp, title=f"parameter importances ({done} complete trials)"),
            f"{slug}_importances",
            "Parameter importances (fANOVA over the complete trials)",
        )
    except ValueError as e:
        doc.add(f"Parameter importances: not computed ({escape_md(e)}).")
    best = search.best_trials(trials, 5, objective, direction)
    # report.md shows only the overrides that differ between these trials; the CSV keeps the full command line
    split = best["overrides"].fillna("").str.split()
    shared = set.intersection(*(set(o) for o in split)) if len(split) else set()
    shown = best.drop(columns=["folder", "overrides"]).assign(
        overrides=[" ".join(o for o in items if o not in shared) for items in split],
        folder=best["folder"].map(lambda f: doc.rel(f) if isinstance(f, str) else f),
    )
    doc.table(
        best,
        f"{slug}_best",
        "Best trials (overrides: those that differ between them; the CSV has the full command line)",
        shown=shown,
        digits={c: 4 for c in best.columns},
    )
    if (folder / search.BEST_NAME).is_file():
        doc.add(f"The search's own pick: `{escape_md(doc.rel(folder / search.BEST_NAME))}`.")
    return {
        "trials": len(trials),
        "source": trials.attrs["source"],
        "pruned_share": search.pruned_share(trials),
    }


def _config_file(doc: _Doc, runs: pd.DataFrame, slug: str) -> None:
    import yaml

    common, varies = provenance.common_config(runs["path"].dropna())
    path = doc.out / "configs" / f"{slug}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        yaml.safe_dump({"runs": len(runs), "varies": varies, "common": common}, sort_keys=False, width=1000)
    )
    doc.add(
        f"Config of these runs (shared keys, and the keys that vary with their values): "
        f"[configs/{path.name}](configs/{path.name})."
    )


def _provenance(doc: _Doc, runs: pd.DataFrame | None, prov: dict) -> None:
    rep = prov["report"]
    a = rep["analysis"]
    doc.add(
        "## Provenance",
        f"- Report written {rep['written']} by `{escape_md(rep['command'])}`; analysis {a['version']} at commit "
        f"{a['git_commit']}{' (with uncommitted changes)' if a['git_dirty'] else ''}; Python {a['python']}, "
        f"pandas {a['pandas']}, matplotlib {a['matplotlib']}, scipy {a['scipy']}.",
    )
    if runs is None:
        return
    r = provenance.run_provenance(runs)
    prov["runs"] = r
    doc.add(
        f"- Runs: {r['runs']}, started {r['first_started']} to {r['last_finished']} (UTC).",
        f"- harness versions: {_counts(r['harness_version'])}; git commits: {_counts(r['harness_git_commit'])}; "
        f"torch: {_counts(r['torch'])}; devices: {_counts(r['device'])}.",
        f"- Seeds: {r['seeds']}; split seeds: {r['split_seeds']}.",
    )
    if r["sweeps"]:
        copies = []
        for i, sweep in enumerate(r["sweeps"]):
            # the sweep's full config goes with the report, so the folder stands on its own
            target = doc.out / "configs" / f"multirun_{i}.yaml"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(sweep) / "multirun.yaml", target)
            copies.append(f"configs/{target.name}")
        sweeps = pd.DataFrame(
            {
                "sweep": [doc.rel(s) for s in r["sweeps"]],
                "command": list(r["sweeps"].values()),
                "config": copies,
            }
        )
        doc.table(sweeps, "sweeps", "Sweeps, the commands that launched them and their multirun.yaml")


def _counts(counts: dict) -> str:
    return ", ".join(f"{escape_md(k)} ({v} runs)" for k, v in counts.items()) or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a run, a sweep, a search folder or all of outputs/")
    parser.add_argument("--out", help="report folder (default: PATH/report)")
    parser.add_argument(
        "--metric",
        default=metrics_mod.DEFAULT,
        choices=list(METRICS),
        help="transferability metric (default: %(default)s, test accuracy at the k epochs with the best "
        "validation accuracy; test_acc: the last epoch; test_acc_best_k: older records only, "
        f"{metrics_mod.OPTIMISTIC_LABEL})",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE,
        help="points within which 'about equal' findings hold (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        out = write_report(args.path, args.out, metric=args.metric, tolerance=args.tolerance)
    except (FileNotFoundError, NoRunsError, ReportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
