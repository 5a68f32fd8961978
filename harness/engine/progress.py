"""Progress output: a live line on a terminal, one plain line per epoch under CI or into a file.

Every epoch line says n of N, the best validation accuracy so far and the time left, so a long run
shows where it is whether you watch it or read its log afterwards.
"""

from __future__ import annotations

import os
import sys
import time

from harness.console import duration, percent, plural
from harness.engine.hooks import Hook
from harness.plan.summary import format_table, phase_rows


def interactive(stream=None) -> bool:
    stream = stream or sys.stdout
    return stream.isatty() and not os.environ.get("CI")


class ProgressHook(Hook):
    def __init__(self, stream=None, prefix: str = "", epoch_lines: bool = True):
        self.stream = stream or sys.stdout
        self.epoch_lines = epoch_lines  # the plan and the phase summaries are printed either way
        self.live = epoch_lines and interactive(self.stream)
        self.prefix = prefix
        self.best = float("-inf")
        self.started = time.perf_counter()
        self.epoch_started = self.started

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def on_run_start(self, run) -> None:
        self._print(run.plan.describe())
        stop = run.early_stop
        if stop is not None:  # the epoch count above is then a cap
            flat = f"when val_acc has not risen for {plural(stop.patience, 'epoch')}"
            first = (
                f"lr x{stop.factor:g} {flat}, {plural(stop.reductions, 'time')};" if stop.reductions else ""
            )
            self._print(
                f"  early stopping: {first}\n  then stop, keeping the best-validation weights"
                if first
                else f"  early stopping: stop {flat},\n  keeping the best-validation weights"
            )
        self.started = time.perf_counter()
        self.first_epoch = run.epochs_done

    def on_phase_start(self, run, phase_index: int) -> None:
        phase = run.plan.phases[phase_index]
        title = (
            f"phase {phase_index + 1}/{len(run.plan.phases)} '{phase.name}' ({plural(phase.epochs, 'epoch')})"
        )
        self._print(format_table(phase_rows(run.model, run.params, run.plan, phase_index), title))

    def on_batch_end(self, run, step: int, steps: int, loss) -> None:
        if not self.live or (step % 10 and step != steps):
            return
        if step == 1:
            self.epoch_started = time.perf_counter()
        width = 24
        done = int(width * step / steps)
        bar = "#" * done + "." * (width - done)
        epoch = f"{run.epochs_done + 1}/{run.total_epochs}"
        line = f"\r{self.prefix}epoch {epoch} [{bar}] {step}/{steps} loss {loss.item():.4f}"
        print(line, end="", file=self.stream, flush=True)

    def on_epoch_end(self, run, entry: dict) -> None:
        if not self.epoch_lines:
            return
        self.best = max(self.best, entry["val_acc"])
        epochs_run = run.epochs_done - self.first_epoch
        left = (time.perf_counter() - self.started) / epochs_run * (run.total_epochs - run.epochs_done)
        # At most 80 columns: "epoch 12/40 unfrozen  loss 0.123 val 0.123 97.4% best 97.8%  1.2s ~3m05s left"
        text = (
            f"{self.prefix}epoch {entry['epoch']}/{run.total_epochs} {entry['phase'][:10]:<10} "
            f"loss {entry['train_loss']:.3f} val {entry['val_loss']:.3f} {percent(entry['val_acc'])} "
            f"best {percent(self.best)} {entry['seconds']:4.1f}s ~{duration(left)} left"
        )
        if self.live:
            text = "\r\033[K" + text
        self._print(text)
        stop = run.early_stop
        if stop is not None and stop.stopped_early:
            self._print(
                f"  stopped: val_acc flat for {plural(stop.patience, 'epoch')}; "
                f"kept epoch {stop.best_epoch}'s weights (val {percent(stop.best_val)})"
            )
        elif stop is not None and stop.reduced_at and stop.reduced_at[-1] == entry["epoch"]:
            self._print(
                f"  val_acc flat for {plural(stop.patience, 'epoch')}: lr x{stop.factor:g} "
                f"(cut {len(stop.reduced_at)} of {stop.reductions})"
            )
