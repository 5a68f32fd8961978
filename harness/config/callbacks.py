"""Hydra callbacks of the harness (``hydra.callbacks`` in conf/config.yaml).

- :class:`CheckConfig` refuses a grid preset or a search run without ``-m`` (Hydra would run one job of it and
  exit 0), and checks a multirun's config against the schema (:mod:`harness.config.schema`) before its
  first job: a key no code reads (``-m +epoch=3 seed=0,1``) or a bad value that every job shares is one line
  and exit code 2, not one failed record per job. What a sweep varies is checked in each job, whose record
  then says why it failed while the sweep goes on (``harness.train.main``).
- :class:`CheckOutputFolders` runs before Hydra makes the first job folder: an output root or checkpoint folder
  that cannot be written becomes one line and exit code 2, instead of Hydra's traceback from ``mkdir``.
"""

from __future__ import annotations

import sys

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.atomic import check_writable
from harness.config.schema import check_config
from harness.errors import ConfigError


def _exit_with(error: ConfigError) -> None:
    print(f"error: {error}", file=sys.stderr, flush=True)
    sys.exit(2)


class CheckConfig(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        # A single run is checked by train() itself, at its start.
        try:
            check_config(config)
        except ConfigError as e:
            _exit_with(e)

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        problem = needs_multirun(config)
        if problem:
            _exit_with(ConfigError(problem))


def needs_multirun(config: DictConfig) -> str | None:
    """Why this config is a sweep that a plain run would silently cut to one job (a grid preset, a search),
    or None. Without ``-m`` Hydra runs the config once and ignores the sweep."""
    hydra = config.get("hydra") or {}
    sweeper = hydra.get("sweeper") or {}
    overrides = list((hydra.get("overrides") or {}).get("task") or [])
    command = " ".join(["python -m harness.train -m", *overrides])
    if "freezelab_optuna" in str(sweeper.get("_target_", "")):
        return f"this is an Optuna search, which runs as a multirun: add -m ({command})"
    params = sweeper.get("params") or {}
    if params:
        return (
            f"this preset is a grid over {', '.join(params)}, which runs as a multirun: add -m ({command}); "
            "for one job of it use transfer=yosinski and its keys without the preset"
        )
    return None


class CheckOutputFolders(Callback):
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config)

    @staticmethod
    def _check(config: DictConfig) -> None:
        # The stable folders only: the job folders are named by the clock, and Hydra makes those itself.
        try:
            check_writable(config.paths.output_root, "paths.output_root")
            check_writable(config.checkpoint.dir, "checkpoint.dir")
        except ConfigError as e:
            _exit_with(e)
