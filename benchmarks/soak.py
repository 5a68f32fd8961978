"""``python -m benchmarks.soak``: a long search in one process, to show that its memory stays flat.

    python -m benchmarks.soak                      # 200 trials; summary printed and written to outputs/soak/soak.json
    python -m benchmarks.soak --trials 20 --root /tmp/soak --out /tmp/soak.json

What it runs: a real search, ``python -m harness.train -m search=finetune_lr ...``, as a subprocess, with
Hydra's default basic launcher, so every trial runs inside the sweeper's own process one after the other: the
case where whatever a trial leaves behind (a storage engine, a logger run, a config, a figure, a cache entry)
piles up. The data and model are tiny (synthetic 12x12 images, a two-conv net, one thread), so the trials
are short and the process's memory is mostly what the trials leave behind. The run is otherwise as users run
it: the TPE sampler with the median pruner, checkpoints, the per-epoch weight diagnostics and CKA, and the
wandb logger in offline mode (no account, no network) so that wandb's start-up and finish are soaked too.

What it measures: every trial's record (``result.json``) holds ``timing.rss_mb``, the process's resident
memory as that run ended, and ``timing.peak_rss_mb``, the process's peak so far. In trial order, the soak
reports RSS at trials 1, 10, 50, 100 and the last, the peak, the least-squares slope of RSS over the second
half of the trials (MB per 100 trials), the trial states and the wall time.

The verdict is ``flat`` when that slope is below :data:`FLAT_MB_PER_100_TRIALS`. The first half is left out
on purpose: the first trials fill bounded caches (imports, allocator arenas, SQLite's statement cache,
SQLAlchemy's compiled-statement caches, wandb's service connection) and RSS rises while they do. What is left
is what every trial adds. See the constant for why 10 MB per 100 trials.

Exit status: 0 when the search ran (whatever the verdict: it is in the output), 1 when the search failed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUDY = "soak"

# The tiny search: synthetic data, a two-conv net, one thread, plain progress lines (as the search tests,
# tests/search_helpers.py).
TINY_DATA = ["data=synthetic", "data.noise=0.5", "batch_size=32", "threads=1", "progress=false"]
TINY_MODEL = ["model.channels=[8,8]", "model.hidden=[16]"]
TINY = TINY_DATA + TINY_MODEL
# Everything a run can switch on that keeps state across the run: diagnostics (weights by default, CKA here),
# checkpoints (default), a logger.
SOAKED = ["diagnostics.cka=true"]

# Why 10 MB per 100 trials. Measured on this search (200 trials, second half): with a trial leaking its
# storage engine and its Hydra configs, RSS grew ~30 MB per 100 trials; with both fixed it still grows ~5 MB per
# 100, and that floor is not a leak: Optuna keeps every trial of the study in memory (~1 MB per 100 trials:
# params, attributes, intermediate values, measured with tracemalloc), and glibc's arenas keep the free holes
# that long-lived small objects leave between short-lived ones (free heap grew ~4 MB per 100 trials while the
# memory in use grew ~2). The threshold sits between the floor and the leaks, with room for the noise of a
# shared machine; at 10 MB per 100, a 1,000-trial search in one process grows by less than 100 MB.
FLAT_MB_PER_100_TRIALS = 10.0
CHECKPOINTS = (1, 10, 50, 100)  # trials (1-based) whose RSS is reported, with the last one


def search_command(root: Path, trials: int, logger: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "harness.train",
        "-m",
        "search=finetune_lr",
        f"search.study_name={STUDY}",
        f"search.n_trials={trials}",
        "search.sampler.seed=0",  # one worker, a fixed seed: the same trials every time
        f"paths.output_root={root}",
        f"logger={logger}",
        *TINY,
        *SOAKED,
    ]


def search_env() -> dict:
    env = dict(os.environ)
    env.update(
        {
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "CI": "1",  # plain progress lines, no live bar
            "HYDRA_FULL_ERROR": "1",
            "WANDB_MODE": "offline",  # never the network, whatever the user's wandb settings say
            "WANDB_SILENT": "true",
        }
    )
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def rss_mb_of(pid: int) -> float | None:
    """Resident memory of a running process (Linux), for the progress lines."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_search(command: list[str], trials: int, log_path: Path) -> tuple[int, float]:
    """Run the search; its whole output goes to ``log_path``, one progress line per tenth of the trials here.
    Returns (exit status, wall seconds)."""
    every = max(1, trials // 10)
    started = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=search_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        done = 0
        for line in proc.stdout:
            log.write(line)
            if line.startswith("[trial "):  # the sweeper prints one such line per finished trial
                done += 1
                if done % every == 0 or done == trials:
                    rss = rss_mb_of(proc.pid)
                    rss_text = f"{rss:.0f} MB" if rss is not None else "n/a"
                    print(
                        f"soak: {done}/{trials} trials, search process RSS {rss_text}, "
                        f"{time.perf_counter() - started:.0f} s",
                        flush=True,
                    )
        status = proc.wait()
    return status, time.perf_counter() - started


def read_trials(sweep_dir: Path) -> list[dict]:
    """One dict per trial of the study, in trial order: state (from trials.csv, the study's view) and the
    memory figures of its record (None where no record was written: a duplicate point, a crash)."""
    rows = []
    with open(sweep_dir / "trials.csv", newline="") as f:
        for row in csv.DictReader(f):
            number = int(row["number"])
            folder = Path(row.get("folder") or sweep_dir / f"trial_{number}")
            timing, status = {}, None
            if not row.get("duplicate_of") and (folder / "result.json").is_file():
                record = json.loads((folder / "result.json").read_text())
                timing, status = record.get("timing") or {}, record.get("status")
            rows.append(
                {
                    "number": number,
                    "state": row["state"],
                    "status": status,
                    "rss_mb": timing.get("rss_mb"),
                    "peak_rss_mb": timing.get("peak_rss_mb"),
                    "seconds": timing.get("seconds"),
                }
            )
    return sorted(rows, key=lambda r: r["number"])


def slope_per_100(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of RSS over trial index, in MB per 100 trials (None with fewer than 3 points)."""
    if len(points) < 3:
        return None
    xs, ys = zip(*points, strict=True)
    return 100 * statistics.linear_regression(xs, ys).slope


def summarize(trials: list[dict], wall_s: float, returncode: int, command: list[str]) -> dict:
    measured = [(i, t["rss_mb"]) for i, t in enumerate(trials, start=1) if t["rss_mb"] is not None]
    second_half = [(i, rss) for i, rss in measured if i > len(trials) // 2]
    slope = slope_per_100(second_half)
    at = [n for n in CHECKPOINTS if n < len(trials)] + ([len(trials)] if trials else [])
    states = {s: sum(1 for t in trials if t["state"] == s) for s in ("COMPLETE", "PRUNED", "FAIL")}
    states["other"] = len(trials) - sum(states.values())
    peaks = [t["peak_rss_mb"] for t in trials if t["peak_rss_mb"] is not None]
    return {
        "trials": len(trials),
        "with_rss": len(measured),
        "rss_mb_at": {str(n): trials[n - 1]["rss_mb"] for n in at},
        "slope_mb_per_100_trials": slope,
        "slope_over": f"trials {len(trials) // 2 + 1}..{len(trials)} (second half)",
        "threshold_mb_per_100_trials": FLAT_MB_PER_100_TRIALS,
        "verdict": "unknown" if slope is None else "flat" if slope < FLAT_MB_PER_100_TRIALS else "grows",
        "peak_rss_mb": max(peaks, default=None),
        "states": states,
        "wall_s": wall_s,
        "returncode": returncode,
        "command": " ".join(command),
    }


def report(summary: dict) -> str:
    def mb(value) -> str:
        return "n/a" if value is None else f"{value:.1f} MB"

    at = ", ".join(f"{n}: {mb(v)}" for n, v in summary["rss_mb_at"].items())
    slope = summary["slope_mb_per_100_trials"]
    slope_text = "n/a" if slope is None else f"{slope:+.2f} MB per 100 trials"
    states = ", ".join(f"{n} {s.lower()}" for s, n in summary["states"].items() if n)
    return (
        f"soak: {summary['trials']} trials ({states}) in {summary['wall_s']:.0f} s\n"
        f"  RSS at trial {at}\n"
        f"  slope over the {summary['slope_over']}: {slope_text} "
        f"(flat below {summary['threshold_mb_per_100_trials']:g})\n"
        f"  peak RSS {mb(summary['peak_rss_mb'])}\n"
        f"  verdict: {summary['verdict']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200, help="trials of the search (default 200)")
    parser.add_argument("--out", default="outputs/soak/soak.json", help="the JSON written (summary + trials)")
    parser.add_argument(
        "--root", default=None, help="output root of the search (default: a temp folder, removed)"
    )
    parser.add_argument(
        "--logger", choices=("wandb", "none"), default="wandb", help="logger of every trial (default wandb)"
    )
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be at least 1")

    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="freezelab-soak-"))
    sweep_dir = root / "search" / STUDY
    # A study already there would be resumed, not run again: the soak needs fresh trials.
    if (sweep_dir / "study.db").exists():
        parser.error(f"{sweep_dir} already holds a study; give another --root or remove it")
    root.mkdir(parents=True, exist_ok=True)
    command = search_command(root, args.trials, args.logger)
    print(
        f"soak: {args.trials} trials in one process; output in {root}; log in {root / 'search.log'}",
        flush=True,
    )

    returncode, wall_s = run_search(command, args.trials, root / "search.log")
    trials = read_trials(sweep_dir) if (sweep_dir / "trials.csv").is_file() else []
    summary = summarize(trials, wall_s, returncode, command)
    print(report(summary), flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "trials": trials}, indent=1) + "\n")
    print(f"soak: written to {out}", flush=True)
    if returncode != 0:  # its folder is kept, temp or not, for its log
        print(
            f"error: the search failed (exit {returncode}); its log: {root / 'search.log'}", file=sys.stderr
        )
    elif not args.root:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
