"""Turning finished runs (their ``result.json`` records) into DataFrames, tables, figures and reports.

    runs = analysis.load_runs("outputs/")          # one row per run; failed/pruned kept and marked
    history = analysis.load_history(runs)          # one row per (run, epoch)
    td = analysis.transfer_data(runs)              # transferability: ci_table(td), findings(td), undertrained(td)
    analysis.write_report("outputs/transferability_quick/<date>")   # or: python -m analysis.report PATH

Every table, figure and finding uses ``test_acc_best_val_k`` (default: test accuracy at the k epochs with the
best validation accuracy) or ``test_acc`` (last epoch); see :mod:`analysis.metrics`. Figures live in
:mod:`analysis.figures` (imported on use: it loads matplotlib).
"""

from analysis.load import NoRunsError, load_history, load_runs, lr_long
from analysis.search import best_trials, importances, load_trials, pruned_share, state_counts
from analysis.stats import t_interval, welch_interval
from analysis.strategies import strategy_runs, strategy_table
from analysis.transferability import (
    baseb_line,
    ci_table,
    findings,
    side_by_side,
    transfer_data,
    undertrained,
)

__all__ = [
    "NoRunsError",
    "load_runs",
    "load_history",
    "lr_long",
    "transfer_data",
    "ci_table",
    "baseb_line",
    "findings",
    "side_by_side",
    "undertrained",
    "strategy_runs",
    "strategy_table",
    "load_trials",
    "state_counts",
    "pruned_share",
    "best_trials",
    "importances",
    "t_interval",
    "welch_interval",
    "write_report",
]


def __getattr__(name):
    if name == "write_report":  # imports matplotlib; only when asked for
        from analysis.report import write_report

        return write_report
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
