"""``python -m benchmarks.flop_check``: the record's FLOP count against ``FlopCounterMode`` on real runs.

Each strategy trains the default convnet on half B of the embedded MNIST digits for a few epochs, once, inside
a :class:`torch.utils.flop_counter.FlopCounterMode`; the counter sees every operator that ran (training,
evaluations, the frozen prefix's cached features, and the meter's own two-sample measurements). The record's
``compute.flops`` plus ``compute.meter_flops`` must equal the counter's total exactly. Printed as a table and
written to JSON (``--out``, default ``outputs/bench/flop_check.json``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from torch.utils.flop_counter import FlopCounterMode

from harness.assemble import assemble_run
from harness.config.compose import compose_config
from harness.engine.compute import summary
from harness.engine.loop import fit
from harness.record import trainable_per_phase, write_json_atomic

COMMON = ["data=mnist5k", "split=random_half", "half=B", "model=convnet", "progress=false", "threads=1"]
CASES = {
    "never": ["strategy=never"],
    "head_only": ["strategy=head_only"],  # the prefix cached: its one-time cost, then the head alone
    "bitfit": ["strategy=bitfit"],
    "freezeout": ["strategy=freezeout"],  # groups freeze mid-epoch; the cache grows at epoch starts
    "autofreeze": ["strategy=autofreeze", "strategy.interval=5"],  # decides in epoch 1: the cache grows
    "gradual": ["strategy=gradual"],
}


def check(name: str, overrides: list[str], epochs: int) -> dict:
    run = assemble_run(compose_config([*COMMON, f"epochs={epochs}", *overrides]))
    started = time.perf_counter()
    with FlopCounterMode(display=False) as counter:
        fit(run)
    section = summary(run.history, run.compute, trainable_per_phase(run), time.perf_counter() - started)
    counted = counter.get_total_flops()
    return {
        "strategy": name,
        "epochs": len(run.history),
        "record_flops": section["flops"],
        "meter_flops": section["meter_flops"],
        "counter_flops": counted,
        "difference": counted - section["flops"] - section["meter_flops"],
        "forward_flops": section["forward_flops"],
        "backward_flops": section["backward_flops"],
        "prefix_forward_flops": section["prefix_forward_flops"],
        "seconds": section["seconds"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.flop_check", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--only", help="comma-separated strategies (default: all)")
    parser.add_argument("--out", default="outputs/bench/flop_check.json")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(CASES)
    rows = [check(n, CASES[n], args.epochs) for n in names]
    print(
        f"{'strategy':<11} {'epochs':>6} {'record GFLOPs':>14} {'meter GFLOPs':>13} {'counter GFLOPs':>15} {'difference':>10}"
    )
    for r in rows:
        print(
            f"{r['strategy']:<11} {r['epochs']:>6} {r['record_flops'] / 1e9:>14.3f} {r['meter_flops'] / 1e9:>13.4f} "
            f"{r['counter_flops'] / 1e9:>15.3f} {r['difference']:>10}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, {"epochs": args.epochs, "runs": rows})
    print(f"written: {args.out}")
    return 0 if all(r["difference"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
