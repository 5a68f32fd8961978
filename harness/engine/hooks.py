"""Hooks: everything optional that watches a run (progress, logging, pruning, diagnostics).

The loop calls each hook at fixed points and knows nothing of what they do. A hook that wants the
run to stop early raises :class:`StopRun` (pruning does this); the run then ends with that status.
"""

from __future__ import annotations


class StopRun(Exception):
    """Raised by a hook to end a run early with ``status`` (e.g. ``pruned``) and a reason."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Hook:
    """Base class: override what you need. ``run`` is the :class:`harness.engine.loop.Run` being trained."""

    def on_run_start(self, run) -> None: ...

    def on_phase_start(self, run, phase_index: int) -> None: ...

    def after_backward(self, run) -> None:
        """Gradients are in ``.grad`` (before the optimizer step): the place for cheap gradient stats."""

    def on_batch_end(self, run, step: int, steps: int, loss: float) -> None: ...

    def on_trainable_change(self, run) -> None:
        """A rule froze groups in the middle of a phase: ``run.train_params`` (and so ``run.grad_norms``) now
        hold fewer parameters, from the next step on."""

    def on_epoch_end(self, run, entry: dict) -> None:
        """``entry`` is the epoch's history record; a hook may add its own keys to it."""

    def on_run_end(self, run, record: dict) -> None:
        """``record`` is the result record about to be written; a hook may add its own keys to it."""

    def on_run_interrupted(self, run) -> None:
        """The run stops without a record, to continue in another process (preempted: harness/engine/preempt.py)."""


def call(hooks: list[Hook], method: str, *args) -> None:
    for hook in hooks:
        getattr(hook, method)(*args)
