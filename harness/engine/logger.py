"""Weights & Biases logging as a hook: offline by default, so no account or network is ever needed.

``logger=wandb`` writes an offline run under ``<logger.dir>/wandb/offline-run-*``; ``wandb sync`` uploads it
later. ``logger.mode=online`` logs live when the user has a key. The result record on disk stays the
source of truth: wandb is a view of it.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.config import schema
from harness.engine.hooks import Hook


class WandbHook(Hook):
    def __init__(self, logger_cfg: dict, config: dict, run_id: str):
        logger_cfg = schema.check_values("logger", {"name": "wandb", **logger_cfg})
        mode = logger_cfg.get("mode", "offline")
        self.cfg, self.config, self.run_id, self.mode = logger_cfg, config, run_id, mode
        self.wandb_run = None
        self.reused = False

    def replay(self, record: dict) -> None:
        """A run that finished earlier and is reused: its stored history goes into a new wandb run, tagged
        ``reused``, so asking for a logger always gives a logged run (logging is not part of a run's identity)."""
        self.reused = True
        self.on_run_start(None)
        for entry in record.get("history") or []:
            self.on_epoch_end(None, entry)
        self.on_run_end(None, record)

    def on_run_start(self, run) -> None:
        if self.wandb_run is not None:
            return
        import wandb  # heavy: imported only when this logger is used

        directory = self.cfg.get("dir") or "."
        os.makedirs(directory, exist_ok=True)
        self.wandb_run = wandb.init(
            project=self.cfg.get("project", "freezelab"),
            group=self.cfg.get("group"),
            job_type=self.cfg.get("job_type"),
            name=self.cfg.get("run_name"),
            tags=list(self.cfg.get("tags") or []) + (["reused"] if self.reused else []),
            dir=directory,
            mode=self.mode,
            config=self.config,
            # Outside notebooks wandb's default ("return_previous") hands back a run that is still active:
            # after one job of a sweep left its run unfinished (a hook that raised before ours ended it),
            # every later job in the same process would log into that run, and its memory would never be
            # freed. Each job gets its own run; a leftover one is finished here.
            reinit="finish_previous",
            settings=wandb.Settings(silent=True, init_timeout=60),
        )

    def on_epoch_end(self, run, entry: dict) -> None:
        flat = {k: v for k, v in entry.items() if not isinstance(v, dict | list)}
        for key in ("lr", "lr_max", "trained_steps", "compute"):  # per group; the epoch's FLOPs by bucket
            flat.update({f"{key}/{g}": v for g, v in entry.get(key, {}).items()})
        self.wandb_run.log(flat, step=entry["epoch"])

    def on_run_end(self, run, record: dict) -> None:
        if self.wandb_run is None:
            return
        wandb_run, self.wandb_run = self.wandb_run, None
        try:
            metrics = {k: v for k, v in record["metrics"].items() if v is not None}
            wandb_run.summary.update({"status": record["status"], "reused": self.reused, **metrics})
            record["wandb"] = {
                "mode": self.mode,
                "dir": wandb_run.dir,
                "id": wandb_run.id,
                "reused": self.reused,
            }
        finally:
            # Finished whatever happened above: an unfinished run stays active in this process (see
            # on_run_start) and keeps its history and config in memory for the rest of a sweep.
            wandb_run.finish(exit_code=0 if record["status"] == "ok" else 1)
        if self.mode == "offline":
            folder = Path(record["wandb"]["dir"]).parent  # <dir>/wandb/offline-run-<when>-<id>/files
            what = "reused run logged again" if self.reused else "offline run"
            print(f"wandb: {what} in {folder}\n  upload it with: wandb sync {folder}", flush=True)


def build_logger_hooks(logger_cfg, config: dict, run_id: str) -> list[Hook]:
    logger_cfg = schema.check_values("logger", logger_cfg or {"name": "none"})
    return [WandbHook(logger_cfg, config, run_id)] if logger_cfg["name"] == "wandb" else []
