"""Synthetic result records with the real schema, for tests and the loading benchmark.

    python -m analysis.synthetic --bench 2000     # write 2,000 records to a temp folder, time load_runs cold/warm

Accuracies are whatever the caller asks for, so tests know the right answer of every table in advance.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

GROUPS = ("conv1", "conv2", "conv3", "fc1", "head")


def fake_record(
    *,
    treatment: str | None = "AnB",
    n: int | None = 1,
    split_seed: int = 0,
    seed: int = 0,
    value: float | None = 0.9,
    base_value: float = 0.9,
    status: str = "ok",
    experiment: str = "fake",
    b_domain: str | None = None,
    split: str = "random_half",
    epochs: int = 3,
    version: int | None = 1,
    strategy: str = "freeze_to",
    layers: int = 5,
    data: str = "mnist5k",
    base_still_rising: bool = False,
    base_a_still_rising: bool = False,
    old: bool = False,
) -> dict:
    """One record of the current schema (:mod:`analysis.metrics`): ``value`` is the run's ``test_acc`` and
    ``test_acc_best_val_k`` (a fraction; every epoch tests at ``value`` while validation accuracy rises, so both
    are exact), ``base_value`` its bases'. The baseB key depends on (experiment, split, b_domain, split_seed,
    seed), as the real cache key does. ``base_still_rising`` / ``base_a_still_rising``: baseB's / baseA's
    ``still_rising`` flag. ``old=True``: a record of the harness before ``test_acc_best_val_k`` (it has the
    optimistic ``test_acc_best_k`` instead, and no ``init_seed`` or base convergence fields)."""
    groups = list(GROUPS[: layers - 1]) + ["head"]
    config = {
        "experiment_name": experiment,
        "seed": seed,
        "half": "B",
        "epochs": epochs,
        "lr": 0.02,
        "batch_size": 64,
        "best_k": 10,
        "data": {"name": data, "seed": 0},
        "model": {"name": "convnet", "channels": [32, 64, 64]},
        "split": {"name": split, "seed": split_seed, "b_domain": b_domain},
        "strategy": {"name": strategy, "k": n, "epochs": epochs, "lr": 0.02},
        "optim": {"name": "sgd", "momentum": 0.9},
        "schedule": {"name": "step", "step_size": 4},
        "transfer": {"treatment": treatment, "n": n, "rewritten": True, "cache_dir": "/x/bases"},
        "init": {"from": f"/x/bases/{treatment}/base.pt", "groups": n},
        "paths": {"output_root": "/x"},
        "threads": 1,
        "trial": {"number": None, "study": None, "storage": None},
    }
    ident = json.dumps([experiment, treatment, n, split, split_seed, seed, b_domain, data, epochs])
    base_ident = json.dumps([experiment, split, b_domain, split_seed, seed, data, epochs])
    history = []
    for e in range(1, epochs + 1):
        frozen = set(groups[: n or 0]) if strategy == "freeze_to" else set()
        lr = {g: (0.0 if g in frozen else 0.02 * (0.1 if e > 4 else 1)) for g in groups}
        val = None if value is None else value * (0.8 + 0.2 * e / epochs)
        history.append(
            {
                "epoch": e,
                "phase": strategy,
                "phase_index": 0,
                "train_loss": 1.0 / e,
                "val_loss": 1.0 / e,
                "val_acc": val,
                "test_loss": 1.0 / e,
                "test_acc": value,
                "lr": lr,
                "lr_max": dict(lr),
                "seconds": 1.0,
                "samples_per_s": 1750.0,
            }
        )

    def base_summary(half: str, rising: bool) -> dict:
        ident = base_ident + half
        summary = {
            "key": hashlib.sha256(ident.encode()).hexdigest()[:16],
            "path": f"/x/bases/{half}",
            "half": half,
            "seed": seed,
            "test_acc": base_value,
            "val_acc": base_value,
            "trained_now": False,
        }
        if old:
            return {**summary, "test_acc_best_k": base_value}
        return {
            **summary,
            "init_seed": 1000 + seed + (0 if half == "B" else 500),
            "epochs": epochs,
            "best_epoch": epochs if rising else max(1, epochs - 1),
            "stopped": "fixed",
            "still_rising": rising,
            "test_acc_best_val_k": base_value,
        }

    base_b = base_summary("B", base_still_rising)
    base_a = base_summary("A", base_a_still_rising)
    metrics = {
        "val_acc": value,  # the last epoch's, as the history says
        "val_loss": 0.1,
        "test_acc": value,
        "test_loss": 0.1,
        "best_val_acc": value,
        "best_k": min(epochs, 10),
    }
    metrics["test_acc_best_k" if old else "test_acc_best_val_k"] = value
    record = {
        "version": version,
        "run_id": hashlib.sha256(ident.encode()).hexdigest()[:16],
        "status": status,
        "reason": None if status == "ok" else f"{status} on purpose",
        "stopped_epoch": None,
        "config": config,
        "plan": {"strategy": strategy, "groups": groups, "phases": [], "version": 1},
        "metrics": metrics,
        "history": history,
        "data": {"name": data, "train": 1750, "val": 250, "test": 500},
        "timing": {
            "seconds": float(epochs),
            "train_seconds": float(epochs),
            "samples_per_s": 1750.0,
            "started": "2026-01-01T00:00:00+00:00",
            "finished": f"2026-01-01T00:{seed % 60:02d}:00+00:00",
        },
        "environment": {"torch": "2.x", "device": "cpu", "threads": 1},
        "harness": {"version": "0.1.0", "git_commit": "0" * 40},
        "checkpoint": None,
        "warnings": [],
    }
    if not old:
        record["init_seed"] = 2000 + seed
    if treatment is not None:
        record["transfer"] = {
            "treatment": treatment,
            "n": n,
            "layers": layers,
            "frozen": strategy == "freeze_to",
            "split": split,
            "split_seed": split_seed,
            "b_domain": b_domain,
            "seed": seed,
            "base": {"BnB": base_b, "BnB+": base_b, "AnB": base_a, "AnB+": base_a}.get(treatment),
            "baseB": base_b,
            "bases_trained_by_this_job": 0,
        }
    return record


def write_record(folder: Path, record: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "result.json"
    path.write_text(json.dumps(record))
    return path


def write_grid(
    root: Path,
    value: Callable[[str, int, int], float],
    *,
    split_seeds=(0, 1, 2),
    layers: int = 5,
    treatments=("BnB", "BnB+", "AnB", "AnB+", "random"),
    base_value: Callable[[int], float] | float = 0.9,
    **kw,
) -> list[Path]:
    """A transfer grid: every treatment x n = 1..L-1 x split seed, accuracy ``value(treatment, n, split_seed)``."""
    paths = []
    for s in split_seeds:
        bv = base_value(s) if callable(base_value) else base_value
        for t in treatments:
            for n in range(1, layers):
                rec = fake_record(
                    treatment=t,
                    n=n,
                    split_seed=s,
                    value=value(t, n, s),
                    base_value=bv,
                    layers=layers,
                    strategy="freeze_to" if t in ("BnB", "AnB", "random") else "never",
                    **kw,
                )
                paths.append(write_record(root / f"{t}_n{n}_split{s}", rec))
    return paths


def write_many(root: Path, count: int) -> None:
    """``count`` records in sweeps of 100 jobs (the loading benchmark)."""
    for i in range(count):
        t = ("BnB", "BnB+", "AnB", "AnB+", "random")[i % 5]
        rec = fake_record(treatment=t, n=1 + i // 5 % 4, split_seed=i // 20, value=0.9 + (i % 7) / 100)
        write_record(root / f"sweep_{i // 100:03d}" / f"{i % 100}_{t}", rec)


def bench(count: int, folder: Path | None = None) -> dict:
    """Seconds to load ``count`` records: cold (no index), warm (index valid), after one record changed."""
    from analysis.load import load_runs

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(folder or tmp) / "bench"
        write_many(root, count)
        out = {}
        for label in ("cold", "warm"):
            t = time.perf_counter()
            runs = load_runs(root)
            out[label] = time.perf_counter() - t
        one = next(root.rglob("result.json"))
        rec = json.loads(one.read_text())
        rec["metrics"]["test_acc"] = 0.5
        one.write_text(json.dumps(rec))
        t = time.perf_counter()
        load_runs(root)
        out["one_changed"] = time.perf_counter() - t
        out["rows"] = len(runs)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.synthetic", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--bench", type=int, default=2000, help="records to write and load")
    parser.add_argument("--dir", help="where to write them (default: a temp folder)")
    args = parser.parse_args()
    result = bench(args.bench, Path(args.dir) if args.dir else None)
    print(
        f"load_runs of {result['rows']} records: cold {result['cold']:.2f} s, warm (index) {result['warm']:.2f} s, "
        f"one record changed {result['one_changed']:.2f} s"
    )


if __name__ == "__main__":
    main()
