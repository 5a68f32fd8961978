"""The Optuna sweeper end to end: real multiruns (``python -m harness.train -m search=...``) in subprocesses,
checked through the study in its storage and the jobs' result.json files.

Data and model are tiny (see tests/search_helpers.py): a trial takes well under a second, a subprocess a few.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from search_helpers import (
    FAULTY_MODEL,
    FINETUNE_FIXED,
    REPO,
    assert_no_trial_lost_or_duplicated,
    env,
    load_study,
    result_of,
    run_search,
    sqlite_url,
    start_search,
    trial_numbers_in,
    two_workers,
)

from harness.errors import ConfigError
from harness.search import study as studies
from harness.search.study import ATTR_KEY, OWNER_KEY
from harness.train import train

GOOD, BAD = "3e-2", "1e-6"  # base_lr that learns / that does not (val_acc after epoch 1: ~0.3 vs ~0.1)


def table(root: Path, name: str = "finetune_lr"):
    import pandas as pd

    return pd.read_csv(root / "search" / name / "trials.csv")


# --- the job's side, in process -----------------------------------------------------------------------


def test_trial_hook_reports_every_epoch_and_prunes(make_cfg, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = studies.open_study("s", studies.open_storage(url), ["maximize"])
    pruner = {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 1}
    study.set_user_attr(ATTR_KEY, {"pruner": pruner, "objectives": ["val_acc"]})
    good = study.ask()
    for epoch in (1, 2):
        good.report(1.0, epoch)
    study.tell(good, 1.0)
    study.ask()  # trial 1: the job below attaches to it by number

    cfg = make_cfg(["trial.number=1", "trial.study=s", f"trial.storage='{url}'", "checkpoint.save=false"])
    result = train(cfg, tmp_path / "run")

    assert result["status"] == "pruned" and result["stopped_epoch"] == 1
    assert "median" in result["reason"]
    assert result["trial"] == {
        "study": "s",
        "number": 1,
        "storage": url,
        "pruner": "median",
        "reported_epochs": 1,
    }
    reported = load_study(url, "s").trials[1].intermediate_values
    assert reported == {1: result["history"][0]["val_acc"]}


def test_median_and_hyperband_pruners_are_selectable():
    assert isinstance(
        studies.make_pruner({"name": "median", "n_warmup_steps": 2}), optuna.pruners.MedianPruner
    )
    hyperband = studies.make_pruner({"name": "hyperband", "min_resource": 1, "max_resource": 6})
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert isinstance(studies.make_pruner({"name": "none"}), optuna.pruners.NopPruner)
    with pytest.raises(ConfigError, match="median, hyperband, none"):
        studies.make_pruner({"name": "asha"})


def test_a_run_outside_a_study_has_no_trial_hook(make_cfg, tmp_path):
    result = train(make_cfg(["checkpoint.save=false", "epochs=1"]), tmp_path / "run")
    assert result["status"] == "ok" and "trial" not in result


# --- pruning, best.yaml, re-run -----------------------------------------------------------------------


@pytest.mark.slow
def test_pruning_end_to_end_and_best_yaml_reruns_the_best_trial(tmp_path):
    proc = run_search(
        tmp_path,
        *FINETUNE_FIXED,
        f"strategy.base_lr=choice({GOOD},{BAD},1e-7)",
        "search.sampler.name=grid",
        "search.pruner.n_startup_trials=1",
    )
    study = load_study(sqlite_url(tmp_path), "finetune_lr")
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED]
    for t in study.trials[1:]:
        record = result_of(t.user_attrs["folder"])
        assert record["status"] == "pruned" and record["stopped_epoch"] == 1
        assert len(record["history"]) == 1 and t.intermediate_values == {1: record["history"][0]["val_acc"]}
        assert Path(t.user_attrs["folder"]).name == f"trial_{t.number}"  # the folder of trial N is trial_N

    best_path = tmp_path / "search" / "finetune_lr" / "best.yaml"
    assert f"best.yaml: {best_path}" in proc.stdout and "best trial: 0" in proc.stdout
    best = yaml.safe_load(best_path.read_text())
    assert best["trial"] == 0 and best["values"]["val_acc"] == study.best_value
    rerun = subprocess.run(shlex.split(best["command"]), cwd=REPO, env=env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    path = rerun.stdout.strip().splitlines()[-1].rsplit("result: ", 1)[1]
    again = json.loads(Path(path).read_text())
    original = result_of(best["folder"])
    assert again["metrics"]["val_acc"] == original["metrics"]["val_acc"] == study.best_value
    assert again["run_id"] == original["run_id"]  # the same config: trial.* is not part of the identity

    rows = table(tmp_path)
    assert list(rows["state"]) == ["COMPLETE", "PRUNED", "PRUNED"]
    assert {"val_acc", "params.strategy.base_lr", "duration_s", "folder", "stopped_epoch"} <= set(
        rows.columns
    )


# --- resume -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_continues_to_n_trials_without_replaying_points(tmp_path):
    # A seeded random sampler: the stock sweeper would propose the same first points again on resume.
    common = [
        *FINETUNE_FIXED,
        "search.sampler.name=random",
        "search.sampler.seed=0",
        "search.pruner.name=none",
    ]
    run_search(tmp_path, *common, "search.n_trials=2")
    run_search(tmp_path, *common, "search.n_trials=4")
    trials = load_study(sqlite_url(tmp_path), "finetune_lr").trials
    assert [t.number for t in trials] == [0, 1, 2, 3] and all(t.state == TrialState.COMPLETE for t in trials)
    lrs = [t.params["strategy.base_lr"] for t in trials]
    assert len(set(lrs)) == 4


@pytest.mark.slow
def test_resume_on_a_finite_space_never_trains_a_point_twice(tmp_path):
    space = [
        *FINETUNE_FIXED,
        "strategy.base_lr=choice(1e-2,3e-2)",
        "strategy.epochs=1,2",
        "search.sampler.n_startup_trials=1",
        "search.sampler.seed=0",  # unseeded, TPE could spend all 10 trials re-proposing tried points
        "search.pruner.name=none",
    ]
    run_search(tmp_path, *space, "search.n_trials=2")
    proc = run_search(tmp_path, *space, "search.n_trials=10")
    assert "all 4 points of the space are tried" in proc.stdout
    trials = load_study(sqlite_url(tmp_path), "finetune_lr").trials
    trained = [t for t in trials if "duplicate_of" not in t.user_attrs]
    points = {tuple(sorted(t.params.items())) for t in trained}
    assert len(trained) == len(points) == 4  # every point trained exactly once
    for t in trials:
        if "duplicate_of" in t.user_attrs:  # a re-proposed point is answered from the study
            original = trials[t.user_attrs["duplicate_of"]]
            assert t.params == original.params and t.values == original.values
    folders = sorted(p.name for p in (tmp_path / "search" / "finetune_lr").glob("trial_*"))
    assert folders == sorted(f"trial_{t.number}" for t in trained)


# --- failures -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_exception_and_nan_are_fail_and_the_sweep_goes_on(tmp_path):
    proc = run_search(
        tmp_path,
        "+model.net.mode=choice(crash,diverge,inf_grad,ok)",
        "search.sampler.name=grid",
        "search.pruner.name=none",
        model=FAULTY_MODEL,
    )
    trials = load_study(sqlite_url(tmp_path), "finetune_lr").trials
    by_mode = {t.params["+model.net.mode"]: t for t in trials}
    assert by_mode["crash"].state == TrialState.FAIL
    assert "RuntimeError: boom" in by_mode["crash"].user_attrs["reason"]
    assert by_mode["diverge"].state == TrialState.FAIL
    assert "NumericalError: loss is nan at epoch 1, step 1" in by_mode["diverge"].user_attrs["reason"]
    assert by_mode["inf_grad"].state == TrialState.FAIL
    assert "NumericalError: gradient is Inf" in by_mode["inf_grad"].user_attrs["reason"]
    assert (
        "at epoch 1, step 3 (loss" in by_mode["inf_grad"].user_attrs["reason"]
    )  # the loss itself was finite
    assert by_mode["ok"].state == TrialState.COMPLETE  # ran after three failures
    assert result_of(by_mode["diverge"].user_attrs["folder"])["status"] == "failed"
    assert result_of(by_mode["inf_grad"].user_attrs["folder"])["stopped_epoch"] == 0
    assert "best trial: 3" in proc.stdout
    rows = table(tmp_path)
    assert rows.set_index("number").loc[0, "reason"].startswith("RuntimeError")


@pytest.mark.slow
def test_max_failures_stops_a_sweep_that_fails_everywhere(tmp_path):
    proc = run_search(
        tmp_path,
        "+model.net.mode=crash",
        # continuous: a repeated choice would be answered from the study as a third FAIL that ran nothing
        "lr=interval(1e-3,5e-3)",
        "search.max_failures=2",
        "search.pruner.name=none",
        model=FAULTY_MODEL,
        check=False,
    )
    assert proc.returncode != 0
    assert "max_failures" in proc.stdout + proc.stderr
    trials = load_study(sqlite_url(tmp_path), "finetune_lr").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert (tmp_path / "search" / "finetune_lr" / "trials.csv").is_file()


# --- a killed worker -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_workers_running_trial_is_failed_and_retried(tmp_path):
    marker = tmp_path / "hang"
    marker.touch()
    common = [
        "+model.net.mode=hang",
        f"+model.net.marker={marker}",
        "lr=interval(1e-3,1e-2)",
        "search.pruner.name=none",
        "search.heartbeat_interval=1",
        "search.n_trials=2",
    ]
    worker = start_search(tmp_path, *common, model=FAULTY_MODEL, log=tmp_path / "worker1.log")
    try:
        deadline = time.time() + 60
        while not Path(f"{marker}.started").exists():  # the first trial is training (and hanging)
            assert worker.poll() is None and time.time() < deadline, (tmp_path / "worker1.log").read_text()
            time.sleep(0.2)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    url = sqlite_url(tmp_path)
    study = load_study(url, "finetune_lr")
    assert [t.state for t in study.trials] == [TrialState.RUNNING]
    # As if the worker had run on another machine: only its stopped heartbeats tell it is dead (a dead worker on
    # this machine is found at once: tests/test_kill_rerun.py).
    owner = {**study.trials[0].system_attrs[OWNER_KEY], "host": "another-machine"}
    study._storage.set_trial_system_attr(study.trials[0]._trial_id, OWNER_KEY, owner)
    marker.unlink()  # the retry trains normally
    time.sleep(3)  # past the grace period (2 heartbeat intervals)

    proc = run_search(tmp_path, *common, "search.retry_stale=1", model=FAULTY_MODEL)
    assert "left RUNNING by a worker that stopped sending heartbeats" in proc.stdout
    trials = load_study(url, "finetune_lr").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[1].system_attrs["failed_trial"] == 0 and trials[1].params == trials[0].params
    rows = table(tmp_path).set_index("number")
    assert "heartbeats" in rows.loc[0, "reason"] and rows.loc[1, "retry_of"] == 0


# --- workers and launchers -----------------------------------------------------------------------------


@pytest.mark.slow
def test_two_workers_on_one_sqlite_study(tmp_path):
    logs = two_workers(tmp_path)
    trials = assert_no_trial_lost_or_duplicated(sqlite_url(tmp_path), "finetune_lr", 6, 2)
    ran = [trial_numbers_in(log) for log in logs]
    assert ran[0] and ran[1], "both workers ran trials"
    assert not ran[0] & ran[1] and ran[0] | ran[1] == {t.number for t in trials}


@pytest.mark.slow
def test_joblib_launcher_prunes_inside_its_worker_processes(tmp_path):
    common = [
        *FINETUNE_FIXED,
        f"strategy.base_lr=choice({GOOD},{BAD},1e-7)",
        "search.sampler.name=grid",
        "search.pruner.n_startup_trials=1",
    ]
    run_search(tmp_path, *common, "search.n_trials=1")  # trial 0 (the good lr) completes first
    proc = run_search(tmp_path, *common, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert "2 trial(s) at a time" in proc.stdout
    trials = assert_no_trial_lost_or_duplicated(sqlite_url(tmp_path), "finetune_lr", 3, 1)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED]
    for t in trials[1:]:  # each loky worker process attached to its own trial and reported epoch 1
        section = result_of(t.user_attrs["folder"])["trial"]
        assert section["number"] == t.number and section["reported_epochs"] == 1


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path):
    run_search(
        tmp_path,
        *FINETUNE_FIXED,
        f"strategy.base_lr=choice({GOOD},{BAD})",
        "search.sampler.name=grid",
        "search.pruner.name=none",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        timeout=240,
    )
    trials = assert_no_trial_lost_or_duplicated(sqlite_url(tmp_path), "finetune_lr", 2, 1)
    assert all(result_of(t.user_attrs["folder"])["trial"]["reported_epochs"] == 3 for t in trials)


def test_a_worker_is_dead_only_when_its_process_on_this_machine_is_gone():
    me = studies.owner_note()
    assert not studies.owner_is_dead(me)
    assert studies.owner_is_dead({**me, "start": "0"})  # the pid is recycled by a process started later
    child = subprocess.Popen(["sleep", "0"])
    child.wait()
    assert studies.owner_is_dead({**me, "pid": child.pid})
    assert not studies.owner_is_dead({**me, "pid": child.pid, "host": "another-machine"})  # heartbeats decide
    assert not studies.owner_is_dead(None)  # a trial asked by an older sweeper: heartbeats decide


def test_a_trial_is_never_pruned_after_its_last_epoch(tmp_path):
    from types import SimpleNamespace

    from harness.engine.hooks import StopRun
    from harness.search.trial_hook import TrialHook

    url = f"sqlite:///{tmp_path / 'study.db'}"
    pruner = {"name": "median", "n_startup_trials": 0, "n_warmup_steps": 0}
    study = studies.open_study(
        "s", studies.open_storage(url), ["maximize"], pruner=studies.make_pruner(pruner)
    )
    study.set_user_attr(ATTR_KEY, {"pruner": pruner, "objectives": ["val_acc"]})
    for value in (0.9, 0.95):  # two finished trials, far better at every epoch
        t = study.ask()
        t.report(value, 1)
        t.report(value, 2)
        study.tell(t, value)
    run = SimpleNamespace(history=[], plan=SimpleNamespace(total_epochs=2))
    early, late = study.ask(), study.ask()

    hook = TrialHook({"number": early.number, "study": "s", "storage": url})
    hook.on_run_start(run)
    with pytest.raises(StopRun, match="pruned by the median pruner after epoch 1"):
        hook.on_epoch_end(run, {"epoch": 1, "val_acc": 0.1})

    hook = TrialHook({"number": late.number, "study": "s", "storage": url})
    run.history = [{"epoch": 1, "val_acc": 0.1}]  # resumed after epoch 1: reported, not judged
    hook.on_run_start(run)
    hook.on_epoch_end(run, {"epoch": 2, "val_acc": 0.1})  # as bad, but the run is done: not pruned
    assert study.trials[late.number].intermediate_values == {1: 0.1, 2: 0.1}
