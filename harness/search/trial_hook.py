"""The job's side of a search: a hook that ties one training run to its Optuna trial.

The sweeper passes ``trial.number``, ``trial.study`` and ``trial.storage`` to each job as overrides. The
hook re-attaches to that trial through the storage (from any process or machine), reports the validation
accuracy after every epoch and, when the study's pruner says so, ends the run with
``StopRun("pruned", ...)``: the record then says ``status: pruned`` and ``stopped_epoch``.

While it trains, the job also sends its trial's heartbeats itself (the sweeper stops beating for it; its
note ``freezelab_job`` in the trial says where the job runs): a job whose machine dies then falls silent and
the sweeper fails and retries its trial (harness/search/worker.py, ``Worker.watch_jobs``), where beats from
the sweeper would have kept it RUNNING for ever.

The storage is opened once per process and URL (:func:`shared_storage`), not once per job: with the basic
launcher every trial of a sweep runs in the sweeper's process, and a storage per job grew that process by
~0.1 MB per trial, ~10 MB by the 100th (see :func:`shared_storage`; measured with ``python -m benchmarks.soak``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from harness.engine.hooks import Hook, StopRun
from harness.search.outcome import EPOCH_METRIC

KEEP_STORAGES = 4  # storages kept open per process: one per study URL in use, a few for tests that make many
_storages: dict[tuple[int, str], object] = {}  # (pid, url) -> RDBStorage, least recently used first
_storages_lock = threading.Lock()  # jobs of a threading launcher attach to their trials concurrently


def shared_storage(url: str):
    """The RDB storage of ``url`` for this process, opened on first use and reused by every later job.

    Why not a fresh storage per job: each one is a new SQLAlchemy engine with its own dialect object, and the
    ORM mappers of Optuna's models (module-level, alive for the whole process) cache compiled INSERT and
    SELECT statements keyed by that dialect (``Mapper._compiled_cache``, 100 entries per mapper). Every job
    therefore pinned its dead engine's dialect and statements there until those caches filled (~10 MB by the
    100th trial), and paid for ``create_all`` and the schema version check again. One engine per URL keeps
    that memory constant.

    At most :data:`KEEP_STORAGES` stay open; the least recently used is disposed. Entries are keyed by
    process id: a forked child never uses (or closes) its parent's connections.
    """
    from harness.search import study as studies

    key = (os.getpid(), url)
    with _storages_lock:
        storage = _storages.pop(key, None)
        if storage is None:
            storage = studies.open_storage(url)
        _storages[key] = storage  # now the most recently used
        while len(_storages) > KEEP_STORAGES:
            oldest = next(iter(_storages))
            old = _storages.pop(oldest)
            # close=False for an entry made before a fork: the parent process still owns those connections.
            old.engine.dispose(close=oldest[0] == os.getpid())
        return storage


class TrialHook(Hook):
    def __init__(self, trial_cfg: Mapping):
        self.number = int(trial_cfg["number"])
        self.study_name = str(trial_cfg["study"])
        self.storage_url = str(trial_cfg["storage"])
        self.trial = None
        self.metric: str | None = (
            None  # what is reported each epoch; None: nothing (multi-objective, no pruner)
        )
        self.pruner = "none"
        self.reported = 0
        self.beats = None  # this job's heartbeat for its trial, while it trains
        self.storage = self.trial_id = None

    def on_run_start(self, run) -> None:
        import optuna

        from harness.search import study as studies

        storage = shared_storage(self.storage_url)
        study_id = storage.get_study_id_from_name(self.study_name)
        # The sweeper stores what jobs need to know in the study itself, so a job on another machine needs
        # nothing but the storage URL: the pruner's settings and the objectives.
        info = storage.get_study_user_attrs(study_id).get(studies.ATTR_KEY, {})
        self.pruner = (info.get("pruner") or {}).get("name", "none")
        study = studies.open_study(
            self.study_name, storage, [], pruner=studies.make_pruner(info.get("pruner")), create=False
        )
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.number)
        self.trial = optuna.trial.Trial(study, trial_id)
        if info.get("heartbeat_interval"):
            self._start_beating(storage, trial_id, float(info["heartbeat_interval"]))
        objectives = info.get("objectives") or ["val_acc"]
        # Optuna reports intermediate values for single-objective studies only.
        if len(objectives) == 1:
            self.metric = EPOCH_METRIC.get(objectives[0])
        # A retried trial whose run resumed from a checkpoint (harness/store.py): report the epochs done before,
        # so its pruner sees the whole curve.
        if self.metric is not None:
            for entry in run.history:
                self.trial.report(entry[self.metric], step=int(entry["epoch"]))

    def on_epoch_end(self, run, entry: dict) -> None:
        if self.trial is None or self.metric is None:
            return
        import optuna

        value, epoch = entry[self.metric], int(entry["epoch"])
        try:
            self.trial.report(value, step=epoch)
        except optuna.exceptions.UpdateFinishedTrialError:
            # The study no longer waits for this trial (its worker was declared dead): stop wasting the slot.
            raise StopRun(
                "failed", f"trial {self.number} was finished in the study meanwhile (stale?)"
            ) from None
        self.reported += 1
        # After the last epoch there is nothing left to save: the finished run is told as COMPLETE, not pruned.
        if epoch < run.plan.total_epochs and self.trial.should_prune():
            raise StopRun(
                "pruned", f"pruned by the {self.pruner} pruner after epoch {epoch}: {self.metric} {value:.4f}"
            )

    def _start_beating(self, storage, trial_id: int, interval: float) -> None:
        from harness.engine.preempt import slurm_job_id
        from harness.search import study as studies
        from harness.search.heartbeat import Heartbeat

        self.storage, self.trial_id = storage, trial_id
        note = {**studies.owner_note(), "slurm_job": slurm_job_id(), "beating": True}
        storage.set_trial_system_attr(trial_id, studies.JOB_KEY, note)
        self.beats = Heartbeat(storage, interval)
        self.beats.start()
        self.beats.add(trial_id)

    def _stop_beating(self) -> None:
        """The sweeper beats again until it tells the trial (or until a requeued job takes over)."""
        if self.beats is None:
            return
        from harness.search import study as studies

        self.beats.stop()
        self.beats = None
        try:
            note = self.storage.get_trial_system_attrs(self.trial_id).get(studies.JOB_KEY) or {}
            self.storage.set_trial_system_attr(self.trial_id, studies.JOB_KEY, {**note, "beating": False})
        except Exception:  # finished meanwhile (stale): nothing left to hand back
            pass

    def on_run_interrupted(self, run) -> None:
        self._stop_beating()
        self.trial = None

    def on_run_end(self, run, record: dict) -> None:
        from harness.search.study import redact

        self._stop_beating()
        record["trial"] = {
            "study": self.study_name,
            "number": self.number,
            "storage": redact(self.storage_url),
            "pruner": self.pruner,
            "reported_epochs": self.reported,
        }
        self.trial = None  # the trial holds the study and its storage: nothing of this run outlives it
