"""The run store: one folder per run identity, so a rerun of a killed sweep repeats nothing that finished.

A run's identity is its resolved config (:func:`harness.record.run_id`). Its folder, ``<checkpoint.dir>/<run_id>/``,
holds:

- ``last.pt``: the checkpoint after the latest epoch (an interrupted run continues from it);
- ``result.json``: a copy of the record of the finished run (status ``ok`` only: a failed run is tried again).

Next to the folder, ``<run_id>.lock`` is held while the run trains, so a second job with the same identity (two
workers, a rerun started while the first still runs) waits and then reuses the result instead of training again.

``resume=true`` (the default) reuses a finished result and continues an interrupted run; ``resume=false``
trains from the start and replaces both. A store record that does not parse or does not match its folder
(schema version, run id, status) is reported and trained again, never used. Every file is written atomically.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

from harness import record

# In a job's output folder: the run began there (analysis reads a killed job's run id from it).
STARTED_NAME = "started.json"


class RunStore:
    def __init__(self, root: str | Path, rid: str):
        self.rid = rid
        self.folder = Path(root) / rid
        self.checkpoint = self.folder / "last.pt"
        self.record_path = self.folder / record.RECORD_NAME

    @contextmanager
    def lock(self):
        """Held for the whole run: one process per identity at a time (the OS frees it if the process dies)."""
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.folder.parent / f"{self.rid}.lock")):
            yield

    def finished(self) -> dict | None:
        """The stored record of this run if it finished ``ok`` and is intact, else None."""
        if not self.record_path.is_file():
            return None
        try:
            stored = record.read_record(self.record_path)
            problem = None
            if not isinstance(stored, dict):
                problem = "not a JSON object"
            elif stored.get("version") != record.RECORD_VERSION:
                problem = f"schema version {stored.get('version')!r}"
            elif stored.get("run_id") != self.rid:
                problem = f"run id {stored.get('run_id')!r} in the folder of {self.rid}"
            elif stored.get("status") != "ok" or not isinstance(stored.get("metrics"), dict):
                problem = f"status {stored.get('status')!r}"
        except (OSError, ValueError) as e:
            problem = f"{type(e).__name__}: {e}"
        if problem:
            print(
                f"run store: {self.record_path} is unusable ({problem}); training the run again", flush=True
            )
            return None
        return stored

    def save_finished(self, result: dict, output_dir: Path) -> None:
        if result["status"] == "ok":
            record.write_json_atomic(self.record_path, {**result, "output_dir": str(output_dir.resolve())})

    def forget(self) -> None:
        """``resume=false``: the run starts over, so what the store held of it no longer describes it."""
        self.record_path.unlink(missing_ok=True)
        self.checkpoint.unlink(missing_ok=True)


def reused_record(stored: dict, config: dict, store: RunStore, extra: dict | None) -> dict:
    """This job's record of a run that finished earlier: the stored numbers under this job's config (the same
    identity; bookkeeping keys such as experiment_name or the trial may differ) and where they came from."""
    result = {k: v for k, v in stored.items() if k not in ("output_dir", "trial", "reused")}
    result["config"] = config
    result["reused"] = {
        "from": stored.get("output_dir"),
        "store": str(store.record_path),
        "finished": (stored.get("timing") or {}).get("finished"),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    result.update(extra or {})
    return result


def mark_started(output_dir: Path, rid: str, experiment: str | None) -> None:
    """A small note that this folder's run began: if the job dies, analysis still knows which run it was."""
    note = {
        "run_id": rid,
        "experiment": experiment,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    record.write_json_atomic(output_dir / STARTED_NAME, note)
