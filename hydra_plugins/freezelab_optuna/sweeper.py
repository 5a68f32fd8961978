"""The freezelab Optuna sweeper: Hydra's side of a search, adapting Hydra to :mod:`harness.search.worker`.

The search itself (ask -> launch -> tell per free slot, pruning, FAIL-and-continue, resume, dead workers,
heartbeats, outputs) is the Hydra-free worker. This adapter reads ``search.*`` and the command line's sweeps,
writes ``multirun.yaml``, turns the configured launcher into the worker's launch function (one job per call),
says how many jobs the launcher runs at once, and turns errors into exit codes.

Heavy imports (optuna, harness, torch through it) happen in :meth:`sweep`: Hydra imports this module on
every start-up while scanning plugins.
"""

import copy
import sys
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict


class FreezelabOptunaSweeper(Sweeper):
    def __init__(self, search: Any = None) -> None:
        self.search_cfg = search
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher = None
        self.sweep_dir: Path | None = None
        self.returns: list[JobReturn] = []

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        """Run this worker's share of the study; user errors end it with one line (exit 2), as in train."""
        from harness.errors import ConfigError
        from harness.search.worker import SearchStopped

        try:
            return self._sweep(arguments)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
        except SearchStopped as e:
            print(f"error: search stopped: {e}", file=sys.stderr, flush=True)
            sys.exit(1)

    def _sweep(self, arguments: list[str]) -> Any:
        from harness.atomic import atomic_write
        from harness.search import worker
        from harness.search.space import SearchSpace

        search = self._search()
        self.sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        settings = worker.Settings.from_search(search, sweep_dir=self.sweep_dir)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        # Every worker writes it at start: atomically, so a reader never sees two workers' writes interleaved.
        atomic_write(self.sweep_dir / "multirun.yaml", lambda f: f.write(OmegaConf.to_yaml(self.config)))

        space, base_overrides = SearchSpace.build(search["params"], arguments, search["custom_search_space"])
        if settings.grid:
            space.grid()  # fails now, with the offending key, when the space is not finite
        self.validate_batch_is_legal([base_overrides])  # a typo fails here, not in every trial

        study, storage = worker.open_search(settings, conditional=space.custom is not None)
        search_worker = worker.Worker(
            study,
            storage,
            space,
            settings,
            self._launch,
            base_overrides=base_overrides,
            job_folder=self._job_folder,
            space_cfg=self.config,
            cancel=_scancel if _is_slurm(self.launcher) else None,
        )
        search_worker.run(self._slots(search))
        return [self.returns]

    def _search(self) -> dict:
        """``search.*`` checked against its schema (config.py) and resolved to plain data."""
        from harness.errors import ConfigError
        from hydra_plugins.freezelab_optuna.config import SearchConf

        if self.search_cfg is None:
            raise ConfigError(
                "the freezelab_optuna sweeper reads its settings from a search preset: "
                "run `python -m harness.train -m search=<name>` (presets: conf/search/)"
            )
        merged = OmegaConf.merge(OmegaConf.structured(SearchConf), self.search_cfg)
        return OmegaConf.to_container(merged, resolve=True)

    def _slots(self, search: dict) -> int:
        """Trials in flight at once in this process: search.n_jobs, else what the launcher runs in parallel
        (joblib's n_jobs, SLURM's array_parallelism); the worker never runs more than the trials left."""
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        n_jobs = int(search["n_jobs"] or 0)
        if isinstance(self.launcher, BasicLauncher):
            if n_jobs > 1:
                print(
                    "search: the basic launcher runs jobs in this process, one at a time: n_jobs=1 "
                    "(use hydra/launcher=joblib, or start more workers on the same study)"
                )
            return 1
        joblib_cfg = getattr(self.launcher, "joblib", None)
        submitit_params = getattr(self.launcher, "params", None)
        if n_jobs:
            return n_jobs
        if joblib_cfg is not None:
            from joblib import effective_n_jobs

            return effective_n_jobs(int(joblib_cfg.get("n_jobs", -1)))
        if isinstance(submitit_params, dict) and submitit_params.get("array_parallelism"):
            return int(submitit_params["array_parallelism"])
        return 1

    def _launch(self, job) -> Any:
        """The worker's launch function: one job through Hydra's launcher, in the folder Hydra gives it."""
        from harness.search.worker import Launched

        try:
            ret = self.launcher.launch([list(job.overrides)], initial_job_idx=job.number)[0]
        except Exception as e:
            raise _lost(e) or e from None
        folder = _output_dir(ret)
        # Keep the return without its two full configs (~0.25 MB a trial): a 1,000-trial search in one
        # process would otherwise hold every job's config until it ends (python -m benchmarks.soak).
        ret.cfg = ret.hydra_cfg = None
        self.returns.append(ret)  # list.append is atomic: slots may finish together
        return Launched(folder=folder, error=ret._return_value if ret.status == JobStatus.FAILED else None)

    def _job_folder(self, number: int) -> Path:
        """The folder Hydra will give job ``number`` (hydra.sweep.subdir resolved with that job number)."""
        cfg = copy.deepcopy(self.config)
        with open_dict(cfg):
            cfg.hydra.job.num = number
            cfg.hydra.job.id = f"{cfg.hydra.job.name}_{number}"
        return self.sweep_dir / str(cfg.hydra.sweep.subdir)


def _is_slurm(launcher) -> bool:
    return type(launcher).__name__ == "SlurmLauncher"


def _lost(error: Exception):
    """A submitit job that ended without a result because it was stopped from outside (cancelled, its node
    failed, out of time with no requeue left), as the worker's JobLost; None for anything else."""
    from harness.search.worker import JobLost

    try:
        from submitit.core.utils import FailedJobError, UncompletedJobError
    except ImportError:
        return None
    text = str(error)
    if isinstance(error, UncompletedJobError) or (
        isinstance(error, FailedJobError) and "UncompletedJobError" in text
    ):
        state = text.split("(state: ", 1)[1].split(")", 1)[0] if "(state: " in text else None
        first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        return JobLost(f"SLURM job state {state}: {first}" if state else first)
    return None


def _scancel(job, note) -> None:
    """Cancel the SLURM job a trial's job note names (the worker's ``cancel``)."""
    import subprocess

    if note.get("slurm_job"):
        subprocess.run(["scancel", str(note["slurm_job"])], capture_output=True, timeout=60)


def _output_dir(ret: JobReturn) -> str | None:
    try:
        return str(ret.hydra_cfg.hydra.runtime.output_dir)
    except Exception:
        return None
