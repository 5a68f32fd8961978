"""Four real workers on one study, one base cache and one outputs folder (issue 8, reliability).

The same command (``python -m harness.train -m search=transfer ...``) is started four times at once against
one SQLite study; every trial needs bases A and B from the shared base cache, which must be trained once in
all. Afterwards the study, the trial folders, the base cache and the analysis loader must agree: every trial
recorded once, nothing lost, nothing duplicated, no half-written file.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from optuna.trial import TrialState
from search_helpers import (
    TRANSFER_TINY,
    base_entries,
    leftover_temporary_files,
    load_study,
    sqlite_url,
    start_workers,
    trial_folders,
    trial_numbers_in,
    unreadable_files,
    wait_for_workers,
)

from analysis.load import load_runs
from harness.search import outputs
from harness.search import study as studies
from harness.train import train

WORKERS = 4
N_TRIALS = 40
STATE_OF_STATUS = {"ok": TrialState.COMPLETE, "pruned": TrialState.PRUNED}


@pytest.mark.slow
def test_four_workers_share_one_study_base_cache_and_outputs_folder(tmp_path):
    root = tmp_path.resolve()  # paths compare as the workers (and the analysis) write them
    workers = start_workers(root, WORKERS, *TRANSFER_TINY, f"search.n_trials={N_TRIALS}")
    finished = wait_for_workers(workers, timeout=600)
    for i, (code, log) in enumerate(finished, 1):
        assert code == 0, f"worker {i} exited {code}:\n{log[-4000:]}"
    logs = [log for _, log in finished]
    assert not any("database is locked" in log for log in logs)

    out = root / "outputs"
    sweep = out / "search" / "transfer"
    study = load_study(sqlite_url(out, "transfer"), "transfer")
    trials = study.trials
    states = Counter(t.state.name for t in trials)
    # Exactly n_trials: no worker asked for a trial once the study had its 40 (none WAITING, RUNNING or FAIL).
    assert len(trials) == N_TRIALS, f"{len(trials)} trials for search.n_trials={N_TRIALS}: {dict(states)}"
    assert [t.number for t in trials] == list(range(N_TRIALS))
    assert set(states) <= {"COMPLETE", "PRUNED"}, {
        t.number: (t.state.name, t.user_attrs.get("reason"))
        for t in trials
        if t.state not in STATE_OF_STATUS.values()
    }

    # One folder per trial, named after it, holding that trial's record; none extra, none shared.
    folders = trial_folders(sweep)
    assert sorted(folders) == list(range(N_TRIALS))
    assert not list(sweep.glob("trial_*/result.json.replaced-*"))  # no folder was taken over by another trial
    records = {}
    for t in trials:
        folder = folders[t.number]
        assert t.user_attrs["folder"] == str(folder)
        record = json.loads((folder / "result.json").read_text())  # parses: whole, never half-written
        assert record["config"]["trial"]["number"] == t.number
        assert record["trial"]["number"] == t.number and record["trial"]["study"] == "transfer"
        assert STATE_OF_STATUS[record["status"]] == t.state, (t.number, record["status"], t.state)
        if t.state == TrialState.COMPLETE:
            assert t.value == record["metrics"]["val_acc"]
        else:
            assert record["stopped_epoch"] == max(t.intermediate_values)
        assert "reused" not in record  # every trial trained its own run
        records[t.number] = record
    assert len({r["run_id"] for r in records.values()}) == N_TRIALS
    assert Counter(r["config"]["trial"]["number"] for r in records.values()) == Counter(range(N_TRIALS))

    # The trials table next to the study is the final one, whichever worker wrote it last.
    table = pd.read_csv(sweep / "trials.csv")
    assert sorted(table["number"]) == list(range(N_TRIALS))
    assert dict(zip(table["number"], table["state"], strict=True)) == {t.number: t.state.name for t in trials}

    # Atomic writes leave temporary files only when a writer dies mid-write; every file loads.
    assert leftover_temporary_files(root) == []
    assert unreadable_files(out) == []

    # Bases A and B were trained once between all four workers; every other trial took them from the cache.
    entries = base_entries(out / "bases")
    halves = sorted(json.loads((e / "result.json").read_text())["config"]["half"] for e in entries)
    assert halves == ["A", "B"], entries
    assert sum(r["transfer"]["bases_trained_by_this_job"] for r in records.values()) == 2
    assert sum(log.count("base cache: training base") for log in logs) == 2
    assert {r["transfer"]["base"]["path"] for r in records.values()} == {
        str(e) for e in entries if json.loads((e / "result.json").read_text())["config"]["half"] == "A"
    }

    # Every worker ran trials, and each trial ran in exactly one worker.
    ran = [trial_numbers_in(log) for log in logs]
    assert all(ran), [len(r) for r in ran]
    assert sum(len(r) for r in ran) == N_TRIALS and set().union(*ran) == set(range(N_TRIALS))

    # The analysis sees each trial once.
    runs = load_runs(sweep)
    assert len(runs) == N_TRIALS
    assert sorted(runs["folder"]) == sorted(str(f) for f in folders.values())
    assert (runs["copies"] == 1).all() and set(runs["status"]) <= {"ok", "pruned"}


def test_trials_table_is_never_replaced_by_an_older_read(tmp_path, monkeypatch):
    """Two workers rewrite trials.csv in one folder. One that read the study before the other's trial finished
    must not rename its older table over the newer one (the study is read and the files written under a lock)."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = studies.open_study("s", studies.open_storage(url), ["maximize"])
    trial = study.ask()
    old_read, new_written = threading.Event(), threading.Event()
    read = outputs.trials_table

    def trials_table(*args):
        table = read(*args)
        if threading.current_thread().name == "old":  # this worker read the study before the trial ended
            old_read.set()
            new_written.wait(timeout=2)  # under the lock the newer write cannot happen first: this times out
        return table

    monkeypatch.setattr(outputs, "trials_table", trials_table)
    old = threading.Thread(target=outputs.write_outputs, args=(study, ["val_acc"], tmp_path, url), name="old")
    old.start()
    assert old_read.wait(timeout=60)
    study.tell(trial, 0.5)
    outputs.write_outputs(study, ["val_acc"], tmp_path, url)  # the worker whose trial just finished
    new_written.set()
    old.join(timeout=60)
    assert list(pd.read_csv(tmp_path / outputs.TABLE_NAME)["state"]) == ["COMPLETE"]


def test_the_folder_of_a_base_build_that_was_killed_is_removed_by_the_next_build(make_cfg, tmp_path):
    overrides = [
        "transfer=yosinski",
        "split=random_half",
        "transfer.treatment=BnB",
        "transfer.n=1",
        "epochs=1",
        "checkpoint.save=false",
    ]
    first = train(make_cfg(overrides), tmp_path / "first")
    entry = Path(first["transfer"]["base"]["path"])
    shutil.rmtree(entry)  # as if the job building it had been killed: no entry, and its half-built folder
    killed = entry.parent / f".{entry.name}.tmp-999999999"
    (killed / "checkpoints").mkdir(parents=True)
    (killed / "checkpoints" / ".last.pt.x.tmp").write_bytes(b"half a checkpoint")
    again = train(make_cfg(overrides), tmp_path / "again")
    assert again["transfer"]["bases_trained_by_this_job"] == 1 and (entry / "entry.json").is_file()
    assert leftover_temporary_files(entry.parent) == []
