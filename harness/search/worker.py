"""The search worker: ask -> launch -> tell on a shared Optuna study, one trial per free slot. No Hydra here.

The Hydra sweeper (``hydra_plugins/freezelab_optuna``) only adapts Hydra to it: it builds the space and the
:class:`Settings` from ``search.*`` and turns its launcher into the :data:`Launch` function the worker calls
with each trial's :class:`Job`. Tests drive a worker in process with a fake launch (tests/test_search_worker.py).

What a worker does (README "Search"):

- **Slots, not batches.** Each of ``slots`` threads asks the study for one trial, launches its job, waits for
  it, tells the study and asks again at once: a slow trial holds only its own slot. Several workers (threads
  or processes, on any machines) on one storage are independent workers of one study; they take turns at
  asking (:func:`harness.search.study.ask_lock`), so the study gets exactly ``n_trials`` trials.
- **Pruning.** Each job gets ``trial.number/study/storage`` overrides; its trial hook re-attaches to the trial
  through the storage (harness/search/trial_hook.py).
- **Failures do not stop the sweep.** The job's ``result.json`` decides its state (harness/search/outcome.py);
  an exception of the launch or of the job is a FAIL with its reason too. ``max_failures`` FAILs in this
  worker stop it (:class:`SearchStopped`).
- **Resume.** A point already tried is answered from the study instead of running again; RUNNING trials of a
  dead worker are failed (at once when it ran on this machine, else once its heartbeats stop) and queued again
  ``retry_stale`` times.
- **Jobs that die.** A running job beats for its own trial (harness/search/trial_hook.py), the worker for the
  trials whose job is queued or done. A job that stops beating (its node died) is failed by the worker's
  watch each heartbeat interval, queued again ``retry_stale`` times and cancelled (``cancel``), so its slot
  goes on. A job killed from outside (``scancel``, a node failure the cluster saw) makes the launch raise
  :class:`JobLost`: FAIL with the reason and queued again the same way. The retry's job continues the run
  from its checkpoint (the same run identity, harness/store.py).
- **Outputs.** ``trials.csv`` and ``best.yaml`` are rewritten after every trial (harness/search/outputs.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum, auto
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from harness import record as records
from harness.search import study as studies
from harness.search.heartbeat import Heartbeat
from harness.search.outcome import Outcome, State, check_objectives, read_outcome
from harness.search.outputs import best_document, write_outputs


def say(message: str) -> None:
    print(message, flush=True)


class SearchStopped(RuntimeError):
    """This worker stopped because too many of its trials failed (``max_failures``)."""


class JobLost(RuntimeError):
    """Raised by a launch whose job ended without a result because something outside it stopped it
    (cancelled, its node failed, out of time with no requeue left): the trial is FAIL with this reason and
    queued again (``retry_stale``), not a training failure."""


class StopKind(Enum):
    """Why a worker stopped asking for trials."""

    N_TRIALS = auto()  # the study has its n_trials
    SPACE_TRIED = auto()  # every point of a finite space is tried
    GRID_TAKEN = auto()  # every grid point is tried or running
    DUPLICATES = auto()  # the sampler proposed max_duplicates tried points in a row
    MAX_FAILURES = auto()  # max_failures trials failed in this worker (raises SearchStopped)
    ERROR = auto()  # a slot raised
    INTERRUPTED = auto()  # Ctrl-C


@dataclass(frozen=True)
class Stop:
    kind: StopKind
    message: str  # what the summary prints after "stopped: "


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The worker's part of ``search.*`` (each key's meaning: hydra_plugins/freezelab_optuna/config.py), with
    ``storage`` resolved to a URL and ``sweep_dir`` the folder of the trial folders and outputs."""

    study_name: str
    storage: str
    sweep_dir: Path
    n_trials: int
    objectives: tuple[str, ...] = ("val_acc",)
    directions: tuple[str, ...] = ("maximize",)
    sampler: Mapping[str, Any] = field(default_factory=lambda: {"name": "tpe"})
    pruner: Mapping[str, Any] = field(default_factory=lambda: {"name": "median"})
    max_failures: int | None = 5
    retry_stale: int = 1
    heartbeat_interval: int = 60
    grace_period: int | None = None
    max_duplicates: int = 20

    def __post_init__(self) -> None:
        check_objectives(list(self.objectives), list(self.directions))

    @classmethod
    def from_search(cls, search: Mapping[str, Any], *, sweep_dir: str | Path) -> Settings:
        """From the ``search`` node as plain data; keys that are not the worker's (the space's) are left out."""
        sweep_dir = Path(sweep_dir).resolve()
        own = {f.name for f in fields(cls)} - {"storage", "sweep_dir", "objectives", "directions"}
        return cls(
            storage=search.get("storage") or studies.default_storage(sweep_dir),
            sweep_dir=sweep_dir,
            objectives=tuple(search.get("objectives", cls.objectives)),
            directions=tuple(search.get("directions", cls.directions)),
            **{k: v for k, v in search.items() if k in own},
        )

    @property
    def grid(self) -> bool:
        return self.sampler.get("name") == "grid"

    @property
    def effective_pruner(self) -> dict[str, Any]:
        """The pruner jobs use: none for several objectives (Optuna cannot prune those)."""
        pruner = dict(self.pruner)
        if len(self.objectives) > 1:
            pruner["name"] = "none"
        return pruner


def open_search(
    settings: Settings, *, conditional: bool = False, echo: Callable[[str], None] = say
) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """Create the study or load it (resume), set its sampler and store in it what jobs read (pruner,
    objectives): a job on another machine then needs only the storage URL. ``conditional``: the space has a
    custom function (TPE then models each group of parameters apart)."""
    storage = studies.open_storage(
        settings.storage,
        heartbeat_interval=int(settings.heartbeat_interval),
        grace_period=settings.grace_period,
        retry_stale=int(settings.retry_stale),
    )
    study = studies.open_study(settings.study_name, storage, list(settings.directions))
    existing = len(study.get_trials(deepcopy=False))
    study.sampler = studies.make_sampler(
        settings.sampler,
        seed=studies.sampler_seed(settings.sampler.get("seed"), existing),
        conditional=conditional,
    )
    pruner = settings.effective_pruner
    if pruner["name"] != settings.pruner["name"]:
        echo(
            f"search: Optuna cannot prune multi-objective trials ({len(settings.objectives)} objectives): "
            "pruner off"
        )
    # heartbeat_interval: how often a running job beats for its own trial (harness/search/trial_hook.py)
    info = {
        "pruner": pruner,
        "objectives": list(settings.objectives),
        "heartbeat_interval": int(settings.heartbeat_interval),
    }
    study.set_user_attr(studies.ATTR_KEY, info)
    return study, storage


@dataclass(frozen=True)
class Job:
    """One trial's job, as the launch function gets it."""

    number: int  # the trial number
    values: tuple[str, ...]  # this trial's own overrides (``strategy.base_lr=0.01``)
    rerun: tuple[str, ...]  # base overrides + values: ``python -m harness.train <rerun>`` repeats the run
    overrides: tuple[str, ...]  # rerun + trial.number/study/storage: what the job runs with
    folder: Path  # where its record (result.json) is expected


@dataclass(frozen=True)
class Launched:
    """What a launch tells besides the record its job wrote. A launch that raises is a FAIL too."""

    folder: str | Path | None = None  # where the job ran, when the launcher says (else Job.folder)
    error: BaseException | None = None  # the job raised and its launcher caught it (Hydra's JobReturn)


Launch = Callable[[Job], Launched | None]
# Cancel a job whose trial was failed for silence (its node died): (job, the job's note in the study).
Cancel = Callable[[Job, Mapping[str, Any]], None]


@dataclass
class _Running:
    trial: optuna.Trial
    trial_id: int
    job: Job
    started: float = field(default_factory=time.perf_counter)


class Worker:
    """One worker of a study: ``run(slots)`` asks, launches and tells until the study is done for it."""

    def __init__(
        self,
        study: optuna.Study,
        storage: optuna.storages.RDBStorage,
        space,
        settings: Settings,
        launch: Launch,
        *,
        base_overrides: Sequence[str] = (),
        job_folder: Callable[[int], Path] | None = None,
        space_cfg: Any = None,
        cancel: Cancel | None = None,
        echo: Callable[[str], None] = say,
    ):
        """``space``: a :class:`harness.search.space.SearchSpace` (``suggest``, ``size``, ``grid``, ``describe``);
        ``base_overrides``: what every job gets; ``job_folder(number)``: where the launcher puts job ``number``
        (default ``<sweep_dir>/trial_<number>``); ``space_cfg``: passed to a custom search space function;
        ``cancel``: stops the job of a trial failed because its job stopped beating."""
        self.study, self.storage, self.space, self.s, self.launch = study, storage, space, settings, launch
        self.base = tuple(base_overrides)
        self.job_folder = job_folder or (lambda number: settings.sweep_dir / f"trial_{number}")
        self.space_cfg, self.echo, self.cancel = space_cfg, echo, cancel
        self.study_id = storage.get_study_id_from_name(settings.study_name)
        # Written on each trial this worker runs: a rerun on this machine sees at once that it died.
        self.owner = studies.owner_note()
        self.lock = threading.RLock()  # study bookkeeping (ask, tell, counters) is one critical section
        self.stop: Stop | None = None
        self.failures = 0
        self.duplicates_in_a_row = 0
        self.in_flight: dict[int, _Running] = {}
        self.heartbeat: Heartbeat | None = None  # beats for the trials in flight while run() runs

    # ------------------------------------------------------------------------------------------ the run

    def run(self, slots: int = 1) -> Stop:
        """Run trials in ``slots`` threads (never more than the trials left) until the study is done for this
        worker; return why it stopped. Raises :class:`SearchStopped` (after the summary) on max_failures."""
        self.fail_dead_workers()
        done = studies.counted(self.study.get_trials(deepcopy=False))
        slots = max(1, min(int(slots), self.s.n_trials - done))
        self._print_header(done, slots)
        self.heartbeat = Heartbeat(
            self.storage,
            float(self.s.heartbeat_interval),
            skip=lambda trial_id: studies.job_beats(self.storage, trial_id),
            on_tick=self.watch_jobs,
        )
        self.heartbeat.start()
        try:
            self._run_slots(slots)
        finally:
            self.heartbeat.stop()
            self._abandon_in_flight()
            self._write_outputs(final=True)
        assert self.stop is not None
        if self.stop.kind is StopKind.MAX_FAILURES:
            raise SearchStopped(self.stop.message)
        return self.stop

    def _stop(self, kind: StopKind, message: str) -> None:
        self.stop = Stop(kind, message)

    def _run_slots(self, n: int) -> None:
        if n == 1:
            self._slot()
            return
        errors: list[BaseException] = []

        def slot() -> None:
            try:
                self._slot()
            except BaseException as e:  # a bug in a slot stops every slot, and is raised in the main thread
                with self.lock:
                    if self.stop is None:
                        self._stop(StopKind.ERROR, f"error: {e}")
                errors.append(e)

        threads = [threading.Thread(target=slot, name=f"search-slot-{i}", daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.5)  # short joins keep the main thread responsive to Ctrl-C
        except KeyboardInterrupt:
            with self.lock:
                self._stop(StopKind.INTERRUPTED, "interrupted")
            raise
        if errors:
            raise errors[0]

    def _slot(self) -> None:
        while (running := self._next()) is not None:
            launched, error = self._launch(running.job)
            self._finish(running, launched, error)

    # ------------------------------------------------------------------------------------------- ask

    def _next(self) -> _Running | None:
        with self.lock:
            while self.stop is None:
                # Workers of one study take turns from counting its trials to the new trial's parameters:
                # n_trials is never overshot, and no two workers take the same grid point.
                with studies.ask_lock(self.s.storage, self.s.study_name, self.storage):
                    running = self._ask()
                if running is not None:
                    return running
        return None

    def _ask(self) -> _Running | None:
        """One trial to run, or None: the study is done (``stop`` says why) or the sampler proposed a point
        already tried (answered from the study; the caller asks again)."""
        self.fail_dead_workers()
        trials = self.study.get_trials(deepcopy=False)
        if studies.counted(trials) >= self.s.n_trials:
            self._stop(StopKind.N_TRIALS, f"the study has its {self.s.n_trials} trials")
            return None
        size = self.space.size
        if size is not None and len({_key(t.params) for t in studies.tried(trials)}) >= size:
            self._stop(StopKind.SPACE_TRIED, f"all {size} points of the space are tried")
            return None
        # A queued retry (a dead worker's or a lost job's trial) is asked first; a grid point is queued only
        # when none waits, or it would be left WAITING once the study has its n_trials.
        if self.s.grid and not any(t.state == TrialState.WAITING for t in trials):
            point = studies.untried_grid_point(self.space, trials)
            if point is None:
                self._stop(StopKind.GRID_TAKEN, "every grid point is tried or running")
                return None
            self.study.enqueue_trial(point)
        with studies.quiet():
            trial = self.study.ask()
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)
        self.storage.set_trial_system_attr(trial_id, studies.OWNER_KEY, self.owner)
        self.heartbeat.add(trial_id)
        try:
            values = self.space.suggest(trial, self.space_cfg)
        except Exception as e:
            self._tell(
                trial, TrialState.FAIL, reason=f"suggesting parameters failed: {type(e).__name__}: {e}"
            )
            self.heartbeat.discard(trial_id)
            raise
        earlier = studies.find_tried(
            self.study.get_trials(deepcopy=False), trial.params, exclude=trial.number
        )
        if earlier is not None:
            self._answer_duplicate(trial, trial_id, earlier)
            return None
        self.duplicates_in_a_row = 0
        return self._prepare(trial, trial_id, values)

    def _answer_duplicate(self, trial: optuna.Trial, trial_id: int, earlier: FrozenTrial) -> None:
        """The sampler proposed a point already tried (a small discrete space, or a resumed study): tell the
        earlier result again instead of training the same run twice."""
        original = earlier.user_attrs.get("duplicate_of", earlier.number)
        attrs = {k: v for k, v in earlier.user_attrs.items() if k != "duplicate_of"}
        # Its result (and folder) is the earlier trial's; it trained nothing itself.
        attrs.update({"duplicate_of": original, "epochs": 0, "seconds": 0.0})
        self._tell(
            trial, earlier.state, values=earlier.values, reason=earlier.user_attrs.get("reason"), attrs=attrs
        )
        self.heartbeat.discard(trial_id)
        self.duplicates_in_a_row += 1
        self.echo(
            f"[trial {trial.number}] same point as trial {original}: its result is reused, nothing runs"
        )
        if self.duplicates_in_a_row >= self.s.max_duplicates:
            self._stop(
                StopKind.DUPLICATES,
                f"the sampler proposed {self.duplicates_in_a_row} tried points in a row: "
                "the space looks exhausted",
            )

    def _prepare(self, trial: optuna.Trial, trial_id: int, values: list[str]) -> _Running:
        rerun = (*self.base, *values)
        overrides = (
            *rerun,
            f"trial.number={trial.number}",
            f"trial.study={quote(self.s.study_name)}",
            f"trial.storage={quote(self.s.storage)}",
        )
        folder = Path(self.job_folder(trial.number))
        previous = folder / records.RECORD_NAME
        if previous.exists():  # left by another study that used this folder: keep it, out of the way
            previous.rename(folder / f"{records.RECORD_NAME}.replaced-{int(time.time())}")
        trial.set_user_attr("folder", str(folder))
        trial.set_user_attr("overrides", list(rerun))
        running = _Running(trial, trial_id, Job(trial.number, tuple(values), rerun, overrides, folder))
        self.in_flight[trial.number] = running
        return running

    # ---------------------------------------------------------------------------------------- launch

    def _launch(self, job: Job) -> tuple[Launched, BaseException | None]:
        try:
            return self.launch(job) or Launched(), None
        except KeyboardInterrupt:
            raise
        except Exception as e:  # a worker process killed (out of memory), a failed SLURM job, a bad override
            return Launched(), e

    # ------------------------------------------------------------------------------------------ tell

    def _finish(self, running: _Running, launched: Launched, error: BaseException | None) -> None:
        job = running.job
        folder = Path(launched.folder) if launched.folder else job.folder
        result = read_outcome(folder, list(self.s.objectives), number=job.number, study=self.s.study_name)
        lost = isinstance(error, JobLost) and result.state is State.FAIL
        if lost:
            result = Outcome(State.FAIL, reason=f"its job was lost: {error}", attrs=result.attrs)
        elif error is not None and result.state is State.FAIL:
            reason = f"the launcher failed: {type(error).__name__}: {error}"
            result = Outcome(State.FAIL, reason=reason, attrs=result.attrs)
        elif launched.error is not None and result.state is State.FAIL:
            e = launched.error
            result = Outcome(State.FAIL, reason=f"{type(e).__name__}: {e}", attrs=result.attrs)
        attrs = dict(result.attrs)
        if str(folder) != str(job.folder):
            attrs["folder"] = str(folder)
        with self.lock:
            told = self._tell(
                running.trial,
                result.state.trial_state,
                values=result.values,
                reason=result.reason,
                attrs=attrs,
            )
            self.heartbeat.discard(running.trial_id)
            if lost and told:
                self._retry(running, result)
            self.in_flight.pop(job.number, None)
            if result.state is State.FAIL:
                self.failures += 1
                if self.s.max_failures is not None and self.failures >= self.s.max_failures:
                    self._stop(
                        StopKind.MAX_FAILURES,
                        f"max_failures: {self.failures} trials failed in this worker (search.max_failures="
                        f"{self.s.max_failures}); last: trial {job.number}: {result.reason}",
                    )
            self._print_trial(job, result, time.perf_counter() - running.started)
            self._write_outputs()

    def _tell(
        self,
        trial: optuna.Trial,
        state: TrialState,
        *,
        values: Sequence[float] | None = None,
        reason: str | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> bool:
        """Tell the study; False when the trial was already finished there (marked stale meanwhile)."""
        try:
            for key, value in (attrs or {}).items():
                trial.set_user_attr(key, value)
            if reason is not None:
                trial.set_user_attr("reason", reason)
            if state == TrialState.COMPLETE:
                self.study.tell(trial, values)
            else:
                self.study.tell(trial, state=state)
            return True
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker declared this trial stale meanwhile (a heartbeat interval too short for this
            # machine's load?): its FAIL stands, the job's result is in its folder.
            self.echo(
                f"[trial {trial.number}] was already finished in the study (marked stale); result not told"
            )
            return False

    def _retry(self, running: _Running, result: Outcome) -> None:
        """A trial whose job was lost: its point is queued again (``retry_stale`` times in all)."""
        frozen = self.storage.get_trial(running.trial_id)
        before = len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        studies.requeue(self.study, frozen, int(self.s.retry_stale))
        queued = len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) > before
        what = f"queued again (search.retry_stale={self.s.retry_stale})" if queued else "not retried again"
        self.echo(f"[trial {running.job.number}] {what}: its run continues from its checkpoint")

    def watch_jobs(self) -> list[FrozenTrial]:
        """Every heartbeat interval: the trials in flight whose job beats for itself but stopped (its node
        died) become FAIL with the reason, are queued again (the storage's stale callback, ``retry_stale``)
        and their jobs are cancelled, so the slots waiting on them go on."""
        with self.lock:
            running = {r.trial_id: r for r in self.in_flight.values()}
            if not running or not any(studies.job_beats(self.storage, tid) for tid in running):
                return []
            silent = [tid for tid in self.storage._get_stale_trial_ids(self.study_id) if tid in running]
            notes = {}
            for tid in silent:
                note = self.storage.get_trial_system_attrs(tid).get(studies.JOB_KEY) or {}
                where = (
                    f"SLURM job {note['slurm_job']}" if note.get("slurm_job") else f"pid {note.get('pid')}"
                )
                notes[tid] = (note, f"its job ({where} on {note.get('host')}) stopped sending heartbeats")
                try:
                    self.storage.set_trial_user_attr(tid, "reason", notes[tid][1] + " (its node died?)")
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass
            stale = [t for t in studies.fail_stale(self.study) if t._trial_id in notes] if notes else []
        for t in stale:
            note, why = notes[t._trial_id]
            again = (
                f" and queued again (search.retry_stale={self.s.retry_stale})" if self.s.retry_stale else ""
            )
            self.echo(f"[trial {t.number}] FAIL {why} (node down?): marked FAIL{again}; cancelling the job")
            if self.cancel is not None:
                try:
                    self.cancel(running[t._trial_id].job, note)
                except Exception as e:
                    self.echo(f"[trial {t.number}] could not cancel its job: {type(e).__name__}: {e}")
        return stale

    def _abandon_in_flight(self) -> None:
        """On Ctrl-C or an error: trials this worker launched and will never tell become FAIL now, rather than
        RUNNING until the stale check catches them."""
        with self.lock:
            why = self.stop.message if self.stop else "interrupted"
            for running in list(self.in_flight.values()):
                self._tell(running.trial, TrialState.FAIL, reason=f"its sweeper stopped: {why}")
                self.heartbeat.discard(running.trial_id)
            self.in_flight.clear()

    # --------------------------------------------------------------------------------------- dead workers

    def fail_dead_workers(self) -> list[FrozenTrial]:
        """Trials left RUNNING by a dead worker become FAIL (and are queued again, ``retry_stale``): at once
        when the worker ran on this machine, else once its heartbeats have stopped for the grace period."""
        again = f" and queued again (search.retry_stale={self.s.retry_stale})" if self.s.retry_stale else ""
        dead = studies.fail_dead_owned(self.study, int(self.s.retry_stale))
        for t in dead:
            note = t.system_attrs[studies.OWNER_KEY]
            self.echo(
                f"[trial {t.number}] was left RUNNING by worker pid {note['pid']} on this machine, which is "
                f"no longer running: marked FAIL{again}"
            )
        stale = studies.fail_stale(self.study)
        for t in stale:
            self.echo(
                f"[trial {t.number}] was left RUNNING by a worker that stopped sending heartbeats: "
                f"marked FAIL{again}"
            )
        return dead + stale

    # --------------------------------------------------------------------------------------- reports

    def _print_header(self, done: int, slots: int) -> None:
        directions = zip(self.s.objectives, self.s.directions, strict=True)
        objectives = ", ".join(f"{o} ({d})" for o, d in directions)
        self.echo(
            f"search '{self.s.study_name}': {done}/{self.s.n_trials} "
            f"trials done, storage {studies.redact(self.s.storage)}\n"
            f"  sampler {self.s.sampler['name']}, pruner {self.s.effective_pruner['name']}, "
            f"objectives {objectives}, {slots} trial(s) at a time, folders {self.s.sweep_dir}\n"
            f"{self.space.describe()}"
        )

    def _print_trial(self, job: Job, result: Outcome, seconds: float) -> None:
        if result.state is State.COMPLETE:
            what = ", ".join(f"{o} {v:.4f}" for o, v in zip(self.s.objectives, result.values, strict=True))
        elif result.state is State.PRUNED:
            what = result.reason or f"after epoch {result.attrs.get('stopped_epoch')}"
        else:
            what = result.reason
        self.echo(f"[trial {job.number}] {result.state} {what} ({seconds:.1f} s) {' '.join(job.values)}")

    def _write_outputs(self, final: bool = False) -> None:
        objectives = list(self.s.objectives)
        try:
            paths = write_outputs(self.study, objectives, self.s.sweep_dir, self.s.storage)
        except (
            Exception
        ) as e:  # a table that cannot be written must not lose the study (it is in the storage)
            self.echo(f"search: could not write the trials table / best.yaml: {type(e).__name__}: {e}")
            return
        if final:
            self._print_summary(paths)

    def _print_summary(self, paths: dict) -> None:
        trials = self.study.get_trials(deepcopy=False)
        states = {s.name: sum(1 for t in trials if t.state == s) for s in TrialState}
        counts = ", ".join(f"{n} {s.lower()}" for s, n in states.items() if n)
        why = self.stop.message if self.stop else "done"
        self.echo(f"search '{self.s.study_name}' stopped: {why}; {len(trials)} trials: {counts}")
        doc = best_document(self.study, list(self.s.objectives), self.s.storage)
        if doc is None:
            self.echo("no trial completed: no best.yaml")
        else:
            values = ", ".join(f"{k} {v:.4f}" for k, v in doc["values"].items())
            self.echo(f"best trial: {doc['trial']} ({values}) in {doc['folder']}")
            self.echo(f"  params: {' '.join(f'{k}={v}' for k, v in doc['params'].items())}")
            self.echo(f"best.yaml: {paths.get('best')}")
            self.echo(f"re-run: {doc['command']}")
        self.echo(f"trials table: {paths['table']}")


def _key(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, type(v).__name__, v) for k, v in params.items()))


def quote(text: str) -> str:
    """A string as one quoted Hydra override value (URLs hold ':', '/', '?', '=' and '@')."""
    if "'" not in text:
        return f"'{text}'"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
