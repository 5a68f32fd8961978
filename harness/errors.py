"""Errors a user can fix: reported as one line (what, where, what is allowed), exit code 2.

Anything raised as :class:`ConfigError` is caught at the entry points and printed without a
traceback; every other exception is a bug and keeps its traceback.
"""


class ConfigError(ValueError):
    """Bad input from config, data, checkpoints or storage; the message is the whole explanation."""


class NumericalError(RuntimeError):
    """A NaN or Inf loss or gradient: the run ends ``failed`` with this reason."""
