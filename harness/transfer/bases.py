"""The base cache: each base network is trained once and shared by every treatment that needs it.

An entry is a folder ``<cache_dir>/<key>/`` holding ``base.pt`` (a checkpoint), ``result.json`` (the base's
result record) and ``entry.json`` (key and the checkpoint's sha256). The key is a hash of exactly the inputs
that decide the base's weights (:data:`BASE_INPUTS`: data, split, half, model, optimizer, schedule, the base's
strategy with its epochs and lr, batch size, seed, device).

Concurrency and crashes: a file lock per key makes a second job wait while the first trains; the entry is
built in a temporary folder and renamed into place, so a reader never sees half an entry. An entry whose
files are missing or whose checksum does not match is reported, deleted and trained again, never used; the
temporary folder of a job killed while building is removed by the next job that builds that key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf, open_dict

from harness import record

ENTRY_VERSION = 1


@dataclass
class BaseEntry:
    key: str
    folder: Path
    checkpoint: Path
    record: dict
    trained_now: bool  # this job trained it (False: it came from the cache)

    def summary(self) -> dict:
        """The base as a treatment's record names it: where, which draw, how it ended, how good."""
        metrics = self.record["metrics"]
        return {
            "key": self.key,
            "path": str(self.folder),
            "half": self.record["config"]["half"],
            "seed": self.record["config"]["seed"],
            "init_seed": self.record.get("init_seed"),
            "test_acc": metrics["test_acc"],
            "val_acc": metrics["val_acc"],
            "test_acc_best_val_k": metrics.get("test_acc_best_val_k"),
            **convergence(self.record),
            "trained_now": self.trained_now,
        }


def convergence(result: dict) -> dict:
    """How a base ended: epochs trained, the epoch whose weights it kept, why it stopped, and whether its
    validation accuracy may still have been rising (the sign of an undertrained base)."""
    history = result.get("history") or []
    stopping = result.get("early_stopping")
    epochs = len(history)
    if stopping:
        best, stopped, patience = stopping["best_epoch"], stopping["stopped"], stopping["patience"]
        # Stopped by the cap with an improvement inside the last `patience` epochs: not shown to be converged.
        rising = stopped == "cap" and best > epochs - patience
    else:
        vals = [h["val_acc"] for h in history]
        best = max(range(epochs), key=lambda i: (vals[i], i)) + 1 if history else 0
        stopped, rising = "fixed", epochs > 0 and best == epochs
    return {"epochs": epochs, "best_epoch": best, "stopped": stopped, "still_rising": rising}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_entry(folder: Path, key: str) -> BaseEntry | None:
    """The entry in ``folder`` if it is whole and intact, else None (and the reason printed)."""
    if not folder.exists():
        return None
    try:
        entry = json.loads((folder / "entry.json").read_text())
        result = record.read_record(folder / record.RECORD_NAME)
        ok = (
            entry.get("version") == ENTRY_VERSION
            and entry.get("key") == key
            and result.get("status") == "ok"
            and sha256(folder / "base.pt") == entry.get("sha256")
        )
    except (OSError, ValueError) as e:
        print(f"base cache: entry {folder} is unreadable ({type(e).__name__}: {e}); training it again")
        return None
    if not ok:
        print(
            f"base cache: entry {folder} is corrupt or incomplete (checksum, key or status); training it again"
        )
        return None
    return BaseEntry(key, folder, folder / "base.pt", result, trained_now=False)


# Exactly the inputs that decide a base's weights. A whitelist, so that a new bookkeeping key anywhere in
# the config (a logger, a diagnostics switch) never re-keys the cache and retrains every base.
BASE_INPUTS = (
    "init_seed",
    "early_stopping",
    "data",
    "split",
    "half",
    "model",
    "optim",
    "schedule",
    "strategy",
    "batch_size",
    "seed",
    "device",
)


def base_key(config: dict) -> str:
    return record.run_id({k: config.get(k) for k in BASE_INPUTS})


def ensure_base(base_cfg: DictConfig, cache_dir: str | Path, train_fn) -> BaseEntry:
    """The cached base for ``base_cfg``, training it first (under a lock) if it is missing or corrupt."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = base_key(OmegaConf.to_container(base_cfg, resolve=True))
    folder = cache_dir / key
    with FileLock(str(cache_dir / f"{key}.lock")):
        entry = read_entry(folder, key)
        if entry is not None:
            return entry
        if folder.exists():
            shutil.rmtree(folder)
        # Under the lock nobody else builds this key: a temporary folder of it is a killed job's leftover.
        for stale in cache_dir.glob(f".{key}.tmp-*"):
            print(f"base cache: removing {stale.name}, left by a job killed while building it", flush=True)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = cache_dir / f".{key}.tmp-{os.getpid()}"
        cfg = OmegaConf.create(OmegaConf.to_container(base_cfg, resolve=True))
        with open_dict(cfg):
            cfg.checkpoint = {"save": True, "dir": str(tmp / "checkpoints")}
        print(f"base cache: training base {key} (half {cfg.half}, seed {cfg.seed})", flush=True)
        result = train_fn(cfg, tmp)
        if result["status"] != "ok":
            raise RuntimeError(f"base {key} failed to train: {result['reason']}")
        os.replace(result["checkpoint"], tmp / "base.pt")
        shutil.rmtree(tmp / "checkpoints")
        result["checkpoint"] = str(folder / "base.pt")
        record.write_json_atomic(tmp / record.RECORD_NAME, result)
        record.write_json_atomic(
            tmp / "entry.json", {"version": ENTRY_VERSION, "key": key, "sha256": sha256(tmp / "base.pt")}
        )
        os.replace(tmp, folder)
        return BaseEntry(key, folder, folder / "base.pt", result, trained_now=True)
