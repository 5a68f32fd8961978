"""``python -m harness.train``: one run (or, with ``-m``, a Hydra multirun of them).

One run, top to bottom: config -> (transfer plan: bases fetched or trained) -> data -> model + layer groups
-> freeze plan -> loop -> result record. :func:`train` is an ordinary function of a composed config (tests
call it directly); :func:`main` only wraps it for Hydra and turns user errors into one line and exit code 2.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from harness import record
from harness.config.cli import run_entry_point
from harness.config.compose import CONF_DIR as CONF_PATH
from harness.config.schema import check_config
from harness.console import percent
from harness.engine.preempt import requeue_on_signal
from harness.errors import ConfigError

# An absolute path: Hydra resolves a relative one against the package when the app is not __main__.
CONF_DIR = str(CONF_PATH)


def train(cfg: DictConfig, output_dir: str | Path) -> dict:
    """Train one run as ``cfg`` says, write ``output_dir/result.json`` and return the record.

    A transferability treatment (``transfer.treatment``) becomes the ordinary run it is once its bases exist
    (:func:`harness.runner.prepare`); its record gets a ``transfer`` section. Every key of ``cfg`` is checked
    first (:mod:`harness.config.schema`), so bad input fails before anything trains, a base included.
    """
    check_config(cfg)
    # Imported once the config passed: torch takes seconds to import, and bad input gets its line without it.
    from harness.runner import prepare, run_job

    run_cfg, extra = prepare(cfg)
    return run_job(run_cfg, output_dir, extra)


def discard_unused_folder(folder: Path) -> None:
    """A run rejected before it started leaves no folder behind: Hydra made it (with only its own ``.hydra``
    notes) for a run that never was, and a folder without a record reads as a job that died."""
    if folder.is_dir() and {p.name for p in folder.iterdir()} <= {".hydra"}:
        shutil.rmtree(folder, ignore_errors=True)
        try:
            folder.parent.rmdir()  # the day's folder, if this was its only run
        except OSError:
            pass


def _output_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir


def _warning_s() -> float | None:
    """How long before the kill SLURM's warning signal comes (hydra.launcher.signal_delay_s), if known."""
    from hydra.core.hydra_config import HydraConfig

    value = (HydraConfig.get().get("launcher") or {}).get("signal_delay_s")
    return float(value) if value else None


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    output_dir = _output_dir()
    try:
        # In a SLURM job: a preemption signal checkpoints and stops the run, and the job is requeued to
        # continue it (harness/engine/preempt.py); elsewhere this does nothing.
        with requeue_on_signal(_warning_s()):
            result = train(cfg, output_dir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        if _is_multirun():  # this job is bad; the other jobs of the sweep still run, and its record says why
            config = OmegaConf.to_container(cfg, resolve=False)
            config.pop("hydra", None)
            failed = record.failed_before_training(config, f"ConfigError: {e}")
            record.write_json_atomic(Path(output_dir) / record.RECORD_NAME, failed)
            return None
        discard_unused_folder(Path(output_dir))
        sys.exit(2)
    metrics = result["metrics"]
    lines = [
        f"{result['status']}: val_acc {percent(metrics['val_acc'])}, test_acc {percent(metrics['test_acc'])}"
    ]
    if result.get("checkpoint"):  # what `init.from=` takes to start another run from this one
        lines.append(f"checkpoint: {result['checkpoint']}")
    lines.append(f"result: {os.path.join(output_dir, record.RECORD_NAME)}")
    print("\n".join(lines), flush=True)
    if result["status"] == "failed" and not _is_multirun():
        print(f"error: run failed: {result['reason']}", file=sys.stderr, flush=True)
        sys.exit(1)
    return result["metrics"]["val_acc"]


if __name__ == "__main__":
    # Run the task function of the importable module, not of __main__: process-pool launchers (joblib,
    # submitit) pickle it, and a function of __main__ is pickled by value with all of torch behind it.
    from harness.train import main as importable_main

    run_entry_point(importable_main)
