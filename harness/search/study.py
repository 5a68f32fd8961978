"""The study: where it is stored, how sweepers and jobs open it, and the bookkeeping of a resumable search.

One storage (a SQLAlchemy URL) holds the study; any number of sweeper processes on any machines ask it
for trials, and every job re-attaches to its own trial through it to report validation accuracy. Nothing
else is shared between workers, so none of them waits for another.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import time
import warnings
import zlib
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from filelock import FileLock
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState

from harness.errors import ConfigError

if (
    TYPE_CHECKING
):  # space.py parses Hydra's sweep syntax: the worker, which imports this module, stays Hydra-free
    from harness.search.space import SearchSpace

STORAGE_NAME = "study.db"
OPEN_ATTEMPTS = 5
ATTR_KEY = "freezelab"  # study user attribute: what jobs need to know about the search (pruner, objectives)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
OWNER_KEY = "freezelab_owner"  # trial system attribute: the worker process that runs it (host, pid, start)
# trial system attribute: the job training it (host, pid, SLURM job id) and whether that job beats for it now
JOB_KEY = "freezelab_job"


def job_beats(storage, trial_id: int) -> bool:
    """Whether the trial's job sends its heartbeats itself now (it runs; harness/search/trial_hook.py)."""
    note = storage.get_trial_system_attrs(trial_id).get(JOB_KEY) or {}
    return bool(note.get("beating"))


@contextmanager
def quiet():
    """Silence Optuna's warnings about experimental features we rely on on purpose (heartbeats, TPE options)
    and about heartbeats outside ``Study.optimize``: the sweeper records them itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


def default_storage(sweep_dir: str | Path) -> str:
    """SQLite next to the sweep's outputs: ``sqlite:///<sweep dir>/study.db`` (absolute, so jobs find it)."""
    return f"sqlite:///{Path(sweep_dir).resolve() / STORAGE_NAME}"


def redact(url: str) -> str:
    """The URL with its password hidden, for logs and records."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy understands: show it as it is (it has no password then)
        return url


def open_storage(
    url: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None, retry_stale: int = 0
) -> optuna.storages.RDBStorage:
    """An RDB storage for ``url``. With ``heartbeat_interval``, RUNNING trials whose heartbeat stopped
    (a killed worker) can be failed, and re-queued ``retry_stale`` times."""
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(
                    f"search.storage='{url}': cannot create its folder {Path(path).parent} ({e.strerror}); "
                    "choose a writable folder (paths.output_root) or another storage URL"
                ) from None
        # Sweepers and jobs (which report every epoch) write the same file: wait for SQLite's lock
        # instead of failing with "database is locked".
        engine_kwargs["connect_args"] = {"timeout": 120}
    else:
        engine_kwargs["pool_pre_ping"] = True  # a server may drop idle connections during long trials
    callback = None
    if retry_stale:

        def callback(study: optuna.Study, trial: FrozenTrial) -> None:
            requeue(study, trial, retry_stale)

    for attempt in range(OPEN_ATTEMPTS):
        with quiet():
            try:
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=callback,
                )
            except ImportError as e:
                raise ConfigError(
                    f"search.storage='{redact(url)}': no database driver for it ({e})"
                ) from None
            except Exception as e:
                if not type(e).__module__.startswith("sqlalchemy"):
                    raise
                # Workers started together on a new storage race to create its tables (a unique-constraint
                # error on alembic_version, a lock): the loser finds them made when it tries again. Anything
                # else (a server that does not answer, a wrong password, an unwritable file) will not mend.
                if attempt == OPEN_ATTEMPTS - 1 or not _a_race(e):
                    raise ConfigError(
                        f"search.storage='{redact(url)}' cannot be opened: {_first_line(e)}"
                    ) from None
                time.sleep(0.5 * (attempt + 1) + random.random())


def _a_race(error: Exception) -> bool:
    text = str(error).lower()
    return type(error).__name__ == "IntegrityError" or "locked" in text or "already exists" in text


def _first_line(error: Exception) -> str:
    """The database's own complaint, without SQLAlchemy's statement dump and background link."""
    cause = getattr(error, "orig", None) or error
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


def open_study(
    name: str, storage, directions: list[str], *, sampler=None, pruner=None, create: bool = True
) -> optuna.Study:
    """Create the study or load it (resume); its stored directions must match ``directions``."""
    with quiet():
        if create:
            study = optuna.create_study(
                study_name=name,
                storage=storage,
                directions=directions,
                sampler=sampler,
                pruner=pruner,
                load_if_exists=True,
            )
        else:
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    stored = [d.name.lower() for d in study.directions]
    if create and stored != list(directions):
        raise ConfigError(
            f"study '{name}' exists with directions {stored}, not {list(directions)}: "
            f"use another search.study_name or the same objectives"
        )
    return study


def make_sampler(conf: Mapping, *, seed: int | None, conditional: bool) -> optuna.samplers.BaseSampler:
    """The sampler named by ``search.sampler`` (grid uses a random sampler under enqueued points)."""
    name = conf["name"]
    with quiet():
        if name == "tpe":
            multivariate = bool(conf.get("multivariate", True))
            return optuna.samplers.TPESampler(
                n_startup_trials=int(conf.get("n_startup_trials", 8)),
                multivariate=multivariate,
                group=multivariate and conditional,  # conditional spaces: model each group of params apart
                constant_liar=True,  # parallel workers: running trials count as bad, so workers spread out
                seed=seed,
            )
        if name in ("random", "grid"):
            return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"search.sampler.name={name!r}; choose one of: tpe, random, grid")


def sampler_seed(seed: int | None, n_existing: int) -> int | None:
    """A resumed study must not replay its first random points: shift a fixed seed by the trials it holds.
    (None: every worker process draws its own seed, so parallel workers never replay each other.)"""
    return None if seed is None else int(seed) + 1_000_003 * n_existing


def make_pruner(conf: Mapping | None) -> optuna.pruners.BasePruner:
    conf = dict(conf or {})
    name = conf.get("name", "none")
    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=int(conf.get("n_startup_trials", 4)),
            n_warmup_steps=int(conf.get("n_warmup_steps", 1)),
            interval_steps=int(conf.get("interval_steps", 1)),
        )
    if name == "hyperband":
        max_resource = conf.get("max_resource", "auto")
        return optuna.pruners.HyperbandPruner(
            min_resource=int(conf.get("min_resource", 1)),
            max_resource=max_resource if max_resource == "auto" else int(max_resource),
            reduction_factor=int(conf.get("reduction_factor", 3)),
        )
    if name in ("none", None):
        return optuna.pruners.NopPruner()
    raise ConfigError(f"search.pruner.name={name!r}; choose one of: median, hyperband, none")


def retried_numbers(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of FAIL trials that a retry replaced (RetryHeartbeatStaleTrialCallback's retry_history)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def counted(trials: list[FrozenTrial]) -> int:
    """Trials that use up ``n_trials``: finished or running, a failed trial that was retried counting once."""
    retried = retried_numbers(trials)
    active = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return sum(
        1 for t in trials if t.state in active or (t.state == TrialState.FAIL and t.number not in retried)
    )


def tried(trials: list[FrozenTrial], *, exclude: int | None = None) -> list[FrozenTrial]:
    """Finished trials whose point need not run again (a failed trial that was retried is not one)."""
    retried = retried_numbers(trials)
    return [t for t in trials if t.state in FINISHED and t.number != exclude and t.number not in retried]


def same_point(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal parameters, types included (1 and True are different points)."""
    return a.keys() == b.keys() and all(type(a[k]) is type(b[k]) and a[k] == b[k] for k in a)


def find_tried(trials: list[FrozenTrial], params: Mapping, *, exclude: int) -> FrozenTrial | None:
    for t in tried(trials, exclude=exclude):
        if same_point(t.params, params):
            return t
    return None


def untried_grid_point(space: SearchSpace, trials: list[FrozenTrial]) -> dict | None:
    """The first point of the full grid that no trial holds yet (finished, running or queued)."""
    grid = space.grid()
    retried = retried_numbers(trials)
    taken = [t.params for t in trials if not (t.state == TrialState.FAIL and t.number in retried)]
    taken += [t.system_attrs.get("fixed_params", {}) for t in trials if t.state == TrialState.WAITING]
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values, strict=True))
        if not any(same_point(point, p) for p in taken):
            return point
    return None


def fail_stale(study: optuna.Study) -> list[FrozenTrial]:
    """Mark RUNNING trials whose worker stopped sending heartbeats as FAIL; return them as they are now."""
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if not before:
        return []
    with quiet():
        optuna.storages.fail_stale_trials(study)
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if t.number in before]


# --- dead workers on this machine ------------------------------------------------------------------------
# Heartbeats find a dead worker anywhere, but only after the grace period (minutes by default). A worker on
# this machine can be checked at once: the process that asked for the trial is gone. The process's start
# time is compared too, so a recycled pid is not mistaken for the worker.


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc, Linux), or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before ")" may hold spaces


def owner_note() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def owner_is_dead(note: Mapping | None) -> bool:
    """True only when sure: the trial's worker ran on this machine and that process no longer runs."""
    if not note or note.get("host") != socket.gethostname() or note.get("start") is None:
        return False
    return _start_time(int(note["pid"])) != note["start"]


def fail_dead_owned(study: optuna.Study, retry: int) -> list[FrozenTrial]:
    """Mark FAIL the RUNNING trials whose worker on this machine has died, and queue each again when ``retry``
    allows (as the heartbeat check does); return the trials this call failed. Two workers starting together
    may both find the same trial: only the one whose FAIL lands also queues the retry."""
    storage = study._storage
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        note = t.system_attrs.get(OWNER_KEY)
        if not owner_is_dead(note):
            continue
        reason = f"its worker (pid {note['pid']} on {note['host']}) died (killed?); marked FAIL"
        try:
            storage.set_trial_user_attr(t._trial_id, "reason", reason + (" and retried" if retry else ""))
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        frozen = storage.get_trial(t._trial_id)
        requeue(study, frozen, retry)
        failed.append(frozen)
    return failed


def requeue(study: optuna.Study, trial: FrozenTrial, max_retry: int) -> None:
    """Queue the point of a trial whose worker died as a new WAITING trial, at most ``max_retry`` times in all
    (``retry_history`` lists the trials it replaces, ``failed_trial`` the first). Like Optuna's
    RetryHeartbeatStaleTrialCallback, but the dead worker's owner note, its job's note and the failure reason
    are not copied: the worker that picks the retry up must not look dead for the moment before it writes its
    own note, nor take the dead job's "beating" for its own job's."""
    system = {k: v for k, v in trial.system_attrs.items() if k not in (OWNER_KEY, JOB_KEY)}
    history = [*system.get("retry_history", []), trial.number]
    if len(history) > max_retry:
        return
    study.add_trial(
        optuna.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={k: v for k, v in trial.user_attrs.items() if k != "reason"},
            system_attrs={"failed_trial": trial.number, **system, "retry_history": history},
        )
    )


# --- workers taking turns -----------------------------------------------------------------------------------


@contextmanager
def ask_lock(url: str, study_name: str, storage: optuna.storages.RDBStorage):
    """Held by one worker of a study at a time while it counts the trials and asks for the next one.

    SQLite: a file lock next to the database file. PostgreSQL: an advisory lock keyed by the study name (not a
    row lock on the study: Optuna's own trial creation takes that one). Other databases: no lock, and
    ``n_trials`` may be overshot by up to the number of workers less one.
    """
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if not path or path == ":memory:":
            yield
            return
        with FileLock(f"{path}.ask.lock"):
            yield
        return
    if not url.startswith("postgresql"):
        yield
        return
    from sqlalchemy import text

    key = zlib.crc32(study_name.encode())
    with storage.engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
