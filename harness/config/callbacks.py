"""Hydra callbacks of the harness (``hydra.callbacks`` in conf/config.yaml).

:class:`CheckOutputFolders` runs before Hydra makes the first job folder: an output root or checkpoint folder
that cannot be written becomes one line and exit code 2, instead of Hydra's traceback from ``mkdir``.
"""

from __future__ import annotations

import sys

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.atomic import check_writable
from harness.errors import ConfigError


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
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
