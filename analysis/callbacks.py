"""Hydra callbacks: :class:`WriteReport` writes the analysis report when a multirun (a grid) ends.

Enabled for the transfer grids in ``conf/experiment/transferability_quick.yaml``::

    hydra:
      callbacks:
        report:
          _target_: analysis.callbacks.WriteReport

The report lands in ``<sweep dir>/report/``. A report that cannot be written never turns a finished grid into
a failure: the callback prints one line saying why and how to write it by hand, and returns.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from analysis.metrics import DEFAULT as DEFAULT_METRIC


class WriteReport(Callback):
    def __init__(self, out: str | None = None, metric: str = DEFAULT_METRIC, enabled: bool = True) -> None:
        self.out, self.metric, self.enabled = out, metric, enabled

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if not self.enabled:
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        retry = f"write it with: python -m analysis.report {sweep_dir}"
        try:
            from analysis.report import write_report

            started = time.perf_counter()
            out = write_report(sweep_dir, self.out, metric=self.metric, command=_command(config))
            print(
                f"analysis: report written to {out / 'report.md'} ({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
        except Exception as e:  # the grid's results are safe on disk; the report only failed to be written
            print(
                f"analysis: the grid finished, but its report could not be written ({type(e).__name__}: {e}); "
                f"{retry}",
                file=sys.stderr,
                flush=True,
            )


def _command(config: DictConfig) -> str:
    """The grid's command line, from the overrides Hydra received."""
    try:
        task = list(config.hydra.overrides.task)
    except Exception:  # an unusual config: the report's provenance falls back to the sweep's multirun.yaml
        task = []
    return (
        "python -m harness.train -m "
        + " ".join(task)
        + "  (report written by analysis.callbacks.WriteReport)"
    )
