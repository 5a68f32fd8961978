"""Preemption: SLURM's warning signal makes the run checkpoint and stop, and its job is requeued to continue.

A shared cluster preempts or times out a job by sending it a signal some time before the kill (submitit asks
for ``--signal=USR2@<signal_delay_s>``, hydra.launcher.signal_delay_s). submitit's contract for that
signal: the job's callable has a ``checkpoint(*args)`` method returning a ``DelayedSubmission``; submitit's
handler calls it, saves what it returns as the job's new pickle, runs ``scontrol requeue`` and exits. The
requeued job calls the DelayedSubmission. hydra-submitit-launcher's ``checkpoint`` resubmits the same
Hydra job with the same overrides, which is exactly what a freezelab run needs: the run store
(harness/store.py) makes that second start continue from ``<checkpoint.dir>/<run_id>/last.pt``.

submitit's handler runs at once, inside whatever the training was doing (an optimizer step, a checkpoint
being written). So for the time of the Hydra job (:func:`requeue_on_signal`) our own handler takes the
signal instead and only notes it; :class:`PreemptHook` ends the run at a safe point and submitit's handler
is called from there:

- at the end of the epoch the signal arrived in, once the loop has saved that epoch's checkpoint, when the
  rest of the epoch takes less than half the warning time (judged from this epoch's steps so far);
- else at once, after the current step: the run continues from the previous epoch's checkpoint and trains
  the interrupted epoch again. A mid-epoch checkpoint would need the loop's partial-epoch state; an epoch's
  batch order depends only on (seed, epoch) and the RNG state travels with each checkpoint, so redoing it
  gives the same numbers.

Either way the requeued job ends with the numbers of an uninterrupted run (tests/test_slurm.py checks it).
Outside a job the signal is left to whoever handled it before.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

from harness.engine.hooks import Hook

DEFAULT_WARNING_S = 90  # submitit's own default for signal_delay_s


class Preempted(BaseException):  # noqa: N818 (a BaseException, as KeyboardInterrupt: not an error)
    """The run stopped for a preemption signal; its checkpoint is saved and the job is to be requeued.

    Not an ``Exception``: nothing on the way up (a sweep's "record the failure and go on", a base cache) may
    take it for a failed run and write a record for a run that is not finished.
    """


@dataclass
class _Pending:
    signum: int
    at: float  # time.monotonic() when it arrived


class _State:
    def __init__(self) -> None:
        self.active = False
        self.signum: int | None = None
        self.previous = None  # the handler before ours (submitit's checkpoint-and-requeue in a SLURM job)
        self.warning_s = float(DEFAULT_WARNING_S)
        self.pending: _Pending | None = None


_state = _State()


def preempt_signal() -> int:
    """The signal submitit asks SLURM for (``SUBMITIT_PREEMPT_SIGNAL``, USR2 by default)."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return getattr(signal, f"SIG{name}", signal.SIGUSR2)


def in_slurm_job() -> bool:
    return bool(os.environ.get("SLURM_JOB_ID"))


def slurm_job_id() -> str | None:
    """This SLURM job's id as scontrol and scancel take it (``<array job>_<task>`` for an array task)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def active() -> bool:
    """A preemption signal is being watched for (inside :func:`requeue_on_signal` in a SLURM job)."""
    return _state.active


def pending() -> _Pending | None:
    return _state.pending


def _note(signum, frame) -> None:
    if _state.pending is None:
        _state.pending = _Pending(int(signum), time.monotonic())
        print(f"preempt: got {signal.Signals(signum).name}: checkpointing at the next safe point", flush=True)


@contextmanager
def requeue_on_signal(warning_s: float | None = None):
    """For the time of one Hydra job in a SLURM job: a preemption signal stops the run at a safe point
    (:class:`PreemptHook`), then the job is requeued through submitit (or ``scontrol requeue`` for a job
    that submitit did not start) and this process exits. Elsewhere (not a SLURM job, the main thread not
    ours) it does nothing."""
    import threading

    if not in_slurm_job() or threading.current_thread() is not threading.main_thread():
        yield
        return
    signum = preempt_signal()
    _state.previous = signal.signal(signum, _note)
    _state.signum, _state.active, _state.pending = signum, True, None
    _state.warning_s = float(DEFAULT_WARNING_S if warning_s is None else warning_s)
    try:
        yield
    except Preempted as stop:
        print(f"preempt: {stop}", flush=True)
        _requeue()
        raise  # only when requeueing returned (it normally exits the process)
    finally:
        signal.signal(signum, _state.previous or signal.SIG_DFL)
        _state.active, _state.pending = False, None


def _requeue() -> None:
    """Hand the signal to submitit's handler: checkpoint() -> DelayedSubmission -> scontrol requeue -> exit."""
    previous, pend = _state.previous, _state.pending
    signum = pend.signum if pend else _state.signum
    if callable(previous):
        signal.signal(signum, previous)
        previous(signum, None)  # submitit: requeues and exits (raises UncompletedJobError if it cannot)
        return
    import subprocess

    job_id = slurm_job_id()
    done = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
    if done.returncode == 0:
        print(f"preempt: requeued SLURM job {job_id}", flush=True)
        sys.exit(0)
    print(f"preempt: could not requeue job {job_id}: {done.stderr.strip()}", file=sys.stderr, flush=True)


class PreemptHook(Hook):
    """Ends the run at a safe point once the preemption signal came (see the module's docstring)."""

    def __init__(self) -> None:
        self.epoch_started = time.monotonic()
        self.stop_at_epoch_end = False

    def on_run_start(self, run) -> None:
        self.epoch_started = time.monotonic()

    def on_phase_start(self, run, phase_index: int) -> None:
        self.epoch_started = time.monotonic()

    def on_batch_end(self, run, step: int, steps: int, loss) -> None:
        pend = _state.pending
        if pend is None or self.stop_at_epoch_end:
            return
        per_step = (time.monotonic() - self.epoch_started) / max(step, 1)
        left = per_step * (steps - step)
        budget = _state.warning_s / 2 - (time.monotonic() - pend.at)
        if left <= budget:
            self.stop_at_epoch_end = True
            return
        raise Preempted(
            f"{signal.Signals(pend.signum).name} in epoch {run.epochs_done + 1}, step {step}/{steps}: its "
            f"rest ({left:.0f} s) would outlast the warning; stopping now, the run continues from the "
            f"checkpoint after epoch {run.epochs_done}"
        )

    def on_epoch_end(self, run, entry: dict) -> None:
        pend = _state.pending
        if pend is not None:
            saved = (
                f"checkpoint after epoch {run.epochs_done} saved, the requeued job continues from it"
                if run.save_checkpoint is not None
                else "no checkpoint (checkpoint.save=false): the requeued job trains the run again"
            )
            raise Preempted(f"{signal.Signals(pend.signum).name} in epoch {entry['epoch']}: {saved}")
        self.epoch_started = time.monotonic()
