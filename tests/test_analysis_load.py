"""Loading records into DataFrames: every run kept and marked, flattened columns, the long history, the index
cache and its invalidation, clear errors, and that a second load of 2,000 records re-reads none."""

from __future__ import annotations

import json
import math
import os

import pandas as pd
import pytest

from analysis import load
from analysis.load import INDEX_NAME, NoRunsError, load_history, load_runs, lr_long
from analysis.selection import select
from analysis.synthetic import fake_record, write_many, write_record


def test_reads_the_record_version_the_harness_writes():
    from harness import record

    assert load.SUPPORTED_VERSION == record.RECORD_VERSION
    assert load.RECORD_NAME == record.RECORD_NAME


@pytest.fixture
def mixed(tmp_path):
    """One folder with every kind of run a real outputs/ folder can hold."""
    root = tmp_path / "outputs"
    write_record(root / "ok", fake_record(value=0.95))
    write_record(root / "failed", fake_record(status="failed", value=None, n=2))
    write_record(root / "pruned", fake_record(status="pruned", n=3))
    write_record(root / "old", fake_record(version=0, n=4))
    rec = fake_record(treatment="BnB", n=1)
    del rec["version"]
    write_record(root / "older", rec)
    write_record(root / "nan", fake_record(value=float("nan"), treatment="BnB", n=2))
    (root / "garbage").mkdir(parents=True)
    (root / "garbage" / "result.json").write_text("{not json")
    (root / "list").mkdir()
    (root / "list" / "result.json").write_text("[1, 2]")
    (root / "orphan" / ".hydra").mkdir(parents=True)  # a job that started a run and died before its record
    (root / "orphan" / ".hydra" / "config.yaml").write_text("experiment_name: fake\ndata: {name: mnist5k}\n")
    (root / "orphan" / "started.json").write_text(json.dumps({"run_id": "dead0000", "experiment": "fake"}))
    (root / "phantom" / ".hydra").mkdir(parents=True)  # a config error that exited 2: Hydra's folder, no run
    (root / "phantom" / ".hydra" / "config.yaml").write_text("experiment_name: fake\n")
    (root / "phantom" / "train.log").write_text("error: lr.lo=1 > lr.hi=0.1\n")
    write_record(root / ".tmp-base", fake_record())  # hidden: a base still being built, not a run
    return root


def test_every_run_is_kept_and_marked(mixed):
    runs = load_runs(mixed).set_index(load_runs(mixed)["folder"].map(os.path.basename))
    assert sorted(runs.index) == [
        "failed",
        "garbage",
        "list",
        "nan",
        "ok",
        "old",
        "older",
        "orphan",
        "pruned",
    ]
    assert runs.loc["ok", "status"] == "ok" and pd.isna(runs.loc["ok", "problem"])
    assert runs.loc["failed", "problem"] == "failed: failed on purpose"
    assert runs.loc["pruned", "problem"].startswith("pruned")
    assert "schema version 0" in runs.loc["old", "problem"]
    assert "schema version missing" in runs.loc["older", "problem"]
    assert (
        runs.loc["garbage", "status"] == "unreadable" and "JSONDecodeError" in runs.loc["garbage", "problem"]
    )
    assert runs.loc["list", "status"] == "unreadable" and "not an object" in runs.loc["list", "problem"]
    assert runs.loc["orphan", "status"] == "no_record" and runs.loc["orphan", "experiment"] == "fake"
    assert "was killed, or is still running" in runs.loc["orphan", "problem"]
    assert "phantom" not in runs.index  # neither a record nor started.json: not a run at all
    # a NaN metric is not a load problem (the run finished); tables leave it out and say why
    assert runs.loc["nan", "status"] == "ok" and math.isnan(runs.loc["nan", "metrics.test_acc"])


def test_tables_leave_out_with_reasons(mixed):
    runs = load_runs(mixed)
    sel = select(
        runs, view="t", in_view=runs["kind"] == "treatment", metric="metrics.test_acc", vary=["seed"]
    )
    reasons = sel.left_out["reason"].value_counts().to_dict()
    assert reasons == {"failed": 1, "pruned": 1, "other schema version": 2, "NaN metric": 1}
    assert list(sel.used["folder"].map(os.path.basename)) == ["ok"]
    assert sel.text().startswith("used 1 of 6 runs; left out: 1 NaN metric, 1 failed, 2 other schema version")
    assert sel.outside == 3  # garbage, list and orphan are not treatments (their kind is unknown: run)


def test_flattened_columns(tmp_path):
    sweep = tmp_path / "sweep"
    write_record(sweep / "0_AnB_n2", fake_record(treatment="AnB", n=2, split_seed=3, seed=1))
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    row = load_runs(sweep).iloc[0]
    assert row["kind"] == "treatment" and row["transfer.treatment"] == "AnB" and row["transfer.n"] == 2
    assert row["transfer.split_seed"] == 3 and row["seed"] == 1 and row["lr"] == 0.02
    assert row["data"] == "mnist5k" and row["model"] == "convnet" and row["strategy"] == "freeze_to"
    assert row["config.model.channels"] == "[32, 64, 64]" and row["config.split.seed"] == 3
    assert row["metrics.test_acc_best_val_k"] == 0.9 and row["transfer.baseB.test_acc_best_val_k"] == 0.9
    assert row["init_seed"] == 2001 and row["transfer.baseB.init_seed"] == 1001 and pd.isna(row["derived"])
    assert row["transfer.baseB.still_rising"] == False and row["transfer.base.half"] == "A"  # noqa: E712
    assert row["transfer.baseB.stopped"] == "fixed" and row["transfer.baseB.best_epoch"] == 2
    assert not [c for c in load_runs(sweep).columns if "test_acc_best_k" in c]  # the new schema has none
    assert isinstance(row["timing.started"], pd.Timestamp) and row["epochs"] == 3
    assert row["sweep"] == str(sweep.resolve()) and row["folder"] == str((sweep / "0_AnB_n2").resolve())


def test_history_is_long_with_per_group_rates(tmp_path):
    write_record(tmp_path / "a", fake_record(n=2, epochs=5))
    write_record(tmp_path / "b", fake_record(n=1, epochs=3, treatment="BnB"))
    runs = load_runs(tmp_path)
    history = load_history(tmp_path)
    assert len(history) == 8 and set(history["epoch"]) == {1, 2, 3, 4, 5}
    assert len(load_history(runs[runs["transfer.treatment"] == "BnB"])) == 3
    a = history[history["transfer.treatment"] == "AnB"].set_index("epoch")
    assert a.loc[2, "step"] == 2 * math.ceil(1750 / 64) and a.loc[5, "elapsed_s"] == 5.0
    assert (
        a.loc[1, "lr.conv1"] == 0.0
        and a.loc[1, "lr.head"] == 0.02
        and a.loc[5, "lr.head"] == pytest.approx(0.002)
    )
    rates = lr_long(history)
    assert set(rates["group"]) == {"conv1", "conv2", "conv3", "fc1", "head"} and len(rates) == 8 * 5


def test_index_is_used_and_invalidated(tmp_path, monkeypatch):
    for i in range(5):
        write_record(tmp_path / f"r{i}", fake_record(n=1 + i % 4, split_seed=i, value=0.9))
    first = load_runs(tmp_path)
    assert (tmp_path / INDEX_NAME).is_file()

    def no_reading(path):
        raise AssertionError(f"{path} was read although the index holds it unchanged")

    monkeypatch.setattr(load, "_read_one", no_reading)
    pd.testing.assert_frame_equal(load_runs(tmp_path), first)
    monkeypatch.undo()

    # A changed record is read again (atomic rewrite, as the harness does: new inode and mtime).
    rec = json.loads((tmp_path / "r2" / "result.json").read_text())
    rec["metrics"]["test_acc"] = 0.5
    tmp = tmp_path / "r2" / "result.json.tmp"
    tmp.write_text(json.dumps(rec))
    os.replace(tmp, tmp_path / "r2" / "result.json")
    again = load_runs(tmp_path).set_index("folder")
    assert again.loc[str((tmp_path / "r2").resolve()), "metrics.test_acc"] == 0.5
    # A removed record disappears; a new one appears; a broken index is ignored, not trusted.
    (tmp_path / "r3" / "result.json").unlink()
    write_record(tmp_path / "r9", fake_record(treatment="BnB"))
    (tmp_path / INDEX_NAME).write_text("{broken")
    names = sorted(load_runs(tmp_path)["folder"].map(os.path.basename))
    assert names == ["r0", "r1", "r2", "r4", "r9"]
    assert json.loads((tmp_path / INDEX_NAME).read_text())["version"] == load.INDEX_VERSION


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_runs(tmp_path / "nope")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(NoRunsError, match="no result.json below"):
        load_runs(tmp_path / "empty")


def test_mixed_experiments_are_grouped_not_averaged(tmp_path):
    write_record(tmp_path / "a", fake_record(experiment="grid", epochs=3))
    write_record(tmp_path / "b", fake_record(experiment="grid", epochs=5))
    write_record(tmp_path / "c", fake_record(experiment="other", seed=1))
    write_record(tmp_path / "d", fake_record(experiment="grid", epochs=3, seed=7))  # a replicate of a
    runs = load_runs(tmp_path)
    sel = select(
        runs, view="t", in_view=runs["kind"] == "treatment", metric="metrics.test_acc", vary=["seed"]
    )
    groups = sel.used.set_index(sel.used["folder"].map(os.path.basename))["group"]
    assert groups["a"] == groups["d"] != groups["b"]
    assert "epochs=3" in groups["a"] and "epochs=5" in groups["b"] and groups["c"].startswith("other")


def test_duplicate_runs_count_once(tmp_path):
    write_record(tmp_path / "first" / "x", fake_record(seed=0))
    write_record(tmp_path / "again" / "x", fake_record(seed=0))  # the grid run twice into one folder
    runs = load_runs(tmp_path)
    assert len(runs) == 1 and runs.loc[0, "copies"] == 2  # loading keeps each run once
    every = load_runs(tmp_path, dedupe=False)  # and a table given every folder still counts it once
    sel = select(
        every, view="t", in_view=every["kind"] == "treatment", metric="metrics.test_acc", vary=["seed"]
    )
    assert len(sel.used) == 1 and list(sel.left_out["reason"]) == ["duplicate run"]


def test_a_second_load_of_2000_records_reads_none_of_them_again(tmp_path, monkeypatch):
    """The index pays off without timing anything: a warm load parses no record, a changed one is re-read."""
    write_many(tmp_path, 2000)
    cold = load_runs(tmp_path)
    reads = []
    original = load._read_one
    monkeypatch.setattr(load, "_read_one", lambda path: reads.append(path) or original(path))
    warm = load_runs(tmp_path)
    assert len(cold) == len(warm) == 2000 and reads == []
    pd.testing.assert_frame_equal(cold, warm)
    changed = sorted(tmp_path.rglob("result.json"))[7]
    record = json.loads(changed.read_text())
    record["metrics"]["test_acc"] = 0.123
    write_record(changed.parent, record)
    again = load_runs(tmp_path)
    assert reads == [changed] and 0.123 in set(again["metrics.test_acc"])


def test_a_run_killed_and_run_again_is_one_row(tmp_path):
    """A sweep killed and run again: the first folder has the finished run and a dead job, the rerun's folder
    a reused copy, the resumed run and a failed attempt; another experiment shares one run on purpose."""
    first, again = tmp_path / "sweep1", tmp_path / "sweep2"
    done = fake_record(n=1)
    write_record(first / "0", done)
    write_record(again / "0", {**done, "reused": {"from": str(first / "0")}})
    resumed = fake_record(n=2)
    (first / "1").mkdir(parents=True)  # killed mid-run: only the note that it started
    note = {"run_id": resumed["run_id"], "experiment": "fake", "started": "x"}
    (first / "1" / "started.json").write_text(json.dumps(note))
    write_record(again / "1", resumed)
    flaky = fake_record(n=3)
    write_record(first / "2", {**flaky, "status": "failed", "reason": "out of memory"})
    write_record(again / "2", flaky)
    other = json.loads(json.dumps(done))
    other["config"]["experiment_name"] = "another"
    write_record(tmp_path / "other" / "0", other)

    every = load_runs(tmp_path, dedupe=False)
    assert len(every) == 7
    runs = load_runs(tmp_path).set_index("folder")
    assert len(runs) == 4 and runs.groupby(["experiment", "run_id"]).size().max() == 1
    assert (runs["status"] == "ok").all()
    assert str(first / "0") in runs.index and pd.isna(
        runs.loc[str(first / "0"), "reused_from"]
    )  # the original
    assert runs.loc[str(first / "0"), "copies"] == 2 and runs.loc[str(first / "0"), "copies_in"] == str(
        again / "0"
    )
    assert runs.loc[str(again / "1"), "copies"] == 2 and runs.loc[str(again / "2"), "copies"] == 2
    assert str(tmp_path / "other" / "0") in runs.index  # the same run in another experiment is its own row
    orphan = every.set_index("folder").loc[str(first / "1")]
    assert orphan["status"] == "no_record" and orphan["run_id"] == resumed["run_id"]
    assert "was killed, or is still running" in orphan["problem"]
    history = load_history(tmp_path)
    assert set(history["folder"]) == set(runs.index)


def test_only_a_reused_copy_is_kept_when_the_original_is_not_loaded(tmp_path):
    done = fake_record(n=1)
    write_record(tmp_path / "sweep2" / "0", {**done, "reused": {"from": "/elsewhere/0"}})
    runs = load_runs(tmp_path / "sweep2")
    assert len(runs) == 1 and runs.loc[0, "reused_from"] == "/elsewhere/0" and runs.loc[0, "status"] == "ok"


def test_a_folder_with_neither_record_nor_started_note_is_not_a_run(tmp_path):
    for name in ("config_error", "lr_find"):  # what a job that exits 2, or an lr_find, leaves behind
        (tmp_path / "runs" / name / ".hydra").mkdir(parents=True)
        (tmp_path / "runs" / name / ".hydra" / "config.yaml").write_text("experiment_name: x\n")
    with pytest.raises(NoRunsError, match="no result.json below"):
        load_runs(tmp_path / "runs")
    write_record(tmp_path / "runs" / "ok", fake_record())
    assert list(load_runs(tmp_path / "runs")["folder"].map(os.path.basename)) == ["ok"]
    assert load_history(tmp_path / "runs")["folder"].nunique() == 1


@pytest.mark.parametrize(
    ("lr", "strategy", "expected"),
    [
        (0.02, {"name": "never"}, (0.02, 0.02, 0.02)),
        ({"hi": 1e-3}, {"name": "never"}, (1e-3, 1e-4, 1e-3)),  # fastai's slice(hi): the rest at hi/10
        ({"lo": 1e-5, "hi": 1e-3}, {"name": "never"}, (1e-3, 1e-5, 1e-3)),
        ([1e-4, 2e-4, 1e-3], {"name": "never"}, (1e-3, 1e-4, 1e-3)),  # one rate per group: first and last
        (0.02, {"name": "full_unfreeze", "base_lr": 2e-3}, (2e-3, 2e-3, 2e-3)),  # the strategy's own rate
        (0.02, {"name": "freeze_to", "lr": {"lo": 1e-4, "hi": 1e-2}}, (1e-2, 1e-4, 1e-2)),
    ],
)
def test_lr_columns_keep_the_slice(tmp_path, lr, strategy, expected):
    rec = fake_record()
    rec["config"]["lr"], rec["config"]["strategy"] = lr, strategy
    write_record(tmp_path / "r", rec)
    row = load_runs(tmp_path).iloc[0]
    assert (row["lr"], row["lr_lo"], row["lr_hi"]) == pytest.approx(expected)


def test_a_slice_can_be_queried(tmp_path):
    for i, lr in enumerate([{"lo": 1e-5, "hi": 1e-3}, {"lo": 1e-4, "hi": 1e-3}, 1e-3]):
        rec = fake_record(seed=i)
        rec["config"]["lr"] = lr
        rec["config"]["strategy"] = {"name": "never"}
        write_record(tmp_path / f"r{i}", rec)
    runs = load_runs(tmp_path)
    assert runs["lr"].tolist() == [1e-3] * 3  # one number cannot tell these three apart
    hit = runs.query("lr_lo == 1e-5 and lr_hi == 1e-3")
    assert list(hit["folder"].map(os.path.basename)) == ["r0"]


def test_lr_columns_of_a_real_run_are_the_rates_its_plan_ended_with(make_cfg, tmp_path):
    from harness.train import train

    cfg = make_cfg(["strategy=full_unfreeze", "strategy.base_lr=2e-3", "strategy.lr_mult=100", "epochs=1"])
    train(cfg, tmp_path / "run")
    row = load_runs(tmp_path / "run").iloc[0]
    # fastai's fine_tune: base_lr halves for the unfrozen phase, spread over slice(base_lr/lr_mult, base_lr)
    assert (row["lr_lo"], row["lr_hi"]) == pytest.approx((1e-3 / 100, 1e-3))
