"""The search worker in process (harness/search/worker.py): a real SQLite study in tmp_path and a fake launch
that writes the record a job would, the way Optuna tests its pruners. No Hydra launcher, no subprocess, no
training; the subprocess tests (tests/test_search_sweeper.py) remain the end-to-end proof."""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from harness.engine.hooks import StopRun
from harness.search import study as studies
from harness.search import trial_hook
from harness.search.outputs import BEST_NAME, TABLE_NAME
from harness.search.space import SearchSpace
from harness.search.study import OWNER_KEY
from harness.search.trial_hook import TrialHook
from harness.search.worker import (
    Launched,
    SearchStopped,
    Settings,
    StopKind,
    Worker,
    open_search,
)

LR = {"lr": "tag(log, interval(1e-4, 1e-1))"}


@pytest.fixture(autouse=True)
def no_shared_storages():
    """The trial hook keeps one storage per URL for the process: none may outlive its test's tmp_path."""
    yield
    for storage in trial_hook._storages.values():
        storage.engine.dispose()
    trial_hook._storages.clear()


def settings(tmp_path: Path, **changes) -> Settings:
    base = {
        "study_name": "s",
        "storage": f"sqlite:///{tmp_path / 'study.db'}",
        "sweep_dir": tmp_path,
        "n_trials": 3,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
    }
    return Settings(**{**base, **changes})


def make_worker(tmp_path: Path, launch, params=LR, **changes) -> tuple[Worker, list[str]]:
    """A worker on the SQLite study in tmp_path; its printed lines go to the returned list."""
    messages: list[str] = []
    s = settings(tmp_path, **changes)
    space, base = SearchSpace.build(params)
    study, storage = open_search(s, echo=messages.append)
    return Worker(study, storage, space, s, launch, base_overrides=base, echo=messages.append), messages


class Jobs:
    """A fake launch function: keeps every job it gets, then does what ``behave(job)`` does (by default
    writes an ``ok`` record with val_acc 0.5)."""

    def __init__(self, behave=None):
        self.behave = behave or (lambda job: write_record(job))
        self.jobs = []

    def __call__(self, job):
        self.jobs.append(job)
        return self.behave(job)

    @property
    def numbers(self) -> list[int]:
        return [job.number for job in self.jobs]


def write_record(job, status="ok", val_acc=0.5, reason=None, stopped_epoch=None) -> None:
    """The parts of a result.json that the worker reads, as harness.train writes them for a trial's job."""
    record = {
        "status": status,
        "reason": reason,
        "stopped_epoch": stopped_epoch,
        "config": {"trial": {"number": job.number, "study": "s"}},
        "metrics": {"val_acc": val_acc, "best_val_acc": val_acc},
        "timing": {"seconds": 0.1},
        "history": [{"epoch": 1, "val_acc": val_acc}],
        "run_id": f"run-{job.number}",
    }
    job.folder.mkdir(parents=True, exist_ok=True)
    (job.folder / "result.json").write_text(json.dumps(record))


def value(job, key: str) -> str:
    return dict(o.split("=", 1) for o in job.overrides)[key]


def trials(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    storage = studies.open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    return studies.open_study("s", storage, [], create=False).trials


def table(tmp_path: Path) -> pd.DataFrame:
    return pd.read_csv(tmp_path / TABLE_NAME).set_index("number")


# --- the module -----------------------------------------------------------------------------------------------


def test_the_worker_imports_without_hydra():
    saved = dict(sys.modules)
    try:
        for name in list(sys.modules):
            if name.split(".")[0] in ("harness", "hydra", "hydra_plugins", "omegaconf"):
                del sys.modules[name]
        sys.modules["hydra"] = sys.modules["omegaconf"] = None  # `import hydra` now raises ImportError
        fresh = importlib.import_module("harness.search.worker")  # ImportError if it needs Hydra anywhere
        assert fresh.Worker is not Worker  # imported again, not taken from the cache
    finally:
        sys.modules.clear()
        sys.modules.update(saved)


def test_settings_keep_the_search_keys_and_their_defaults(tmp_path):
    from hydra_plugins.freezelab_optuna.config import SearchConf

    conf = dataclasses.asdict(SearchConf())
    s = Settings.from_search(conf, sweep_dir=tmp_path)
    assert s.storage == studies.default_storage(tmp_path) and s.sweep_dir == tmp_path.resolve()
    for key in (
        "n_trials",
        "max_failures",
        "retry_stale",
        "heartbeat_interval",
        "grace_period",
        "max_duplicates",
    ):
        assert getattr(s, key) == conf[key], key
        default = next(f.default for f in dataclasses.fields(Settings) if f.name == key)
        assert default in (dataclasses.MISSING, conf[key]), key  # a default here is the schema's default
    assert list(s.objectives) == conf["objectives"] and list(s.directions) == conf["directions"]
    assert s.sampler == conf["sampler"] and s.pruner == conf["pruner"] and not s.grid
    assert (
        Settings.from_search({**conf, "storage": "sqlite:///x.db"}, sweep_dir=tmp_path).storage
        == "sqlite:///x.db"
    )


# --- failures -------------------------------------------------------------------------------------------------


def test_failing_trials_are_fail_with_their_reason_and_the_sweep_goes_on(tmp_path):
    def behave(job):
        mode = value(job, "mode")
        if mode == "failed":  # the job caught its own exception and wrote a failed record
            write_record(job, "failed", val_acc=None, reason="RuntimeError: boom in step 3")
        elif mode == "launcher":  # a worker process killed, a failed SLURM job
            raise OSError("worker process killed")
        elif mode == "raised":  # the job raised before it wrote anything; its launcher caught it
            return Launched(error=MemoryError("out of memory"))
        elif mode == "nan_objective":
            write_record(job, val_acc=math.nan)
        else:
            write_record(job, val_acc=0.7)
        return None

    jobs = Jobs(behave)
    worker, messages = make_worker(
        tmp_path,
        jobs,
        {"mode": "choice(failed, launcher, raised, nan_objective, ok)"},
        sampler={"name": "grid"},
        n_trials=5,
    )
    stop = worker.run()

    assert stop.kind is StopKind.N_TRIALS and jobs.numbers == [0, 1, 2, 3, 4]
    by_mode = {t.params["mode"]: t for t in trials(tmp_path)}
    assert {m: t.state for m, t in by_mode.items()} == {
        "failed": TrialState.FAIL,
        "launcher": TrialState.FAIL,
        "raised": TrialState.FAIL,
        "nan_objective": TrialState.FAIL,
        "ok": TrialState.COMPLETE,  # ran after four failures
    }
    assert by_mode["failed"].user_attrs["reason"] == "RuntimeError: boom in step 3"
    assert by_mode["launcher"].user_attrs["reason"] == "the launcher failed: OSError: worker process killed"
    assert by_mode["raised"].user_attrs["reason"] == "MemoryError: out of memory"
    assert by_mode["nan_objective"].user_attrs["reason"] == "objective not a finite number: val_acc=nan"
    assert by_mode["ok"].value == 0.7
    assert table(tmp_path).loc[1, "reason"].startswith("the launcher failed")
    assert "[trial 4] COMPLETE val_acc 0.7000 (" in "\n".join(messages)
    assert worker.failures == 4


def test_max_failures_stops_the_worker(tmp_path):
    jobs = Jobs(lambda job: write_record(job, "failed", val_acc=None, reason="RuntimeError: boom"))
    worker, messages = make_worker(tmp_path, jobs, n_trials=10, max_failures=2)
    with pytest.raises(
        SearchStopped, match=r"max_failures: 2 trials failed in this worker .* RuntimeError: boom"
    ):
        worker.run()
    assert jobs.numbers == [0, 1] and worker.stop.kind is StopKind.MAX_FAILURES
    assert [t.state for t in trials(tmp_path)] == [TrialState.FAIL, TrialState.FAIL]
    assert (tmp_path / TABLE_NAME).is_file() and not (tmp_path / BEST_NAME).exists()
    assert "no trial completed: no best.yaml" in messages


def test_a_record_left_in_the_folder_by_another_study_is_moved_aside(tmp_path):
    old = tmp_path / "trial_0" / "result.json"
    old.parent.mkdir()
    old.write_text(json.dumps({"status": "ok", "config": {"trial": {"number": 0, "study": "other"}}}))
    worker, _ = make_worker(tmp_path, Jobs(lambda job: None), n_trials=1)  # a job that wrote nothing
    worker.run()
    [t] = trials(tmp_path)
    assert t.state == TrialState.FAIL and "no result.json" in t.user_attrs["reason"]
    assert [p.name.split("-")[0] for p in old.parent.iterdir()] == ["result.json.replaced"]


def test_ctrl_c_fails_the_trials_in_flight(tmp_path):
    def behave(job):
        raise KeyboardInterrupt

    worker, _ = make_worker(tmp_path, Jobs(behave))
    with pytest.raises(KeyboardInterrupt):
        worker.run()
    [t] = trials(tmp_path)
    assert t.state == TrialState.FAIL and t.user_attrs["reason"] == "its sweeper stopped: interrupted"
    assert table(tmp_path).loc[0, "state"] == "FAIL"  # the outputs are written on the way out


def test_a_trial_marked_stale_meanwhile_keeps_its_fail_and_the_sweep_goes_on(tmp_path):
    def behave(job):
        if job.number == 0:  # another worker's stale check failed this trial while its job ran
            storage = studies.open_storage(f"sqlite:///{tmp_path / 'study.db'}")
            trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name("s"), 0)
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        write_record(job)

    worker, messages = make_worker(tmp_path, Jobs(behave), n_trials=2)
    worker.run()
    assert [t.state for t in trials(tmp_path)] == [TrialState.FAIL, TrialState.COMPLETE]
    assert "[trial 0] was already finished in the study (marked stale); result not told" in messages


# --- pruning --------------------------------------------------------------------------------------------------


def test_pruning_reaches_the_job_through_its_trial_overrides(tmp_path):
    curves = {"good": [0.8, 0.9, 0.95], "bad": [0.1, 0.1, 0.1]}

    def behave(job):
        """A job as harness.train runs it: its trial hook attaches through trial.number/study/storage."""
        trial_cfg = {
            k.removeprefix("trial."): v.strip("'") for k, v in (o.split("=", 1) for o in job.overrides)
        }
        assert trial_cfg["storage"] == f"sqlite:///{tmp_path / 'study.db'}"
        hook = TrialHook(trial_cfg)
        run = SimpleNamespace(history=[], plan=SimpleNamespace(total_epochs=3))
        hook.on_run_start(run)
        curve = curves[value(job, "mode")]
        try:
            for epoch, acc in enumerate(curve, 1):
                hook.on_epoch_end(run, {"epoch": epoch, "val_acc": acc})
        except StopRun as stop:
            write_record(job, stop.status, val_acc=acc, reason=stop.reason, stopped_epoch=epoch)
        else:
            write_record(job, val_acc=curve[-1])

    pruner = {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 1, "interval_steps": 1}
    worker, messages = make_worker(
        tmp_path,
        Jobs(behave),
        {"mode": "choice(good, bad)"},
        sampler={"name": "grid"},
        pruner=pruner,
        n_trials=2,
    )
    worker.run()

    good, bad = trials(tmp_path)
    assert good.state == TrialState.COMPLETE and good.intermediate_values == {1: 0.8, 2: 0.9, 3: 0.95}
    assert bad.state == TrialState.PRUNED and bad.intermediate_values == {1: 0.1}
    assert bad.user_attrs["stopped_epoch"] == 1 and "median pruner after epoch 1" in bad.user_attrs["reason"]
    assert any(m.startswith("[trial 1] PRUNED pruned by the median pruner") for m in messages)


def test_several_objectives_turn_the_pruner_off_for_the_jobs(tmp_path):
    s = settings(
        tmp_path,
        objectives=("val_acc", "seconds"),
        directions=("maximize", "minimize"),
        pruner={"name": "median"},
    )
    messages: list[str] = []
    study, _ = open_search(s, echo=messages.append)
    assert study.user_attrs[studies.ATTR_KEY]["pruner"]["name"] == "none"
    assert study.user_attrs[studies.ATTR_KEY]["objectives"] == ["val_acc", "seconds"]
    assert any("cannot prune multi-objective" in m for m in messages)


# --- slots and workers ----------------------------------------------------------------------------------------


def test_a_slow_trial_holds_only_its_own_slot(tmp_path):
    others_done = threading.Event()
    in_flight, most = [0], [0]
    lock = threading.Lock()

    def behave(job):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        if job.number == 0:
            assert others_done.wait(timeout=20), "the other slot waited for the slow trial (lock-step)"
        elif job.number == 3:
            others_done.set()
        write_record(job)
        with lock:
            in_flight[0] -= 1

    jobs = Jobs(behave)
    worker, messages = make_worker(tmp_path, jobs, n_trials=4)
    worker.run(slots=2)
    done = trials(tmp_path)
    assert [t.state for t in done] == [TrialState.COMPLETE] * 4 and most[0] == 2
    # Trial 0 ran until trial 3 had started: trials 1 and 2 were told while it ran.
    assert done[0].datetime_complete > max(done[1].datetime_complete, done[2].datetime_complete)
    assert "2 trial(s) at a time" in messages[0]


def test_slots_are_never_more_than_the_trials_left(tmp_path):
    worker, messages = make_worker(tmp_path, Jobs(), n_trials=1)
    worker.run(slots=8)
    assert "1 trial(s) at a time" in messages[0]


def test_n_trials_is_exact_with_two_workers_in_threads(tmp_path):
    def behave(job):
        time.sleep(0.05)  # a job takes a moment: the other worker asks meanwhile
        write_record(job, val_acc=0.1 * (job.number % 7))

    jobs = [Jobs(behave), Jobs(behave)]
    # Each worker has its own storage and study handle, as two processes would, and its own random seed (with
    # one seed for both, the second would propose the first one's points: answered from the study, not run).
    workers = [make_worker(tmp_path, j, n_trials=9, sampler={"name": "random"})[0] for j in jobs]
    threads = [threading.Thread(target=w.run, kwargs={"slots": 2}) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    done = trials(tmp_path)
    assert [t.number for t in done] == list(range(9)) and all(t.state == TrialState.COMPLETE for t in done)
    launched = Counter(n for j in jobs for n in j.numbers)
    assert launched == Counter(range(9))  # every trial launched once, by one worker
    assert all(j.numbers for j in jobs), "both workers ran trials"
    assert all(w.stop.kind is StopKind.N_TRIALS for w in workers)


# --- points already tried -------------------------------------------------------------------------------------


class FirstChoice(optuna.samplers.BaseSampler):
    """Proposes the first choice every time: a sampler stuck on a point already tried."""

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, name, distribution):
        return distribution.choices[0]


def test_a_re_proposed_point_is_answered_from_the_study_without_launching(tmp_path):
    jobs = Jobs(lambda job: write_record(job, val_acc=0.6))
    worker, messages = make_worker(tmp_path, jobs, {"mode": "choice(a, b)"}, n_trials=5, max_duplicates=2)
    worker.study.sampler = FirstChoice()
    stop = worker.run()

    assert jobs.numbers == [0]  # trained once
    assert stop.kind is StopKind.DUPLICATES and "2 tried points in a row" in stop.message
    first, *again = trials(tmp_path)
    assert len(again) == 2
    for t in again:
        assert t.state == TrialState.COMPLETE and t.params == first.params and t.values == first.values
        assert t.user_attrs["duplicate_of"] == 0 and t.user_attrs["epochs"] == 0
        assert t.user_attrs["folder"] == first.user_attrs["folder"]  # its result is the earlier trial's
    assert "[trial 1] same point as trial 0: its result is reused, nothing runs" in messages
    assert sorted(p.name for p in tmp_path.glob("trial_*")) == ["trial_0"]
    assert list(table(tmp_path)["duplicate_of"].fillna(-1)) == [-1, 0, 0]


def test_a_finite_space_stops_when_every_point_is_tried(tmp_path):
    jobs = Jobs()
    worker, _ = make_worker(tmp_path, jobs, {"mode": "choice(a, b)"}, n_trials=10)
    stop = worker.run()
    assert stop.kind is StopKind.SPACE_TRIED and stop.message == "all 2 points of the space are tried"
    assert sorted(value(j, "mode") for j in jobs.jobs) == ["a", "b"]  # each point trained once


def test_a_failing_search_space_function_fails_its_trial_and_raises(tmp_path):
    space = SearchSpace(custom=lambda trial, cfg: 1 / 0, custom_name="broken")
    s = settings(tmp_path)
    study, storage = open_search(s, echo=lambda m: None)
    worker = Worker(study, storage, space, s, Jobs(), echo=lambda m: None)
    with pytest.raises(ZeroDivisionError):
        worker.run()
    [t] = trials(tmp_path)
    assert t.state == TrialState.FAIL
    assert t.user_attrs["reason"] == "suggesting parameters failed: ZeroDivisionError: division by zero"


# --- dead workers ---------------------------------------------------------------------------------------------


def leave_running(tmp_path: Path, note: dict, **changes) -> optuna.trial.FrozenTrial:
    """A trial RUNNING in the study as a worker that died would leave it (its owner note says who ran it)."""
    s = settings(tmp_path, **changes)
    study, storage = open_search(s, echo=lambda m: None)
    with studies.quiet():
        trial = study.ask()
    SearchSpace.build(LR)[0].suggest(trial)
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name("s"), trial.number
    )
    storage.set_trial_system_attr(trial_id, OWNER_KEY, note)
    storage.record_heartbeat(trial_id)
    return storage.get_trial(trial_id)


def no_such_pid() -> int:
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def test_a_dead_workers_trial_on_this_host_is_failed_at_once_and_retried_with_its_params(tmp_path):
    dead = {**studies.owner_note(), "pid": no_such_pid()}
    left = leave_running(tmp_path, dead)
    jobs = Jobs()
    worker, messages = make_worker(tmp_path, jobs, n_trials=2, retry_stale=1)
    worker.run()

    assert messages[0] == (
        f"[trial 0] was left RUNNING by worker pid {dead['pid']} on this machine, which is no longer "
        "running: marked FAIL and queued again (search.retry_stale=1)"
    )
    failed, retry, new = trials(tmp_path)
    assert (
        failed.state == TrialState.FAIL
        and "died (killed?); marked FAIL and retried" in failed.user_attrs["reason"]
    )
    assert retry.state == TrialState.COMPLETE and retry.params == left.params
    assert retry.system_attrs["failed_trial"] == 0 and retry.system_attrs[OWNER_KEY] == worker.owner
    assert jobs.jobs[0].number == 1 and jobs.jobs[0].values == (f"lr={left.params['lr']!r}",)
    assert (
        new.state == TrialState.COMPLETE and "failed_trial" not in new.system_attrs
    )  # the retry counted once
    assert table(tmp_path).loc[1, "retry_of"] == 0


def test_a_retry_whose_worker_dies_too_is_not_queued_again(tmp_path):
    dead = {**studies.owner_note(), "pid": no_such_pid()}
    leave_running(tmp_path, dead)
    first, _ = make_worker(tmp_path, Jobs(), n_trials=1)
    assert [t.number for t in first.fail_dead_workers()] == [0]
    with studies.quiet():
        retry = first.study.ask()  # the queued retry, picked up by a worker that dies as well
    retry_id = first.storage.get_trial_id_from_study_id_trial_number(first.study_id, retry.number)
    first.storage.set_trial_system_attr(retry_id, OWNER_KEY, dead)

    jobs = Jobs()
    worker, _ = make_worker(tmp_path, jobs, n_trials=2, retry_stale=1)
    worker.run()
    states = [t.state for t in trials(tmp_path)]
    assert states == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert jobs.numbers == [2] and "failed_trial" not in trials(tmp_path)[2].system_attrs


def test_a_trial_whose_heartbeats_stopped_is_failed_and_retried(tmp_path):
    beats = {"heartbeat_interval": 1, "grace_period": 1}
    left = leave_running(tmp_path, {**studies.owner_note(), "host": "another-machine"}, **beats)
    time.sleep(2.1)  # past the grace period (SQLite keeps heartbeats to the second)
    jobs = Jobs()
    worker, messages = make_worker(tmp_path, jobs, n_trials=1, retry_stale=1, **beats)
    worker.run()

    assert (
        "[trial 0] was left RUNNING by a worker that stopped sending heartbeats: marked FAIL and queued again "
        "(search.retry_stale=1)" in messages
    )
    failed, retry = trials(tmp_path)
    assert failed.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.params == left.params and jobs.numbers == [1]
    rows = table(tmp_path)
    assert "heartbeats" in rows.loc[0, "reason"] and rows.loc[1, "retry_of"] == 0


def test_a_live_workers_trial_is_left_alone(tmp_path):
    leave_running(tmp_path, studies.owner_note())  # this process: alive, and its heartbeat is fresh
    worker, _ = make_worker(tmp_path, Jobs(), n_trials=2)
    assert worker.fail_dead_workers() == []
    worker.run()
    assert [t.state for t in trials(tmp_path)] == [TrialState.RUNNING, TrialState.COMPLETE]


# --- outputs --------------------------------------------------------------------------------------------------


def test_outputs_are_rewritten_after_every_trial_and_best_yaml_reruns_the_best(tmp_path):
    seen = []

    def behave(job):
        if job.number > 0:  # the table already shows the trials told before this one started
            seen.append(list(pd.read_csv(tmp_path / TABLE_NAME)["state"]))
        write_record(job, val_acc=[0.3, 0.9, 0.5][job.number])

    worker, messages = make_worker(tmp_path, Jobs(behave), {**LR, "epochs": 2}, n_trials=3)
    worker.run()

    assert seen == [["COMPLETE"], ["COMPLETE", "COMPLETE"]]
    rows = table(tmp_path)
    assert list(rows["state"]) == ["COMPLETE"] * 3 and list(rows["val_acc"]) == [0.3, 0.9, 0.5]
    best = yaml.safe_load((tmp_path / BEST_NAME).read_text())
    lr = trials(tmp_path)[1].params["lr"]
    assert best["trial"] == 1 and best["values"] == {"val_acc": 0.9}
    assert best["overrides"] == ["epochs=2", f"lr={lr!r}"]  # what re-runs it: no trial.* overrides
    assert best["command"] == f"python -m harness.train epochs=2 lr={lr!r} hydra/sweeper=basic"
    assert best["folder"] == str(tmp_path / "trial_1")
    assert (
        f"best.yaml: {tmp_path / BEST_NAME}" in messages
        and f"trials table: {tmp_path / TABLE_NAME}" in messages
    )
    assert "search 's' stopped: the study has its 3 trials; 3 trials: 3 complete" in messages


# --- jobs the cluster loses (tests/test_slurm.py does it for real) -------------------------------------------


def test_a_lost_job_fails_its_trial_with_the_reason_and_its_point_runs_again(tmp_path):
    from harness.search.worker import JobLost

    def behave(job):
        if job.number == 0:
            raise JobLost("SLURM job state CANCELLED by 0: job 7 has not produced any output")
        write_record(job)

    worker, messages = make_worker(tmp_path, Jobs(behave), n_trials=2, retry_stale=1)
    worker.run()
    t = trials(tmp_path)
    assert [x.state for x in t] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert t[0].user_attrs["reason"].startswith("its job was lost: SLURM job state CANCELLED")
    assert t[1].system_attrs["failed_trial"] == 0 and t[1].params == t[0].params  # the same point again
    assert t[2].params != t[0].params  # then the study goes on: 2 trials counted, the retried one once
    assert any("queued again" in m for m in messages)


def test_a_job_that_stops_beating_is_failed_retried_and_cancelled(tmp_path):
    """The job beats for its trial (its note says so); when the beats stop, the watch fails the trial, queues
    it again and cancels the job, which releases the slot."""
    cancelled, release = [], threading.Event()

    def behave(job):
        if job.number == 0:
            storage = studies.open_storage(f"sqlite:///{tmp_path / 'study.db'}")
            tid = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name("s"), 0)
            storage.set_trial_system_attr(
                tid, studies.JOB_KEY, {"host": "n1", "slurm_job": "7", "beating": True}
            )
            assert release.wait(30), "the dead job was never cancelled"
            from harness.search.worker import JobLost

            raise JobLost("SLURM job state CANCELLED by 0")
        write_record(job)

    def cancel(job, note):
        cancelled.append((job.number, note["slurm_job"]))
        release.set()

    worker, messages = make_worker(
        tmp_path, Jobs(behave), n_trials=1, retry_stale=1, heartbeat_interval=1, grace_period=2
    )
    worker.cancel = cancel
    worker.run()
    t = trials(tmp_path)
    assert cancelled == [(0, "7")]
    assert [x.state for x in t] == [TrialState.FAIL, TrialState.COMPLETE]
    assert "stopped sending heartbeats" in t[0].user_attrs["reason"]
    assert t[1].system_attrs["failed_trial"] == 0 and studies.JOB_KEY not in t[1].system_attrs
    assert any("was already finished in the study" in m for m in messages)  # the lost job's tell comes late
