"""The typed checks every config section uses: one place, one wording.

Each check takes the value and the key it came from (``where``: ``"data.seed"``) and either returns the
value, converted where that is exact (an int where a float is asked for), or raises :class:`ConfigError`
with one line: what was given, where, and what is allowed. Booleans are not numbers and strings are not
numbers: ``lr=true`` and ``schedule.pct_start=abc`` are errors, not 1.0 and a traceback.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.errors import ConfigError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def integer(value: Any, where: str, *, low: int | None = None, high: int | None = None) -> int:
    """An int (never a bool) in ``[low, high]``."""
    if not _is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        bounds = " and ".join(
            b for b in (f">= {low}" if low is not None else "", f"<= {high}" if high is not None else "") if b
        )
        raise ConfigError(f"{where}={value!r} must be an integer" + (f" {bounds}" if bounds else ""))
    return value


def number(
    value: Any,
    where: str,
    *,
    low: float | None = None,
    high: float | None = None,
    below: float | None = None,
    above: float | None = None,
) -> float:
    """A float or int (never a bool or a string) with ``low <= value <= high``, ``above < value < below``."""
    bad = not _is_number(value) or value != value  # NaN is no bound's friend
    bad = bad or (low is not None and value < low) or (high is not None and value > high)
    bad = bad or (below is not None and value >= below) or (above is not None and value <= above)
    if bad:
        bounds = [
            f"> {above}" if above is not None else "",
            f">= {low}" if low is not None else "",
            f"<= {high}" if high is not None else "",
            f"< {below}" if below is not None else "",
        ]
        text = " and ".join(b for b in bounds if b)
        raise ConfigError(f"{where}={value!r} must be a number" + (f" {text}" if text else ""))
    return float(value)


def boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}={value!r} must be true or false")
    return value


def one_of(value: Any, where: str, choices: Iterable[Any], *, what: str = "") -> Any:
    """``value`` if it is one of ``choices``, else the closest choice is suggested."""
    choices = list(choices)
    # Of the same type too: true is not 1, and 1.0 is not the integer 1 a count needs.
    if not any(value == c and type(value) is type(c) for c in choices):
        hint = closest(value, [c for c in choices if isinstance(c, str)])
        shown = ", ".join("null" if c is None else str(c) for c in choices)
        raise ConfigError(
            f"{where}={value!r} is not {what or 'allowed'}"
            + (f" (did you mean {hint}?)" if hint else "")
            + f"; choose one of: {shown}"
        )
    return value


def text(value: Any, where: str) -> str:
    """A non-empty string. A number is not one: ``experiment_name=2024`` must be quoted."""
    if not isinstance(value, str) or not value:
        quote = f" (quote it: {where}='{value}')" if _is_number(value) else ""
        raise ConfigError(f"{where}={value!r} must be a non-empty string{quote}")
    return value


def list_of(value: Any, where: str, item, *, length: int | None = None, what: str = "values") -> list:
    """A list (``length`` long when given) whose every item passes ``item(value, where)``."""
    if not isinstance(value, list | tuple) or (length is not None and len(value) != length):
        size = f"{length} " if length is not None else ""
        raise ConfigError(f"{where}={value!r} must be a list of {size}{what}")
    return [item(v, f"{where}[{i}]") for i, v in enumerate(value)]


def folder(value: Any, where: str, *, needed_for: str = "") -> Path:
    """A folder that exists (``~`` expanded)."""
    if not value:
        raise ConfigError(f"{where} is not set" + (f"; {needed_for}" if needed_for else ""))
    path = Path(os.path.expanduser(str(value)))
    if not path.is_dir():
        raise ConfigError(
            f"{where}={value} does not exist or is not a folder" + (f" ({needed_for})" if needed_for else "")
        )
    return path


def closest(word: Any, known: Iterable[str]) -> str | None:
    """The known name closest to ``word`` (a typo's likely meaning), or None when nothing is close."""
    if not isinstance(word, str):
        return None
    match = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    if match:
        return match[0]
    # A separator typo (head-only for head_only) or a case slip is close whatever the ratio says.
    squashed = {k.replace("_", "").replace("-", "").lower(): k for k in known}
    return squashed.get(word.replace("_", "").replace("-", "").lower())


def one_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none)."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def flat_message(err: BaseException) -> str:
    """An exception's whole message on one line (its type name if it has none)."""
    return " ".join(str(err).split()) or type(err).__name__
