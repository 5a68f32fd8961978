"""``python -m benchmarks.bench``: the performance comparisons, measured side by side in one process run.

Machines here are noisy, so every comparison is a *ratio* of two things measured interleaved in the same
run, each the median of several repeats (``loop``, ``fastai`` and ``diagnostics``: the median of each repeat's
ratio, the two sides alternating which goes first, after a warm-up round); absolute seconds are for context.

| name | compares |
|---|---|
| `loop` | harness training epoch vs a minimal hand-written PyTorch loop (same model, data, batch, optimizer) |
| `frozen` | per-epoch time of `head_only` / `freeze_to(2)` (prefix cached and not) vs all layers training |
| `grid` | a transferability grid with base reuse and prefix caching vs every job training its own bases, uncached |
| `fastai` | fastai's `fine_tune` vs `strategy=full_unfreeze` on the same model, data, epochs and lr |
| `memory` | peak resident memory of one run and of a 2-worker sweep (joblib launcher) |
| `diagnostics` | what the diagnostics hook (weights, gradient norms) adds to a run's time, when installed |

Results are printed as a table and written to JSON (``--out``). ``loop``, ``fastai`` and ``diagnostics`` read
the clock that ``--clock`` picks: ``wall`` (default), or ``cpu``, this process's CPU time, which with
``--threads 1`` measures the work done rather than the waiting on a machine shared with other jobs.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F

from harness.assemble import assemble_run
from harness.config.compose import compose_config
from harness.data import inference_batch_size
from harness.engine.hooks import Hook
from harness.engine.loop import fit
from harness.record import write_json_atomic
from harness.train import train

MNIST = ["data=mnist5k", "model=convnet", "progress=false", "checkpoint.save=false"]
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock_name = "wall"  # main() sets it from --clock
clock = CLOCKS[clock_name]


def median(values):
    return statistics.median(values)


def _cfg(overrides, root=None):
    return compose_config(MNIST + list(overrides), root=root)


def alternating(repeats: int, sides: dict, setup=lambda r: None) -> dict[str, list]:
    """Each side once per round, ``repeats + 1`` rounds: round 0 warms up and is not kept, and the sides
    alternate which goes first (a slow spell of the machine falls on both). ``sides``: name -> function of
    ``setup(round)``, the round's shared inputs; returns name -> the kept results, in round order."""
    kept: dict[str, list] = {name: [] for name in sides}
    names = list(sides)
    for r in range(repeats + 1):
        shared = setup(r)
        for name in names if r % 2 else names[::-1]:
            result = sides[name](shared)
            if r:
                kept[name].append(result)
    return kept


# --- 1. harness vs a hand-written loop -------------------------------------------------------------------


def hand_epoch(net, x, y, optimizer, batch_size: int, seed: int) -> float:
    """The minimal loop anyone would write: shuffle, forward, loss, backward, step."""
    net.train()
    started = clock()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(x[idx]), y[idx]).backward()
        optimizer.step()
    return clock() - started


class StepClock(Hook):
    """A one-epoch run's training by the bench's clock, from its phase's start to its last step's end (the
    span of the history's ``seconds``, without the set-up before the phase)."""

    def on_phase_start(self, run, phase_index: int) -> None:
        self.started = clock()

    def on_batch_end(self, run, step: int, steps: int, loss) -> None:
        if step == steps:
            self.seconds = clock() - self.started


def bench_loop(repeats: int) -> dict:
    """One epoch each; the two alternate which goes first, a first round warms up; the median of the
    per-repeat ratios, and the ratio of medians with it."""
    cfg = _cfg(["strategy=never", "epochs=1", "schedule=constant", "optim=adamw", "batch_size=64", "lr=1e-3"])

    def harness_epoch(seed: int) -> float:
        run = assemble_run(cfg)
        timer = StepClock()
        run.hooks = [timer]
        fit(run)
        return timer.seconds

    def plain_epoch(seed: int) -> float:
        plain = assemble_run(cfg)  # same model init, same data tensors
        # the harness's AdamW settings and implementation (fused, harness/engine/optim.py): the loops are compared
        optimizer = torch.optim.AdamW(
            plain.model.net.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01, fused=True
        )
        return hand_epoch(plain.model.net, plain.data.train.x, plain.data.train.y, optimizer, 64, seed=seed)

    kept = alternating(repeats, {"harness": harness_epoch, "plain": plain_epoch}, setup=lambda r: r)
    harness_s, plain_s = kept["harness"], kept["plain"]
    ratio = median([p / h for p, h in zip(plain_s, harness_s, strict=True)])
    return {
        "name": "loop",
        "metric": f"harness throughput / hand-written loop ({clock_name} time)",
        "value": ratio,
        "target": ">= 0.95",
        "ok": ratio >= 0.95,
        "ratio_of_medians": median(plain_s) / median(harness_s),
        "seconds": {"harness": median(harness_s), "plain": median(plain_s)},
    }


# --- 2. frozen groups cost only their forward pass, and a static prefix runs once --------------------------


def epoch_seconds(overrides, epochs=3, hooks=()) -> float:
    run = assemble_run(_cfg(overrides + [f"epochs={epochs}"]))
    run.hooks = [hook() for hook in hooks]
    fit(run)
    return median([h["seconds"] for h in run.history[1:]])  # after the first epoch


def bench_frozen(repeats: int) -> dict:
    variants = {
        "all_trainable": ["strategy=never"],
        "head_only": ["strategy=head_only"],
        "head_only_uncached": ["strategy=head_only", "prefix_cache=false"],
        "freeze_to_2": ["strategy=freeze_to", "strategy.k=2"],
        "freeze_to_2_uncached": ["strategy=freeze_to", "strategy.k=2", "prefix_cache=false"],
    }
    times = {k: [] for k in variants}
    for _ in range(repeats):
        for name, over in variants.items():
            times[name].append(epoch_seconds(over))
    med = {k: median(v) for k, v in times.items()}
    speedups = {k: med["all_trainable"] / v for k, v in med.items() if k != "all_trainable"}
    return {
        "name": "frozen",
        "metric": "per-epoch speed-up of head_only (cached) over all-trainable",
        "value": speedups["head_only"],
        "target": ">= 5",
        "ok": speedups["head_only"] >= 5,
        "speedups": speedups,
        "seconds": med,
    }


# --- 3. base reuse and prefix caching over a whole grid ------------------------------------------------------


def grid_jobs(jobs: int):
    treatments = ["BnB", "BnB+", "AnB", "AnB+", "random"]
    cells = [(t, n) for t in treatments for n in (1, 2, 3, 4)]
    return cells[:jobs]


def run_grid(cells, reuse: bool, root: Path) -> float:
    started = time.perf_counter()
    for i, (treatment, n) in enumerate(cells):
        cache = root / "bases" if reuse else root / f"bases_{i}"  # no reuse: every job trains its own bases
        cfg = compose_config(
            [
                "experiment=transferability_quick",
                f"transfer.treatment={treatment}",
                f"transfer.n={n}",
                "progress=false",
                f"transfer.cache_dir={cache}",
                f"prefix_cache={str(reuse).lower()}",
            ],
            root=root,
        )
        train(cfg, root / f"job_{i}")
    return time.perf_counter() - started


def bench_grid(jobs: int) -> dict:
    cells = grid_jobs(jobs)
    with tempfile.TemporaryDirectory() as tmp:
        fast = run_grid(cells, True, Path(tmp) / "fast")
        slow = run_grid(cells, False, Path(tmp) / "slow")
    return {
        "name": "grid",
        "metric": f"wall-time speed-up of a {len(cells)}-job transferability grid (reuse + cache)",
        "value": slow / fast,
        "target": "> 1",
        "ok": slow > fast,
        "seconds": {"reuse_and_cache": fast, "naive": slow},
    }


# --- 4. against fastai's fine_tune ----------------------------------------------------------------------------


def fastai_fine_tune(cfg, start_weights: dict, epochs: int, batch_size: int) -> tuple[float, float]:
    """fastai 2.8's ``fine_tune(epochs, base_lr=2e-3)`` on the network and data that ``cfg`` assembles, from
    ``start_weights``: the network's children as fastai's layer groups, its Adam with wd 0.01, the validation
    set after every epoch and the test set once at the end (``Learner.validate``), evaluation in batches of
    :func:`~harness.data.inference_batch_size`. Returns (seconds by the bench's clock, test accuracy)."""
    import fastai.callback.progress  # noqa: F401  (patches Learner.no_bar)
    import fastai.callback.schedule  # noqa: F401  (patches Learner.fine_tune, fit_one_cycle)
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader as FastaiLoader
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from fastai.optimizer import Adam

    other = assemble_run(cfg)
    other.model.net.load_state_dict(start_weights)  # the same starting weights
    data, eval_batch = other.data, inference_batch_size(other.device)

    def loader(part, **kw):
        return FastaiLoader(list(zip(part.x, part.y, strict=True)), **kw)

    dls = DataLoaders(
        loader(data.train, bs=batch_size, shuffle=True, drop_last=False),
        loader(data.val, bs=eval_batch),
        device=other.device,
    )
    test = loader(data.test, bs=eval_batch)
    groups = [list(g.parameters()) for g in other.model.net.children()]
    learn = Learner(
        dls,
        other.model.net,
        loss_func=CrossEntropyLossFlat(),
        opt_func=Adam,
        metrics=accuracy,
        splitter=lambda _m, groups=groups: groups,
        wd=0.01,
    )
    with learn.no_bar(), learn.no_logging():
        started = clock()
        learn.fine_tune(epochs, base_lr=2e-3)
        _, acc = learn.validate(dl=test)
        return clock() - started, float(acc)


def bench_fastai(repeats: int, epochs: int = 3) -> dict:
    """The same work on both sides, timed from the start of training to a test accuracy: 1 + ``epochs``
    epochs, the validation set evaluated after every epoch, the test set once at the end (the harness with
    ``test_every_epoch=false``; fastai by ``Learner.validate`` on a test loader), every evaluation in batches
    of the harness's :func:`~harness.data.inference_batch_size`. Harness and fastai alternate which goes
    first; a first round warms both up and is not counted. The value is the median over repeats of each
    repeat's ratio (the two runs of a repeat share the machine's load); the ratio of medians comes with it."""
    try:
        import fastai  # noqa: F401
    except ImportError:
        return {
            "name": "fastai",
            "metric": "fastai not installed (pip install -e '.[bench]')",
            "value": None,
            "target": "<= 1.0",
            "ok": None,
        }

    def harness_side(round_inputs):
        cfg, start_weights = round_inputs
        run = assemble_run(cfg)
        run.model.net.load_state_dict(start_weights)
        started = clock()
        fit(run)
        return clock() - started, run.history[-1]["test_acc"]

    def fastai_side(round_inputs):
        cfg, start_weights = round_inputs
        return fastai_fine_tune(cfg, start_weights, epochs, batch_size=64)

    def round_inputs(r: int):
        """The round's config (seed r) and the starting weights both sides load."""
        options = [
            "strategy=full_unfreeze",
            f"strategy.epochs={epochs}",
            "strategy.bn=train",
            f"seed={r}",
            "test_every_epoch=false",
        ]
        cfg = _cfg(options)
        return cfg, copy.deepcopy(assemble_run(cfg).model.net.state_dict())

    kept = alternating(repeats, {"harness": harness_side, "fastai": fastai_side}, setup=round_inputs)
    ours_s, ours_acc = (list(v) for v in zip(*kept["harness"], strict=True))
    theirs_s, theirs_acc = (list(v) for v in zip(*kept["fastai"], strict=True))
    ratios = [a / b for a, b in zip(ours_s, theirs_s, strict=True)]
    ratio = median(ratios)
    gap = 100 * (median(ours_acc) - median(theirs_acc))
    return {
        "name": "fastai",
        "metric": f"{clock_name} time of full_unfreeze / fastai fine_tune",
        "value": ratio,
        "target": "<= 1.0 at accuracy within 0.5 pts",
        "ok": ratio <= 1.0 and gap > -0.5,
        "ratios": ratios,
        "ratio_of_medians": median(ours_s) / median(theirs_s),
        "seconds": {"harness": median(ours_s), "fastai": median(theirs_s)},
        "test_acc": {"harness": median(ours_acc), "fastai": median(theirs_acc), "gap_points": gap},
        "test_accs": {"harness": ours_acc, "fastai": theirs_acc},
    }


# --- 6. peak resident memory ----------------------------------------------------------------------------------


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc (Linux)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def peak_rss_mb(cmd: list[str]) -> float:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).parents[1]
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss_kb(proc.pid))
        time.sleep(0.1)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    return peak / 1024


def bench_memory() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        base = [sys.executable, "-m", "harness.train"]
        one = peak_rss_mb(base + MNIST + ["epochs=2", f"paths.output_root={tmp}"])
        sweep = peak_rss_mb(
            base
            + [
                "-m",
                "hydra/launcher=joblib",
                "hydra.launcher.n_jobs=2",
                *MNIST,
                "epochs=2",
                "seed=0,1,2,3",
                f"paths.output_root={tmp}",
            ]
        )
    return {
        "name": "memory",
        "metric": "peak RSS (MB): one run / 2-worker sweep of 4 jobs",
        "value": sweep / one,
        "target": "bounded",
        "ok": True,
        "mb": {"one_run": one, "two_worker_sweep": sweep},
    }


# --- 7. what the diagnostics hook costs ---------------------------------------------------------------------


def fit_seconds(overrides, hooks=()) -> float:
    """A whole ``fit`` by the bench's clock: steps, evaluations, phase set-ups and every hook call."""
    run = assemble_run(_cfg(overrides))
    run.hooks = [hook() for hook in hooks]
    started = clock()
    fit(run)
    return clock() - started


class EpochClock(Hook):
    """Each epoch by the bench's clock, end to end: steps, evaluation and the hooks installed before it."""

    def on_run_start(self, run) -> None:
        self.marks = [clock()]

    def on_epoch_end(self, run, entry: dict) -> None:
        self.marks.append(clock())

    def seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.marks[:-1], self.marks[1:], strict=True)]


def cached_epoch_seconds(hooks=(), epochs: int = 4) -> float:
    """Median epoch of a ``head_only`` run after its first (which holds the prefix features): tiny epochs."""
    run = assemble_run(_cfg(["strategy=head_only", f"epochs={epochs}"]))
    timer = EpochClock()
    run.hooks = [hook() for hook in hooks] + [timer]
    fit(run)
    return median(timer.seconds()[1:])


def bench_diagnostics(repeats: int) -> dict:
    """What installing the diagnostics hook adds to a run (``full_unfreeze``, 1 + 2 epochs): all of it,
    per-step foreach calls and per-epoch tables, as a whole ``fit`` with the hook over one without; the median
    of per-repeat ratios (on and off alternate which goes first; a first round warms up). For context, the
    same on the tiny cached epochs of a ``head_only`` run, where the per-step calls weigh most."""
    from harness.diagnostics.weights import WeightDiagnostics

    full = ["strategy=full_unfreeze", "strategy.epochs=2"]

    def measure(hooks):
        return lambda _: (fit_seconds(full, hooks), cached_epoch_seconds(hooks))

    kept = alternating(repeats, {"on": measure([WeightDiagnostics]), "off": measure([])})
    on, tiny_on = (list(v) for v in zip(*kept["on"], strict=True))
    off, tiny_off = (list(v) for v in zip(*kept["off"], strict=True))
    overheads = [a / b - 1 for a, b in zip(on, off, strict=True)]
    tiny_overheads = [a / b - 1 for a, b in zip(tiny_on, tiny_off, strict=True)]
    overhead = median(overheads)
    return {
        "name": "diagnostics",
        "metric": f"{clock_name}-time overhead of the diagnostics hook (full_unfreeze)",
        "value": overhead,
        "target": "< 0.03",
        "ok": overhead < 0.03,
        "overheads": overheads,
        "seconds": {"on": median(on), "off": median(off)},
        "head_only_cached_epoch": {
            "overhead": median(tiny_overheads),
            "overheads": tiny_overheads,
            "seconds": {"on": median(tiny_on), "off": median(tiny_off)},
        },
    }


# --- the command ------------------------------------------------------------------------------------------------


BENCHES = ("loop", "frozen", "grid", "fastai", "memory", "diagnostics")


def table(results: list[dict]) -> str:
    lines = ["| benchmark | measure | value | target | met |", "|---|---|---|---|---|"]
    for r in results:
        value = "n/a" if r["value"] is None else f"{r['value']:.3g}"
        met = {True: "yes", False: "no", None: "-"}[r["ok"]]
        lines.append(f"| {r['name']} | {r['metric']} | {value} | {r['target']} | {met} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--grid-jobs", type=int, default=20, help="jobs of the transferability grid to time twice"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="loop, fastai, diagnostics: wall or CPU time"
    )
    parser.add_argument("--out", default="outputs/bench/bench.json")
    args = parser.parse_args(argv)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in BENCHES]
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    global clock, clock_name
    clock_name, clock = args.clock, CLOCKS[args.clock]
    runners = {
        "loop": lambda: bench_loop(args.repeats),
        "frozen": lambda: bench_frozen(args.repeats),
        "grid": lambda: bench_grid(args.grid_jobs),
        "fastai": lambda: bench_fastai(args.repeats),
        "memory": bench_memory,
        "diagnostics": lambda: bench_diagnostics(args.repeats),
    }
    results = []
    for i, name in enumerate(chosen):
        print(f"[{i + 1}/{len(chosen)}] {name} ...", flush=True)
        results.append(runners[name]())
        print(f"    {json.dumps(results[-1])}", flush=True)
    print(table(results))
    out = Path(args.out)
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.node(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "repeats": args.repeats,
        "clock": args.clock,
    }
    write_json_atomic(out, {"meta": meta, "results": results})
    print(f"written: {out}")


if __name__ == "__main__":
    main()
