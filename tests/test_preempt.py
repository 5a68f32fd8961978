"""Preemption in process (harness/engine/preempt.py): the warning signal stops the run at a safe point with its
checkpoint saved and no record; the job's next start continues it to the numbers of an uninterrupted run.
What submitit's handler would do (checkpoint() and scontrol requeue) is a stand-in here; tests/test_slurm.py
does it on a real cluster."""

from __future__ import annotations

import json
import os
import signal

import pytest

from harness.engine import preempt
from harness.engine.hooks import Hook
from harness.train import train

RUN = ["epochs=4", "data.per_class=60", "diagnostics.weights=false"]


class SignalAt(Hook):
    """Sends the preemption signal to this process during epoch ``epoch`` (after its first step)."""

    def __init__(self, epoch: int):
        self.epoch, self.sent = epoch, False

    def on_batch_end(self, run, step, steps, loss):
        if run.epochs_done + 1 == self.epoch and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGUSR2)


@pytest.fixture
def slurm_job(monkeypatch):
    """This process as a SLURM job whose signal handler (submitit's) only records that it was called."""
    calls = []
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))
    yield calls
    signal.signal(signal.SIGUSR2, previous)


def test_a_preempted_run_checkpoints_stops_and_its_requeued_job_ends_with_the_same_numbers(
    make_cfg, tmp_path, slurm_job, monkeypatch
):
    import harness.runner as runner

    build = runner.build_hooks
    monkeypatch.setattr(runner, "build_hooks", lambda *a: [SignalAt(2), *build(*a)])
    out = tmp_path / "job"
    with pytest.raises(preempt.Preempted, match="SIGUSR2 in epoch 2: checkpoint after epoch 2 saved"):
        with preempt.requeue_on_signal(warning_s=600):
            train(make_cfg(RUN), out)
    assert slurm_job == [signal.SIGUSR2]  # then submitit's handler ran: checkpoint() and the requeue
    assert not (out / "result.json").exists()  # not finished: no record
    monkeypatch.setattr(runner, "build_hooks", build)
    with preempt.requeue_on_signal(warning_s=600):
        resumed = train(make_cfg(RUN), out)  # the requeued job: the same Hydra job again
    uninterrupted = train(make_cfg([*RUN, f"paths.output_root={tmp_path / 'other'}"]), tmp_path / "other_job")
    assert resumed["warnings"][-1].endswith("after epoch 2")
    strip = [
        {k: v for k, v in h.items() if k not in ("seconds", "samples_per_s")} for h in resumed["history"]
    ]
    ref = [
        {k: v for k, v in h.items() if k not in ("seconds", "samples_per_s")}
        for h in uninterrupted["history"]
    ]
    assert strip == ref and resumed["metrics"] == uninterrupted["metrics"]
    assert json.loads((out / "result.json").read_text())["status"] == "ok"


def test_a_signal_whose_epoch_would_outlast_the_warning_stops_at_once(
    make_cfg, tmp_path, slurm_job, monkeypatch
):
    import harness.runner as runner

    build = runner.build_hooks
    monkeypatch.setattr(runner, "build_hooks", lambda *a: [SignalAt(3), *build(*a)])
    with pytest.raises(preempt.Preempted, match=r"in epoch 3, step 1/\d+: .* checkpoint after epoch 2"):
        with preempt.requeue_on_signal(warning_s=0):  # no time left: not even the rest of this epoch
            train(make_cfg(RUN), tmp_path / "job")


def test_outside_a_slurm_job_nothing_is_installed(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    before = signal.getsignal(signal.SIGUSR2)
    with preempt.requeue_on_signal():
        assert not preempt.active() and signal.getsignal(signal.SIGUSR2) is before
