"""Helpers for the search tests: a model whose trials fail on purpose, and the command line of a search.

``FaultyNet(mode=...)`` is a tiny MLP for the 12x12 synthetic images whose ``mode`` is searched like any
hyper-parameter: ``ok`` trains normally, ``crash`` raises in the third training step (a bug or an
out-of-memory error), ``diverge`` makes the loss NaN (a diverging run), ``inf_grad`` keeps the loss finite but makes a
gradient Inf in the third step (an overflow in backward), ``hang`` blocks in training while the
file ``marker`` exists (a worker that is killed mid-trial).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from optuna.trial import TrialState
from torch import nn

REPO = Path(__file__).resolve().parents[1]

# A tiny convnet on easy synthetic data: ~0.3 s per trial; lr 3e-2 learns (val_acc ~0.3 after one epoch),
# 1e-6 does not (~0.1), so a median pruner has something to prune.
# The tiny search: synthetic 12x12 images, a two-conv net, one thread, plain progress lines.
TINY_DATA = ["data=synthetic", "data.noise=0.5", "batch_size=32", "threads=1", "progress=false"]
TINY_MODEL = ["model.channels=[8,8]", "model.hidden=[16]"]
TINY = [*TINY_DATA, "checkpoint.save=false"]
CONVNET = TINY_MODEL
# full_unfreeze with every searched key of the finetune_lr preset fixed but base_lr (given per test).
FINETUNE_FIXED = ["strategy.freeze_epochs=1", "strategy.epochs=2", "strategy.lr_mult=10"]
# Replaces CONVNET: give as `model=FAULTY_MODEL`.
FAULTY_MODEL = [
    "model=custom",
    "model.net._target_=tests.search_helpers.FaultyNet",  # mode and marker: `+model.net.mode=...` per test
    "model.net._args_=[]",
    "model.groups=[{name:body,modules:[body]},{name:head,modules:[head]}]",
    "model.head=head",
    *FINETUNE_FIXED,
    "strategy.base_lr=1e-2",  # the preset's last searched key, fixed too: only the test's own sweeps remain
]


class FaultyNet(nn.Module):
    def __init__(self, mode: str = "ok", marker: str | None = None, in_features: int = 144, hidden: int = 16):
        super().__init__()
        if mode not in ("ok", "crash", "diverge", "inf_grad", "hang"):
            raise ValueError(f"mode={mode!r}")
        self.mode, self.marker, self.steps = mode, marker, 0
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 10)

    def forward(self, x):
        out = self.head(self.body(x))
        if self.training:
            self.steps += 1
            if self.mode == "crash" and self.steps == 3:
                raise RuntimeError("boom: a trial that crashes in its third step")
            if self.mode == "diverge":
                out = out * float("nan")
            if self.mode == "inf_grad" and self.steps == 3:
                out = InfGrad.apply(out)
            if self.mode == "hang" and self.marker:
                Path(self.marker + ".started").touch()
                while Path(self.marker).exists():
                    time.sleep(0.1)
        return out


class InfGrad(torch.autograd.Function):
    """Identity forward; backward returns an Inf gradient (what an overflow in a backward kernel gives)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("inf"))


def search_command(root: Path, *overrides: str, preset: str = "finetune_lr", model=CONVNET) -> list[str]:
    return [
        sys.executable,
        "-m",
        "harness.train",
        "-m",
        f"search={preset}",
        f"paths.output_root={root}",
        *TINY,
        *model,
        *overrides,
    ]


def run_search(
    root: Path,
    *overrides: str,
    preset: str = "finetune_lr",
    model=CONVNET,
    timeout: float = 120,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run one sweep as a subprocess (the way users run it); fail with its output if it fails."""
    proc = subprocess.run(
        search_command(root, *overrides, preset=preset, model=model),
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"search failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def start_search(
    root: Path, *overrides: str, preset: str = "finetune_lr", model=CONVNET, log: Path | None = None
) -> subprocess.Popen:
    out = open(log, "w") if log else subprocess.DEVNULL
    return subprocess.Popen(
        search_command(root, *overrides, preset=preset, model=model),
        cwd=REPO,
        env=env(),
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )


def env() -> dict:
    e = dict(os.environ)
    e.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1", "CI": "1"})
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def load_study(url: str, name: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=url)


def sqlite_url(root: Path, name: str = "finetune_lr") -> str:
    return f"sqlite:///{root / 'search' / name / 'study.db'}"


def result_of(folder) -> dict:
    """The result.json of a job folder."""
    return json.loads((Path(folder) / "result.json").read_text())


def assert_no_trial_lost_or_duplicated(url: str, name: str, n_trials: int, workers: int) -> list:
    trials = load_study(url, name).trials
    # Workers take turns from counting to asking (study.ask_lock): n_trials exactly, never overshot.
    assert len(trials) == n_trials, (len(trials), n_trials, workers)
    assert [t.number for t in trials] == list(range(len(trials)))
    for t in trials:
        assert t.state in (TrialState.COMPLETE, TrialState.PRUNED), (t.number, t.state, t.user_attrs)
        record = result_of(t.user_attrs["folder"])
        assert record["config"]["trial"]["number"] == t.number  # each folder holds its own trial's run
        if t.state == TrialState.COMPLETE:
            assert t.value == record["metrics"]["val_acc"]
    return trials


def two_workers(tmp_path: Path, *overrides: str, n_trials: int = 6) -> list[str]:
    args = [
        *FINETUNE_FIXED,
        "strategy.base_lr=tag(log, interval(1e-3, 1e-1))",
        f"search.n_trials={n_trials}",
        *overrides,
    ]
    logs = [tmp_path / f"worker{i}.log" for i in (1, 2)]
    workers = [start_search(tmp_path, *args, log=log) for log in logs]
    for w, log in zip(workers, logs, strict=True):
        assert w.wait(timeout=180) == 0, log.read_text()[-4000:]
    return [log.read_text() for log in logs]


def trial_numbers_in(log: str) -> set[int]:
    return {int(line.split("]")[0].split()[1]) for line in log.splitlines() if line.startswith("[trial ")}


# --- many workers on one study, one base cache and one outputs folder (tests/test_concurrency.py) ---------

# search=transfer shrunk: the tiny convnet has 4 groups (conv1 conv2 fc1 head), so n is 1..3; two epochs,
# pruning after the first from the second finished trial on, checkpoints on (more files written side by side).
TRANSFER_TINY = [
    "epochs=2",
    "transfer.base_epochs=null",  # a fixed budget, not the convergence rule
    "transfer.epochs=null",
    "transfer.n=range(1,4)",
    "search.pruner.n_startup_trials=2",
    "search.pruner.n_warmup_steps=1",
    "checkpoint.save=true",
]


def start_workers(root: Path, n: int, *overrides: str, preset: str = "transfer") -> list[tuple]:
    """``n`` processes of the same search command on one outputs folder: [(Popen, log path), ...]."""
    logs = [root / f"worker{i}.log" for i in range(1, n + 1)]
    return [(start_search(root / "outputs", *overrides, preset=preset, log=log), log) for log in logs]


def wait_for_workers(workers: list[tuple], timeout: float) -> list[tuple[int, str]]:
    """[(exit code, log text)] of every worker; the ones still running at the deadline are killed (-9)."""
    deadline = time.time() + timeout
    try:
        for proc, _ in workers:
            try:
                proc.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        for proc, _ in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [(proc.returncode, log.read_text()) for proc, log in workers]


def leftover_temporary_files(root: Path) -> list[Path]:
    """What an interrupted atomic write leaves: ``.name.*.tmp`` files (harness/atomic.py) and ``.<key>.tmp-<pid>``
    folders of bases being built (harness/transfer/bases.py)."""
    return sorted(p for p in root.rglob(".*") if p.name.endswith(".tmp") or ".tmp-" in p.name)


def base_entries(cache_dir: Path) -> list[Path]:
    """The entries of a base cache (folders holding entry.json; not locks, not folders being built)."""
    return sorted(p.parent for p in cache_dir.glob("*/entry.json") if not p.parent.name.startswith("."))


def trial_folders(sweep_dir: Path) -> dict[int, Path]:
    """trial_N folders of a sweep by N."""
    return {int(p.name.split("_", 1)[1]): p for p in sweep_dir.glob("trial_*") if p.is_dir()}


def unreadable_files(root: Path) -> list[str]:
    """Every JSON, YAML, CSV, checkpoint and SQLite file below ``root`` that does not load, with the reason:
    a file two processes wrote at once, or one read while it was half written, shows up here."""
    import sqlite3

    import pandas as pd
    import yaml

    problems = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".yaml":
                yaml.safe_load(path.read_text())
            elif path.suffix == ".csv":
                pd.read_csv(path)
            elif path.suffix == ".pt":
                torch.load(path, weights_only=True)
            elif path.suffix == ".db":
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    check = db.execute("PRAGMA integrity_check").fetchone()[0]
                finally:
                    db.close()
                if check != "ok":
                    raise ValueError(check)
        except Exception as e:
            problems.append(f"{path}: {type(e).__name__}: {e}")
    return problems
