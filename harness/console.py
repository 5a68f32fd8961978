"""How numbers read on a console: counts with their plural, accuracies in percent, durations. Lines that
the harness prints fit 80 columns."""

from __future__ import annotations

WIDTH = 80


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 epoch``, ``2 epochs``, ``0 epochs``."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def percent(value: float | None, digits: int = 1) -> str:
    """An accuracy in [0, 1] as ``97.4%`` (``-`` when there is none)."""
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def duration(seconds: float) -> str:
    """``0m12s``, ``12m05s``, ``1h02m``."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
