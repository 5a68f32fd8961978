"""Typed config of the freezelab Optuna sweeper, registered in Hydra's ConfigStore.

Hydra imports every module under ``hydra_plugins`` at start-up, so this module stays light: dataclasses
only, no optuna. Two nodes are registered:

- ``freezelab_search_schema`` (no group): the ``search`` node every ``conf/search/*.yaml`` preset extends
  with ``- /freezelab_search_schema@search``. A misspelt key or a wrong type fails at composition, before
  any trial runs. The user-facing settings live here (``search.n_trials=40`` on the command line);
- ``hydra/sweeper/freezelab_optuna_schema``: the sweeper node itself (``_target_`` plus the ``search``
  node it reads); ``conf/hydra/sweeper/freezelab_optuna.yaml`` extends it.
"""

# No ``from __future__ import annotations`` here: Hydra's plugin scan executes this module without
# registering it in sys.modules, and dataclasses then cannot resolve string annotations.
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
DIRECTIONS = ("maximize", "minimize")
# What a trial may be judged on: keys of the record's ``metrics`` (last epoch unless named best_*) or its
# ``timing``. Test metrics are left out on purpose: choosing hyper-parameters on the test set leaks it.
OBJECTIVES = ("val_acc", "best_val_acc", "val_loss", "seconds", "train_seconds")


@dataclass
class SamplerConf:
    name: str = "tpe"  # tpe | random | grid (grid needs a finite space: choice/range only)
    seed: int | None = None  # null: a fresh seed per worker process; an int: reproducible one-worker searches
    n_startup_trials: int = 8  # tpe: random trials before TPE starts modelling the space
    multivariate: bool = True  # tpe: model parameters jointly (and conditional spaces, group=True)


@dataclass
class PrunerConf:
    name: str = "median"  # median | hyperband | none
    n_startup_trials: int = 4  # median: finished trials needed before anything is pruned
    n_warmup_steps: int = 1  # median: epochs every trial runs before it can be pruned
    interval_steps: int = 1  # median: check every n epochs
    min_resource: int = 1  # hyperband: epochs of the smallest rung
    max_resource: Any = "auto"  # hyperband: epochs of a full trial, or auto (from the first finished trial)
    reduction_factor: int = 3  # hyperband: keep 1/reduction_factor of the trials at each rung


@dataclass
class SearchConf:
    study_name: str = "search"
    storage: str | None = None  # any SQLAlchemy URL; null: sqlite:///<hydra.sweep.dir>/study.db
    n_trials: int = 20  # total over all runs of the command and all workers of the study (resume counts)
    n_jobs: int | None = None  # trials in flight here; null: joblib n_jobs, SLURM array_parallelism, else 1
    objectives: list[str] = field(default_factory=lambda: ["val_acc"])
    directions: list[str] = field(default_factory=lambda: ["maximize"])
    sampler: SamplerConf = field(default_factory=SamplerConf)
    pruner: PrunerConf = field(default_factory=PrunerConf)
    # Search space in Hydra's sweep syntax (harness/search/space.py): interval(a, b),
    # tag(log, interval(a, b)), tag(int, interval(a, b)), choice(x, y, ...) or x,y,...,
    # range(start, stop[, step]) (stop excluded). A plain value fixes the key.
    params: dict[str, Any] = field(default_factory=dict)
    # Dotted path of a function ``(trial, cfg) -> dict[str, str] | None`` that suggests more parameters (a
    # conditional space); see harness.search.space.conditional_params, which reads ``conditional`` below.
    custom_search_space: str | None = None
    # {param: {value: {key: sweep}}}: parameters suggested only when ``param`` took ``value``.
    conditional: dict[str, Any] = field(default_factory=dict)
    max_failures: int | None = 5  # stop this worker after this many FAIL trials (null: never)
    # run a trial left RUNNING by a dead worker again, up to this many times (its job resumes from the run's
    # checkpoint, so a killed search loses at most an epoch)
    retry_stale: int = 1
    heartbeat_interval: int = 60  # seconds between heartbeats of a running trial (stale detection)
    grace_period: int | None = (
        None  # seconds without heartbeat before a RUNNING trial is stale; null: 2x interval
    )
    max_duplicates: int = 20  # stop when the sampler proposes this many already-tried points in a row


@dataclass
class FreezelabOptunaSweeperConf:
    _target_: str = "hydra_plugins.freezelab_optuna.sweeper.FreezelabOptunaSweeper"
    search: Any = None  # the `search` node of the main config (set by a conf/search preset)


ConfigStore.instance().store(name="freezelab_search_schema", node=SearchConf, provider="freezelab")
ConfigStore.instance().store(
    group="hydra/sweeper",
    name="freezelab_optuna_schema",
    node=FreezelabOptunaSweeperConf,
    provider="freezelab",
)
