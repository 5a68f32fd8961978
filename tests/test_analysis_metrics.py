"""The metric every table uses never selects on the test set: test_acc_best_val_k (epochs chosen on validation
accuracy) by default, test_acc (last epoch) as the alternative. Older records' test-selected test_acc_best_k is
read under its optimistic name, never a default, and labelled wherever it is shown; the new metric is computed
from those records' history with the same definition."""

from __future__ import annotations

import json

import pytest

from analysis import metrics
from analysis.load import load_runs
from analysis.synthetic import fake_record, write_grid, write_record
from analysis.transferability import ci_table, findings, transfer_data

# val_acc and test_acc of five epochs: the best two by validation are epochs 4 and 2 (0.9, 0.8); the best two by
# test are epochs 1 and 3 (0.95, 0.9). The two metrics must differ, or the test could not tell them apart.
VAL = [0.5, 0.8, 0.6, 0.9, 0.7]
TEST = [0.95, 0.7, 0.9, 0.75, 0.8]


def history(val=VAL, test=TEST):
    return [
        {"epoch": e, "val_acc": v, "test_acc": t} for e, (v, t) in enumerate(zip(val, test, strict=True), 1)
    ]


def test_best_val_k_chooses_the_epochs_on_validation():
    assert metrics.best_val_k(history(), 2) == pytest.approx((0.75 + 0.7) / 2)
    assert metrics.best_val_k(history(), 1) == pytest.approx(0.75)
    assert metrics.best_val_k(history(), 10) == pytest.approx(sum(TEST) / 5)  # k capped at the epochs run
    # ties go to the later epoch
    assert metrics.best_val_k(history([0.8, 0.8, 0.8], [0.1, 0.2, 0.3]), 1) == pytest.approx(0.3)
    assert metrics.best_val_k(history([0.8, 0.9, 0.9], [0.1, 0.2, 0.3]), 2) == pytest.approx(0.25)
    # a chosen epoch without a test evaluation (test_every_epoch=false) gives no value, never a substitute
    assert metrics.best_val_k(history([0.9, 0.5], [None, 0.6]), 1) is None
    assert metrics.best_val_k([], 3) is None


def test_a_record_set_with_only_the_new_metric_works_end_to_end(tmp_path):
    write_grid(tmp_path, lambda t, n, s: 0.9 - 0.01 * n + 0.002 * s, base_value=0.91)
    runs = load_runs(tmp_path)
    assert runs["derived"].isna().all()  # nothing had to be computed: the records hold it
    td = transfer_data(runs)
    assert td.metric == "test_acc_best_val_k" and td.selection.text() == "used 60 of 60 runs; none left out"
    table = ci_table(td, numeric=True)
    assert table.loc[table["treatment"] == "baseB", "mean"].item() == pytest.approx(91.0)
    assert table["mean"].notna().all()
    assert set(findings(td)["holds"]) <= {"yes", "no", "inconclusive", "not measured"}


def _old_grid(root, **kw):
    """Records of the harness before test_acc_best_val_k, with a history where test-selected and
    validation-selected epochs differ, and the bases' own records where the summaries point (the base cache)."""
    paths = write_grid(root / "grid", lambda t, n, s: 0.9, split_seeds=(0, 1), old=True, epochs=5, **kw)
    for path in paths:
        rec = json.loads(path.read_text())
        rec["history"] = [
            {**h, "val_acc": v, "test_acc": t} for h, v, t in zip(rec["history"], VAL, TEST, strict=True)
        ]
        rec["metrics"]["best_k"] = 2
        rec["metrics"]["test_acc_best_k"] = (0.95 + 0.9) / 2  # what the old harness wrote: chosen on test
        for role in ("base", "baseB"):
            summary = rec["transfer"].get(role)
            if summary:
                summary["path"] = str(root / "bases" / summary["key"])
                base = {"config": {"best_k": 2}, "metrics": {"best_k": 2}, "history": history(VAL, [0.6] * 5)}
                write_record(root / "bases" / summary["key"], base)
        path.write_text(json.dumps(rec))
    return root / "grid"


def test_old_records_get_the_new_metric_from_their_history(tmp_path):
    runs = load_runs(_old_grid(tmp_path))
    assert "metrics.test_acc_best_k" not in runs and "transfer.baseB.test_acc_best_k" not in runs
    assert runs["metrics.test_acc_best_k_optimistic"].eq((0.95 + 0.9) / 2).all()
    assert runs["metrics.test_acc_best_val_k"].eq((0.75 + 0.7) / 2).all()  # epochs 4 and 2, chosen on val
    assert runs["transfer.baseB.test_acc_best_val_k"].eq(0.6).all()  # from the base's own record
    assert runs["derived"].str.contains("metrics.test_acc_best_val_k").all()
    td = transfer_data(runs)
    assert td.metric == "test_acc_best_val_k"
    assert td.values["value"].eq(72.5).all()  # never the optimistic 92.5
    assert any("predate metrics.test_acc_best_val_k" in note for note in td.notes[td.groups[0]])


def test_the_optimistic_metric_is_never_the_default_and_is_labelled_when_shown(tmp_path):
    from analysis import figures
    from analysis.report import write_report

    root = _old_grid(tmp_path)
    runs = load_runs(root)
    assert transfer_data(runs).metric != "test_acc_best_k"
    md = (write_report(root, tmp_path / "default") / "report.md").read_text()
    assert "test_acc_best_k" not in md and "selected on test" not in md  # not shown at all by default
    # asked for by name: labelled in the data's notes, the figure and the report
    td = transfer_data(runs, "test_acc_best_k")
    assert td.values["value"].eq(92.5).all()
    assert "optimistic (selected on test)" in td.notes[td.groups[0]][0] and "selected on test" in td.label
    fig = figures.transferability_figure(td, td.groups[0])
    assert "optimistic (selected on test)" in fig._suptitle.get_text()
    assert "optimistic (selected on test)" in fig.axes[0].get_ylabel()
    md = (write_report(root, tmp_path / "asked", metric="test_acc_best_k") / "report.md").read_text()
    assert md.count("optimistic (selected on test)") >= 3  # metric line, caveat, table caption
    assert (
        "Sensitivity: the same check on metrics.test\\_acc\\_best\\_val\\_k" in md
    )  # the honest one, next to it


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="choose test_acc_best_val_k"):
        metrics.column("best")
    rec = fake_record()
    assert metrics.k_of(rec) == 3 and metrics.k_of({"config": {"best_k": 10}, "history": [{}] * 4}) == 4
