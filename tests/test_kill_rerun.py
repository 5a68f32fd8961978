"""Kill -9 a multirun and a search in the middle of a run, run the same command again: nothing that finished
is repeated, the interrupted run continues from its checkpoint, the study keeps no RUNNING trial, and the
analysis DataFrame has each run once. Real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna import load_study
from optuna.trial import TrialState
from search_helpers import REPO, env, sqlite_url

from analysis.load import load_runs
from harness.engine import checkpoint

pytestmark = pytest.mark.slow

# Big enough that a job's epochs take a moment (the kill lands mid-run), small enough for CI.
DATA = ["data=synthetic", "data.per_class=150", "batch_size=16", "threads=1", "progress=false", "logger=none"]
GRID = [*DATA, "model.channels=[8,16]", "model.hidden=[32]", "strategy=never", "epochs=6"]


def run_id_started_in(folder: Path) -> str | None:
    try:
        return json.loads((folder / "started.json").read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        return None


def kill_when_mid_run(proc: subprocess.Popen, job: Path, store: Path, log: Path, timeout: float = 180) -> int:
    """SIGKILL ``proc`` once the run in folder ``job`` has a checkpoint but no record; the epochs it had done."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"exited before the kill:\n{log.read_text()[-3000:]}"
        rid = run_id_started_in(job)
        ckpt = store / str(rid) / "last.pt"
        if rid and ckpt.is_file() and not (job / "result.json").exists():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return checkpoint.load(ckpt)["epochs_done"]
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{job} never got mid-run:\n{log.read_text()[-3000:]}")


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, cwd=REPO, env=env(), stdout=open(log, "w"), stderr=subprocess.STDOUT, text=True
    )


def test_a_killed_multirun_run_again_repeats_nothing_and_resumes_the_interrupted_run(tmp_path):
    root = tmp_path / "out"
    cmd = [sys.executable, "-m", "harness.train", "-m", "seed=0,1,2,3", f"paths.output_root={root}", *GRID]
    first = start(cmd, tmp_path / "first.log")
    deadline = time.time() + 60
    while not list(root.glob("multirun/*/*")) and time.time() < deadline:
        time.sleep(0.05)
    sweep1 = next(root.glob("multirun/*/*"))
    done_at_kill = kill_when_mid_run(first, sweep1 / "2", root / "checkpoints", tmp_path / "first.log")
    assert 1 <= done_at_kill < 6
    assert [(sweep1 / str(j) / "result.json").exists() for j in range(3)] == [True, True, False]
    time.sleep(1.1)  # the rerun gets its own sweep folder (the default one is named by the second)

    again = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("finished earlier") == 2  # jobs 0 and 1: reused, not trained
    assert (
        f"resumed from {root / 'checkpoints'}" in again.stdout
        and f"after epoch {done_at_kill}/6" in again.stdout
    )
    sweep2 = next(p for p in root.glob("multirun/*/*") if p != sweep1)
    records = [json.loads((sweep2 / str(j) / "result.json").read_text()) for j in range(4)]
    assert [r["status"] for r in records] == ["ok"] * 4
    assert ["reused" in r for r in records] == [True, True, False, False]
    assert records[0]["reused"]["from"] == str((sweep1 / "0").resolve())
    assert [h["epoch"] for h in records[2]["history"]] == [1, 2, 3, 4, 5, 6]  # the whole run, in one record
    assert any(f"after epoch {done_at_kill}" in w for w in records[2]["warnings"])
    assert len({r["run_id"] for r in records}) == 4

    every = load_runs(root, dedupe=False)
    assert len(every) == 7  # 2 records + 1 dead job in the first folder, 4 records in the second
    runs = load_runs(root)
    assert len(runs) == 4 and sorted(runs["seed"]) == [0, 1, 2, 3] and (runs["status"] == "ok").all()
    assert sorted(runs["run_id"]) == sorted(r["run_id"] for r in records)


def test_a_killed_search_run_again_retries_the_dead_trial_from_its_checkpoint(tmp_path):
    sweep = tmp_path / "search" / "finetune_lr"
    cmd = [
        sys.executable,
        "-m",
        "harness.train",
        "-m",
        "search=finetune_lr",
        f"paths.output_root={tmp_path}",
        *DATA,
        "model.channels=[8,16]",
        "model.hidden=[32]",
        "search.n_trials=4",
        "search.pruner.name=none",
        "search.sampler.seed=0",
        "strategy.freeze_epochs=1",
        "strategy.epochs=5",
    ]  # lr and lr_mult searched
    first = start(cmd, tmp_path / "first.log")
    done_at_kill = kill_when_mid_run(
        first, sweep / "trial_2", tmp_path / "checkpoints", tmp_path / "first.log"
    )
    url = sqlite_url(tmp_path)
    states = [t.state for t in load_study(study_name="finetune_lr", storage=url).trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.RUNNING]

    # At once: the dead worker ran on this machine, so no heartbeat grace period is waited for.
    again = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"[trial 2] was left RUNNING by worker pid {first.pid} on this machine" in again.stdout
    trials = load_study(study_name="finetune_lr", storage=url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] + [
        TrialState.COMPLETE
    ] * 2
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    retry = trials[3]
    assert retry.params == trials[2].params and retry.system_attrs["failed_trial"] == 2
    record = json.loads((sweep / "trial_3" / "result.json").read_text())
    assert record["status"] == "ok" and len(record["history"]) == 6
    assert any(f"after epoch {done_at_kill}" in w for w in record["warnings"])
    # The retry reported every epoch to its trial, the ones before the kill included.
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4, 5, 6]
    assert f"after epoch {done_at_kill}/6" in again.stdout

    runs = load_runs(sweep)
    assert len(runs) == 4 and (runs["status"] == "ok").all()  # trial_2's dead job is the run trial_3 finished
    assert sorted(runs["trial.number"]) == [0, 1, 3, 4]
