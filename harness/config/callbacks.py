"""Hydra callbacks of the harness (``hydra.callbacks`` in conf/config.yaml).

- :class:`CheckConfig` checks a multirun's config against the schema (:mod:`harness.config.schema`) before its
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
