"""The command-line entry points run so that Hydra's errors about the input read like ours: one line, exit 2.

Hydra composes the config inside ``hydra.main`` and reports its own failures there
(``hydra._internal.utils.run_and_report``): it prints a multi-line message and calls ``sys.exit(1)``, so the
exception never reaches the caller. ``epoch=3`` gets seven lines that advise ``+epoch=3``, which adds a key no
code reads. Hydra's documented switch ``HYDRA_FULL_ERROR=1`` makes it re-raise instead; :func:`run_entry_point`
sets it (for this process and the jobs it starts) and catches at the entry point exactly the errors that are the
user's input: a composition error (an unknown key, an unknown group option, a bad value for a typed node), an
override that does not parse, a :class:`~harness.errors.ConfigError` raised by a callback or a sweeper. They
become ``error: <one line>`` and exit code 2. Anything else propagates with its traceback and exit code 1: a
failed run is not bad input, and a bug must show where it is.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from harness.config import checks, schema
from harness.errors import ConfigError

USER_ERRORS = (ConfigCompositionException, OverrideParseException, ConfigError)


def run_entry_point(main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` function; the user's input errors become one line on stderr and exit code 2."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing and exiting 1
    try:
        main()
    except USER_ERRORS as e:
        print(f"error: {describe(e)}", file=sys.stderr, flush=True)
        sys.exit(2)


def describe(error: BaseException) -> str:
    """One line for a Hydra composition or override error (or one of ours), naming the key or option."""
    if isinstance(error, ConfigError):
        return checks.flat_message(error)
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options:
        return missing_option(error.missing_cfg_file, list(error.options))
    cause = error.__cause__
    full_key = getattr(cause, "full_key", None)
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and full_key:
        return unknown_key(full_key, getattr(cause, "parent_node", None))
    text = checks.flat_message(error)
    if isinstance(error, OverrideParseException) and error.override:
        text = f"cannot parse the override '{error.override}': {text}"
    if isinstance(cause, OmegaConfBaseException):
        text += f": {checks.one_line(cause)}"
    return text


def missing_option(missing: str, options: list[str]) -> str:
    """``strategy=head-only``: the group's options, the closest first."""
    group, _, option = missing.rpartition("/")
    hint = checks.closest(option, options)
    return (
        f"Could not find '{missing}'"
        + (f" (did you mean {group}={hint}?)" if hint else "")
        + f". Available options in '{group}': {', '.join(options)}"
    )


def unknown_key(full_key: str, parent: Any) -> str:
    """A key that is not in the config (Hydra refuses to set it): the schema's words, else the parent's keys."""
    message = schema.unknown_key(full_key, parent)
    if message is not None:
        return message
    *path, key = full_key.split(".")
    known = sorted(str(k) for k in parent) if parent is not None else []
    hint = checks.closest(key, known)
    return (
        f"{full_key} is not a key of {'.'.join(path) or 'the config'}"
        + (f"; did you mean {hint}?" if hint else ";")
        + f" its keys: {', '.join(known)}"
    )
