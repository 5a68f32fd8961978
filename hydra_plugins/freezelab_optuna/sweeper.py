"""The freezelab Optuna sweeper: ask -> launch -> tell, one trial per free launcher slot.

How it differs from the stock hydra-optuna-sweeper:

- **No lock-step batches.** Each slot (``search.n_jobs`` of them; the joblib launcher's ``n_jobs`` by default)
  is a thread that asks the study for one trial, launches that one job through the configured launcher
  (``launcher.launch([overrides])``), waits for it, tells the study, and asks again at once. A slow trial
  holds only its own slot. With the basic launcher (jobs run in this process) there is one slot. Several
  sweeper processes running the same command against one storage are independent workers of one study.
- **Pruning.** Each job gets ``trial.number/study/storage`` overrides; the job's
  :class:`harness.search.trial_hook.TrialHook` reports val_acc every epoch and stops when pruned.
- **Failures do not stop the sweep.** A job's ``result.json`` decides its state: ``failed`` (exception, NaN,
  out of memory) -> FAIL with the reason; a launcher error (a worker process killed, a failed SLURM job) ->
  FAIL too. ``search.max_failures`` FAILs in this process stop it.
- **Resume.** Same study name and storage -> the study continues to ``n_trials`` in total; a point already
  tried is answered from the study instead of being run again; RUNNING trials of a killed worker are marked
  FAIL (at once when it ran on this machine, else when its heartbeats stop) and re-queued
  ``search.retry_stale`` times; the retry's job resumes from the run's checkpoint (harness/store.py).

Heavy imports (optuna, harness, torch through it) happen in :meth:`sweep`: Hydra imports this module on
every start-up while scanning plugins.
"""

import copy
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


class SearchStopped(RuntimeError):
    """This worker stopped because too many of its trials failed (``search.max_failures``)."""


@dataclass
class Job:
    trial: Any  # optuna.Trial
    trial_id: int
    overrides: list[str]  # what the job runs with (base overrides + this trial's values + trial.*)
    rerun: list[str]  # the same without trial.*: `python -m harness.train <rerun>` repeats the run
    folder: Path
    started: float = field(default_factory=time.perf_counter)

    @property
    def number(self) -> int:
        return self.trial.number


class Heartbeat:
    """Records a heartbeat for every trial this process has in flight, from ask to tell.

    Optuna's own heartbeat thread runs only inside ``Study.optimize``; with ask/tell the sweeper owns the
    trials, so it beats for them. A killed sweeper (or machine) stops beating, and after the grace period
    any worker's stale check marks its trials FAIL.
    """

    def __init__(self, storage, interval: float):
        self.storage, self.interval = storage, interval
        self.ids: set[int] = set()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="trial-heartbeat", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def add(self, trial_id: int) -> None:
        with self.lock:
            self.ids.add(trial_id)
        self._beat(trial_id)

    def discard(self, trial_id: int) -> None:
        with self.lock:
            self.ids.discard(trial_id)

    def stop(self) -> None:
        self.stopped.set()

    def _beat(self, trial_id: int) -> None:
        try:
            self.storage.record_heartbeat(trial_id)
        except Exception as e:  # a storage hiccup must not kill the sweep; the next beat tries again
            log.warning("heartbeat for trial id %s failed: %s", trial_id, e)

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            with self.lock:
                ids = list(self.ids)
            for trial_id in ids:
                self._beat(trial_id)


class FreezelabOptunaSweeper(Sweeper):
    def __init__(self, search: Any = None) -> None:
        self.search_cfg = search
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher = None
        self.lock = threading.RLock()  # study bookkeeping (ask, tell, counters) is one critical section
        self.stop_reason: str | None = None
        self.failures = 0
        self.duplicates_in_a_row = 0
        self.in_flight: dict[int, Job] = {}
        self.returns: list[JobReturn] = []

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # ------------------------------------------------------------------------------------------ the sweep

    def sweep(self, arguments: list[str]) -> Any:
        """Run this worker's share of the study; user errors end it with one line (exit 2), as in train."""
        from harness.errors import ConfigError

        try:
            return self._sweep(arguments)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
        except SearchStopped as e:
            print(f"error: search stopped: {e}", file=sys.stderr, flush=True)
            sys.exit(1)

    def _sweep(self, arguments: list[str]) -> Any:
        from harness.search.study import counted, redact

        pruner = self._open(arguments)
        n_jobs = self._slots()
        done = counted(self.study.get_trials(deepcopy=False))
        objectives = ", ".join(f"{o} ({d})" for o, d in zip(self.objectives, self.s.directions, strict=True))
        print(
            f"search '{self.s.study_name}': {done}/{self.s.n_trials} "
            f"trials done, storage {redact(self.storage_url)}\n"
            f"  sampler {self.s.sampler.name}, pruner {pruner['name']}, objectives {objectives}, "
            f"{n_jobs} trial(s) at a time, folders {self.sweep_dir}\n{self.space.describe()}",
            flush=True,
        )
        self.heartbeat = Heartbeat(self.storage, float(self.s.heartbeat_interval))
        self.heartbeat.start()
        try:
            self._run_slots(n_jobs)
        finally:
            self.heartbeat.stop()
            self._abandon_in_flight()
            self._write_outputs(final=True)
        if self.stop_reason and self.stop_reason.startswith("max_failures"):
            raise SearchStopped(self.stop_reason)
        return [self.returns]

    def _open(self, arguments: list[str]) -> dict:
        """Settings, search space, storage and study (created, or loaded to resume); returns the pruner."""
        from harness.atomic import atomic_write
        from harness.search import outcome, space, study

        self.s = self._settings()
        outcome.check_objectives(self.s.objectives, self.s.directions)
        self.objectives = list(self.s.objectives)
        self.sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        # Every worker writes it at start: atomically, so a reader never sees two workers' writes interleaved.
        atomic_write(self.sweep_dir / "multirun.yaml", lambda f: f.write(OmegaConf.to_yaml(self.config)))

        self.space, self.base_overrides = space.SearchSpace.build(
            OmegaConf.to_container(self.s.params, resolve=True), arguments, self.s.custom_search_space
        )
        self.grid = self.s.sampler.name == "grid"
        if self.grid:
            self.space.grid()  # fails now, with the offending key, when the space is not finite
        self.validate_batch_is_legal([self.base_overrides])  # a typo fails here, not in every trial

        self.storage_url = self.s.storage or study.default_storage(self.sweep_dir)
        self.storage = study.open_storage(
            self.storage_url,
            heartbeat_interval=int(self.s.heartbeat_interval),
            grace_period=self.s.grace_period,
            retry_stale=int(self.s.retry_stale),
        )
        self.study = study.open_study(self.s.study_name, self.storage, list(self.s.directions))
        self.study_id = self.storage.get_study_id_from_name(self.s.study_name)
        # Written on each trial this worker runs: a rerun on this machine sees at once that it died.
        self.owner = study.owner_note()
        existing = len(self.study.get_trials(deepcopy=False))
        self.study.sampler = study.make_sampler(
            self.s.sampler,
            seed=study.sampler_seed(self.s.sampler.seed, existing),
            conditional=self.space.custom is not None,
        )
        pruner = OmegaConf.to_container(self.s.pruner, resolve=True)
        if len(self.objectives) > 1 and pruner["name"] != "none":
            print(
                f"search: Optuna cannot prune multi-objective trials ({len(self.objectives)} objectives): "
                "pruner off"
            )
            pruner["name"] = "none"
        # Jobs read the pruner and the objectives from the study: a job on another machine needs only the URL.
        self.study.set_user_attr(study.ATTR_KEY, {"pruner": pruner, "objectives": self.objectives})
        self._fail_dead_workers()
        return pruner

    def _settings(self):
        from harness.errors import ConfigError
        from hydra_plugins.freezelab_optuna.config import SearchConf

        if self.search_cfg is None:
            raise ConfigError(
                "the freezelab_optuna sweeper reads its settings from a search preset: "
                "run `python -m harness.train -m search=<name>` (presets: conf/search/)"
            )
        return OmegaConf.merge(OmegaConf.structured(SearchConf), self.search_cfg)

    def _slots(self) -> int:
        """Trials in flight at once in this process: search.n_jobs, else what the launcher runs in parallel
        (joblib's n_jobs, SLURM's array_parallelism), never more than the trials left to run."""
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        from harness.search.study import counted

        if isinstance(self.launcher, BasicLauncher):
            if self.s.n_jobs and self.s.n_jobs > 1:
                print(
                    "search: the basic launcher runs jobs in this process, one at a time: n_jobs=1 "
                    "(use hydra/launcher=joblib, or start more workers on the same study)"
                )
            return 1
        slots = 1
        joblib_cfg = getattr(self.launcher, "joblib", None)
        submitit_params = getattr(self.launcher, "params", None)
        if self.s.n_jobs:
            slots = int(self.s.n_jobs)
        elif joblib_cfg is not None:
            from joblib import effective_n_jobs

            slots = effective_n_jobs(int(joblib_cfg.get("n_jobs", -1)))
        elif isinstance(submitit_params, dict) and submitit_params.get("array_parallelism"):
            slots = int(submitit_params["array_parallelism"])
        left = self.s.n_trials - counted(self.study.get_trials(deepcopy=False))
        return max(1, min(slots, left))

    def _run_slots(self, n_jobs: int) -> None:
        if n_jobs == 1:
            self._slot()
            return
        errors: list[BaseException] = []

        def slot() -> None:
            try:
                self._slot()
            except BaseException as e:  # a bug in a slot stops every slot, and is raised in the main thread
                with self.lock:
                    self.stop_reason = self.stop_reason or f"error: {e}"
                errors.append(e)

        threads = [threading.Thread(target=slot, name=f"search-slot-{i}", daemon=True) for i in range(n_jobs)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(timeout=0.5)  # short joins keep the main thread responsive to Ctrl-C
        except KeyboardInterrupt:
            with self.lock:
                self.stop_reason = "interrupted"
            raise
        if errors:
            raise errors[0]

    def _slot(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            ret, error = self._launch(job)
            self._finish(job, ret, error)

    # ------------------------------------------------------------------------------------------- ask

    def _next_job(self) -> Job | None:
        from harness.search import study as studies

        with self.lock:
            while self.stop_reason is None:
                # Workers of one study take turns from counting its trials to the new trial's parameters:
                # n_trials is never overshot, and no two workers take the same grid point.
                with studies.ask_lock(self.storage_url, self.s.study_name, self.storage):
                    job = self._ask()
                if job is not None:
                    return job
        return None

    def _ask(self) -> Job | None:
        """One trial to run, or None: the study is done (``stop_reason`` says why) or the sampler proposed a
        point already tried (answered from the study; the caller asks again)."""
        from harness.search import study as studies

        self._fail_dead_workers()
        trials = self.study.get_trials(deepcopy=False)
        if studies.counted(trials) >= self.s.n_trials:
            self.stop_reason = f"the study has its {self.s.n_trials} trials"
            return None
        size = self.space.size
        if size is not None and len({_key(t.params) for t in studies.tried(trials)}) >= size:
            self.stop_reason = f"all {size} points of the space are tried"
            return None
        if self.grid:
            point = studies.untried_grid_point(self.space, trials)
            if point is None:
                self.stop_reason = "every grid point is tried or running"
                return None
            self.study.enqueue_trial(point)
        with studies.quiet():
            trial = self.study.ask()
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)
        self.storage.set_trial_system_attr(trial_id, studies.OWNER_KEY, self.owner)
        self.heartbeat.add(trial_id)
        try:
            values = self.space.suggest(trial, self.config)
        except Exception as e:
            self._tell(trial, "FAIL", reason=f"suggesting parameters failed: {type(e).__name__}: {e}")
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

    def _answer_duplicate(self, trial, trial_id: int, earlier) -> None:
        """The sampler proposed a point already tried (a small discrete space, or a resumed study): tell the
        earlier result again instead of training the same run twice."""
        original = earlier.user_attrs.get("duplicate_of", earlier.number)
        attrs = {k: v for k, v in earlier.user_attrs.items() if k not in ("duplicate_of",)}
        # Its result (and folder) is the earlier trial's; it trained nothing itself.
        attrs.update({"duplicate_of": original, "epochs": 0, "seconds": 0.0})
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        self._tell(trial, earlier.state.name, values=earlier.values, reason=earlier.user_attrs.get("reason"))
        self.heartbeat.discard(trial_id)
        self.duplicates_in_a_row += 1
        print(
            f"[trial {trial.number}] same point as trial {original}: its result is reused, nothing runs",
            flush=True,
        )
        if self.duplicates_in_a_row >= self.s.max_duplicates:
            self.stop_reason = (
                f"the sampler proposed {self.duplicates_in_a_row} tried points in a row: "
                "the space looks exhausted"
            )

    def _prepare(self, trial, trial_id: int, values: list[str]) -> Job:
        rerun = self.base_overrides + values
        overrides = rerun + [
            f"trial.number={trial.number}",
            f"trial.study={_quote(self.s.study_name)}",
            f"trial.storage={_quote(self.storage_url)}",
        ]
        folder = self._job_folder(trial.number)
        previous = folder / "result.json"
        if previous.exists():  # left by another study that used this folder: keep it, out of the way
            previous.rename(folder / f"result.json.replaced-{int(time.time())}")
        trial.set_user_attr("folder", str(folder))
        trial.set_user_attr("overrides", rerun)
        job = Job(trial, trial_id, overrides, rerun, folder)
        self.in_flight[trial.number] = job
        return job

    def _job_folder(self, number: int) -> Path:
        """The folder Hydra will give job ``number`` (hydra.sweep.subdir resolved with that job number)."""
        cfg = copy.deepcopy(self.config)
        with open_dict(cfg):
            cfg.hydra.job.num = number
            cfg.hydra.job.id = f"{cfg.hydra.job.name}_{number}"
        return self.sweep_dir / str(cfg.hydra.sweep.subdir)

    # ---------------------------------------------------------------------------------------- launch

    def _launch(self, job: Job) -> tuple[JobReturn | None, BaseException | None]:
        try:
            returns = self.launcher.launch([job.overrides], initial_job_idx=job.number)
            return returns[0], None
        except KeyboardInterrupt:
            raise
        except Exception as e:  # a worker process killed (out of memory), a failed SLURM job, a bad override
            return None, e

    # ------------------------------------------------------------------------------------------ tell

    def _finish(self, job: Job, ret: JobReturn | None, error: BaseException | None) -> None:
        from harness.search.outcome import Outcome, read_outcome

        if ret is not None:
            folder = _output_dir(ret) or job.folder
            # Keep the return without its two full configs (~0.25 MB a trial): a 1,000-trial search in one
            # process would otherwise hold every job's config until it ends (python -m benchmarks.soak).
            ret.cfg = ret.hydra_cfg = None
            self.returns.append(ret)
        else:
            folder = job.folder
        result = read_outcome(folder, self.objectives, number=job.number, study=self.s.study_name)
        if error is not None and result.state == "FAIL":
            result = Outcome(
                "FAIL", reason=f"the launcher failed: {type(error).__name__}: {error}", attrs=result.attrs
            )
        elif ret is not None and ret.status == JobStatus.FAILED and result.state == "FAIL":
            e = ret._return_value
            result = Outcome("FAIL", reason=f"{type(e).__name__}: {e}", attrs=result.attrs)
        with self.lock:
            for key, value in result.attrs.items():
                job.trial.set_user_attr(key, value)
            if str(folder) != str(job.folder):
                job.trial.set_user_attr("folder", str(folder))
            self._tell(job.trial, result.state, values=result.values, reason=result.reason)
            self.heartbeat.discard(job.trial_id)
            self.in_flight.pop(job.number, None)
            if result.state == "FAIL":
                self.failures += 1
                if self.s.max_failures is not None and self.failures >= self.s.max_failures:
                    self.stop_reason = (
                        f"max_failures: {self.failures} trials failed in this worker (search.max_failures="
                        f"{self.s.max_failures}); last: trial {job.number}: {result.reason}"
                    )
            self._print_trial(job, result, time.perf_counter() - job.started)
            self._write_outputs()

    def _tell(self, trial, state: str, *, values=None, reason: str | None = None) -> None:
        import optuna
        from optuna.trial import TrialState

        if reason is not None:
            trial.set_user_attr("reason", reason)
        try:
            if state == "COMPLETE":
                self.study.tell(trial, values)
            else:
                self.study.tell(trial, state=TrialState[state])
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker declared this trial stale meanwhile (a heartbeat interval too short for this
            # machine's load?): its FAIL stands, the job's result is in its folder.
            print(f"[trial {trial.number}] was already finished in the study (marked stale); result not told")

    def _abandon_in_flight(self) -> None:
        """On Ctrl-C or an error: trials this process launched and will never tell become FAIL now,
        rather than RUNNING until the stale check catches them."""
        with self.lock:
            for job in list(self.in_flight.values()):
                self._tell(
                    job.trial, "FAIL", reason=f"its sweeper stopped: {self.stop_reason or 'interrupted'}"
                )
                self.heartbeat.discard(job.trial_id)
            self.in_flight.clear()

    # --------------------------------------------------------------------------------------- reports

    def _fail_dead_workers(self) -> None:
        """Trials left RUNNING by a dead worker become FAIL (and are queued again, search.retry_stale): at once
        when the worker ran on this machine, else once its heartbeats have stopped for the grace period."""
        from harness.search import study as studies

        again = f" and queued again (search.retry_stale={self.s.retry_stale})" if self.s.retry_stale else ""
        for t in studies.fail_dead_owned(self.study, int(self.s.retry_stale)):
            note = t.system_attrs[studies.OWNER_KEY]
            print(
                f"[trial {t.number}] was left RUNNING by worker pid {note['pid']} on this machine, which is "
                f"no longer running: marked FAIL{again}",
                flush=True,
            )
        for t in studies.fail_stale(self.study):
            print(
                f"[trial {t.number}] was left RUNNING by a worker that stopped sending heartbeats: "
                f"marked FAIL{again}",
                flush=True,
            )

    def _print_trial(self, job: Job, result, seconds: float) -> None:
        if result.state == "COMPLETE":
            what = ", ".join(f"{o} {v:.4f}" for o, v in zip(self.objectives, result.values, strict=True))
        elif result.state == "PRUNED":
            what = result.reason or f"after epoch {result.attrs.get('stopped_epoch')}"
        else:
            what = result.reason
        params = " ".join(job.rerun[len(self.base_overrides) :])
        print(f"[trial {job.number}] {result.state} {what} ({seconds:.1f} s) {params}", flush=True)

    def _write_outputs(self, final: bool = False) -> None:
        from harness.search.outputs import write_outputs

        try:
            paths = write_outputs(self.study, self.objectives, self.sweep_dir, self.storage_url)
        except (
            Exception
        ) as e:  # a table that cannot be written must not lose the study (it is in the storage)
            print(
                f"search: could not write the trials table / best.yaml: {type(e).__name__}: {e}", flush=True
            )
            return
        if final:
            self._print_summary(paths)

    def _print_summary(self, paths: dict) -> None:
        from optuna.trial import TrialState

        from harness.search.outputs import best_document

        trials = self.study.get_trials(deepcopy=False)
        states = {s.name: sum(1 for t in trials if t.state == s) for s in TrialState}
        counts = ", ".join(f"{n} {s.lower()}" for s, n in states.items() if n)
        print(
            f"search '{self.s.study_name}' stopped: {self.stop_reason or 'done'}; "
            f"{len(trials)} trials: {counts}"
        )
        doc = best_document(self.study, self.objectives, self.storage_url)
        if doc is None:
            print("no trial completed: no best.yaml")
        else:
            values = ", ".join(f"{k} {v:.4f}" for k, v in doc["values"].items())
            print(f"best trial: {doc['trial']} ({values}) in {doc['folder']}")
            print(f"  params: {' '.join(f'{k}={v}' for k, v in doc['params'].items())}")
            print(f"best.yaml: {paths.get('best')}")
            print(f"re-run: {doc['command']}")
        print(f"trials table: {paths['table']}", flush=True)


def _key(params: dict) -> tuple:
    return tuple(sorted((k, type(v).__name__, v) for k, v in params.items()))


def _output_dir(ret: JobReturn) -> str | None:
    try:
        return str(ret.hydra_cfg.hydra.runtime.output_dir)
    except Exception:
        return None


def _quote(text: str) -> str:
    """A string as one quoted Hydra override value (URLs hold ':', '/', '?', '=' and '@')."""
    if "'" not in text:
        return f"'{text}'"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
