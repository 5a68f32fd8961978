"""Heartbeats for the trials a worker has in flight, so that a worker that dies can be told from a slow one.

Optuna's own heartbeat thread runs only inside ``Study.optimize``; with ask/tell the worker owns its trials,
so it beats for them itself. A killed worker (or machine) stops beating, and after the storage's grace period
any other worker's stale check (:func:`harness.search.study.fail_stale`) marks its trials FAIL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Heartbeat:
    """Records a heartbeat every ``interval`` seconds for each trial id added, from ask to tell.

    ``storage`` needs only ``record_heartbeat(trial_id)`` (Optuna's RDBStorage has it). ``skip(trial_id)``:
    a trial not to beat for at this interval (its job beats for itself, harness/search/trial_hook.py);
    ``on_tick()``: called after every interval's beats (the worker's watch for jobs that stopped beating).
    """

    def __init__(
        self,
        storage,
        interval: float,
        *,
        skip: Callable[[int], bool] | None = None,
        on_tick: Callable[[], None] | None = None,
    ):
        self.storage, self.interval = storage, interval
        self.skip, self.on_tick = skip, on_tick
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trial-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)  # a beat stuck on a locked database must not hold up the exit

    def add(self, trial_id: int) -> None:
        """Beat for ``trial_id`` now and at every interval until it is discarded."""
        with self._lock:
            self._ids.add(trial_id)
        self._beat(trial_id)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self._ids.discard(trial_id)

    @property
    def ids(self) -> set[int]:
        with self._lock:
            return set(self._ids)

    def _beat(self, trial_id: int) -> None:
        try:
            self.storage.record_heartbeat(trial_id)
        except Exception as e:  # a storage hiccup must not kill the sweep; the next beat tries again
            log.warning("heartbeat for trial id %s failed: %s", trial_id, e)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            for trial_id in self.ids:
                if self.skip is not None and self._skipped(trial_id):
                    continue
                self._beat(trial_id)
            if self.on_tick is not None:
                try:
                    self.on_tick()
                except Exception as e:  # the watch must not stop the beats
                    log.warning("heartbeat watch failed: %s", e)

    def _skipped(self, trial_id: int) -> bool:
        try:
            return bool(self.skip(trial_id))
        except Exception:  # cannot tell: beat, as before
            return False
