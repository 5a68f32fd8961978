"""The worker's heartbeats (harness/search/heartbeat.py), against a storage that only counts them."""

from __future__ import annotations

import threading
import time
from collections import Counter

from harness.search.heartbeat import Heartbeat


class CountingStorage:
    """Counts ``record_heartbeat`` calls per trial id; fails the first beat of ``flaky`` ids."""

    def __init__(self, flaky=()):
        self.beats: Counter[int] = Counter()
        self.flaky = set(flaky)
        self.lock = threading.Lock()

    def record_heartbeat(self, trial_id: int) -> None:
        with self.lock:
            if trial_id in self.flaky:
                self.flaky.discard(trial_id)
                raise ConnectionError("the database went away for a moment")
            self.beats[trial_id] += 1


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_beats_for_each_trial_in_flight_until_it_is_discarded():
    storage = CountingStorage()
    beat = Heartbeat(storage, interval=0.02)
    beat.add(1)  # beats at once, before the thread runs: a trial is never without a heartbeat
    assert storage.beats[1] == 1
    beat.start()
    try:
        beat.add(2)
        assert wait_for(lambda: storage.beats[1] >= 3 and storage.beats[2] >= 3)
        beat.discard(1)
        time.sleep(0.05)  # a beat already under way may still land
        after, two = storage.beats[1], storage.beats[2]
        assert wait_for(lambda: storage.beats[2] >= two + 3)  # trial 2 still beats...
        assert storage.beats[1] == after  # ...trial 1, discarded, no more
        assert beat.ids == {2}
    finally:
        beat.stop()
    assert not beat._thread.is_alive()
    stopped = storage.beats[2]
    time.sleep(0.1)
    assert storage.beats[2] == stopped


def test_a_failing_beat_is_logged_and_the_next_one_goes_through(caplog):
    storage = CountingStorage(flaky={7})
    beat = Heartbeat(storage, interval=0.02)
    beat.add(7)  # this one fails: not raised into the worker's ask
    assert storage.beats[7] == 0 and "heartbeat for trial id 7 failed" in caplog.text
    beat.start()
    try:
        assert wait_for(lambda: storage.beats[7] >= 2)
    finally:
        beat.stop()
