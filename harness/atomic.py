"""Atomic files: write to a temporary name in the same folder, then rename into place.

A reader (another job, an analysis notebook, a resumed run) sees the old file or the whole new one, never
half of one; a crash mid-write leaves only a hidden ``.name.*.tmp`` file behind, never a finished-looking one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness.errors import ConfigError


def atomic_write(path: str | Path, write: Callable, *, binary: bool = False) -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, flush it to disk, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)  # mkstemp makes the file private: give it the permissions a plain open() would
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(folder: str | Path, what: str) -> None:
    """Fail now, in one line, when ``folder`` cannot be created or written (a read-only or foreign folder),
    rather than after the first epoch when the first checkpoint is saved. ``what`` names the setting."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(
            f"{what}: cannot write to '{folder}' ({e.strerror or type(e).__name__}); "
            "choose a folder this user can write (e.g. paths.output_root=...)"
        ) from None
