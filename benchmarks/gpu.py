"""``python -m benchmarks.gpu``: the GPU benchmark, one prepared script that writes JSON (``--out``).

On one GPU it runs in a few minutes (``--budget-s`` bounds it: a comparison that would start after the
budget is spent is written as skipped); on a machine without CUDA it runs the same code at tiny sizes
(``--tiny``, automatic there), which is what its test does. What it measures:

| section | compares |
|---|---|
| `loop` | harness epoch throughput / a minimal plain PyTorch loop on the same device, model, init, data tensors |
|        | and fused AdamW; resnet18 at batch 256 on CIFAR-sized tensors and the convnet on mnist5k; settings |
|        | `fp32`, `bf16` (autocast), `channels_last` (bf16 + channels-last) and `compile` (bf16 + channels-last + |
|        | torch.compile), each added to the one before, as one would turn them on. Target >= 0.95 |
| `frozen` | per-epoch speed-up of `head_only` with the prefix cache (`strategy.bn=eval`, so the frozen body is |
|          | static and cached) over all layers training (`strategy=never`), after the first epoch |
| `fastai` | wall time of `strategy=full_unfreeze` / fastai's `fine_tune`, same model, data, start weights and |
|          | epochs (resnet18 workload, fp32). Target <= 1.0 |
| `mfu` | with every `loop` entry: images per second of both sides and model FLOP utilisation, FLOPs per |
|       | image (forward + backward, counted by ``torch.utils.flop_counter.FlopCounterMode``) x images per |
|       | second / the device's peak dense bf16 FLOP/s (:data:`PEAK_BF16_TFLOPS`, or ``--peak-tflops``) |

Every comparison is a ratio of two sides measured in the same process, alternating which side goes first,
after a warm-up round that is not kept (it holds the first epoch, compilation, cuDNN and allocator warm-up);
the value is the median of the per-round ratios (``--repeats`` rounds). In ``loop`` both sides train side
by side: after each harness epoch a hook runs the plain loop's epochs, so that the rounds go H P | P H | H P.
Seconds on a GPU are taken after a ``torch.cuda.synchronize``. Both sides see the process-wide settings the
harness makes (``cudnn.benchmark`` off, as in every harness run; TF32 as torch's defaults).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import platform
import time
import traceback
import warnings
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks import bench
from benchmarks.bench import alternating, median
from harness.assemble import assemble_run
from harness.config.compose import compose_config
from harness.engine.hooks import Hook
from harness.engine.loop import autocast, fit
from harness.record import write_json_atomic

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, in TFLOP/s, matched against
# torch.cuda.get_device_name() in this order. NVL parts run at other clocks and are left out on purpose.
PEAK_BF16_TFLOPS = (
    ("H200", 989.0),  # H200 SXM
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # H100 SXM
    ("A100", 312.0),  # SXM and PCIe
)

COMMON = [
    "schedule=constant",
    "optim=adamw",
    "lr=1e-3",
    "progress=false",
    "checkpoint.save=false",
    "test_every_epoch=false",
]
# name -> (full size, tiny size): the same model and data source; tiny has a handful of images.
WORKLOADS = {
    "resnet18_cifar": (
        [
            "model=resnet18",
            "data=synthetic",
            "data.image_size=32",
            "data.channels=3",
            "data.per_class=2560",  # 17,920 train images: 70 full batches (one shape for torch.compile)
            "batch_size=256",
        ],
        ["model=resnet18", "data=synthetic", "data.image_size=16", "data.channels=3", "data.num_classes=2"]
        # 4 train images, one full batch (one shape for torch.compile): a bf16 backward on a CPU without
        # bf16 instructions costs ~0.5 s an image, whatever its size
        + ["data.per_class=4", "batch_size=4"],
    ),
    "convnet_mnist5k": (
        ["model=convnet", "data=mnist5k", "batch_size=64"],
        ["model=convnet", "data=mnist5k", "data.train_fraction=0.01", "data.val_fraction=0.02"]
        + ["data.test_fraction=0.02", "batch_size=25"],  # 50 train images: two full batches
    ),
}
VARIANTS = {  # each adds to the one before
    "fp32": [],
    "bf16": ["speed.precision=bf16"],
    "channels_last": ["speed.precision=bf16", "speed.channels_last=true"],
    "compile": ["speed.precision=bf16", "speed.channels_last=true", "speed.compile=true"],
}
SECTIONS = ("syncs", "loop", "frozen", "fastai")


@functools.cache
def _composed(overrides: tuple[str, ...]):
    return compose_config(list(overrides))


def config(overrides: list[str]):
    """The composed config tree for ``overrides``; composed once per distinct list (Hydra's compose is the
    slow part of setting up a tiny run), a fresh copy each call."""
    return copy.deepcopy(_composed(tuple(overrides)))


def peak_bf16_tflops(device_name: str) -> tuple[float | None, str]:
    """The peak of :data:`PEAK_BF16_TFLOPS` for a device name, and where it came from."""
    if "NVL" not in device_name:
        for key, tflops in PEAK_BF16_TFLOPS:
            if key in device_name:
                return tflops, f"table: '{key}' (dense bf16, NVIDIA data sheet)"
    return None, f"no table entry for '{device_name}'; give --peak-tflops"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_image(net: torch.nn.Module, x: torch.Tensor) -> float:
    """Forward + backward FLOPs of one image (matmuls and convolutions, as FLOP counters count them), on a
    CPU copy in float32 with a batch of two."""
    from torch.utils.flop_counter import FlopCounterMode

    model = copy.deepcopy(net).float().cpu().to(memory_format=torch.contiguous_format)
    batch = x[:2].float().cpu().contiguous()
    counter = FlopCounterMode(display=False)
    with counter:
        model(batch).sum().backward()
    return counter.get_total_flops() / len(batch)


class PlainLoop:
    """The minimal loop anyone would write on a GPU: a device permutation, forward, loss, backward, step."""

    def __init__(self, run, optim_cfg: dict, bf16: bool, compiled: bool, backend: str):
        self.net = copy.deepcopy(run.model.net)  # same init and memory layout as the harness's
        self.x, self.y = run.data.train.x, run.data.train.y  # the harness's own tensors on the device
        self.batch_size, self.device, self.bf16 = run.batch_size, run.device, bf16
        self.optimizer = torch.optim.AdamW(
            self.net.parameters(),
            lr=1e-3,
            betas=tuple(optim_cfg.get("betas", (0.9, 0.99))),
            eps=float(optim_cfg.get("eps", 1e-5)),
            weight_decay=float(optim_cfg.get("weight_decay", 0.01)),
            fused=True,
        )
        self.forward = torch.compile(self.net, backend=backend) if compiled else self.net

    def epoch(self, seed: int) -> float:
        self.net.train()
        sync(self.device)
        started = time.perf_counter()
        generator = torch.Generator(device=self.device).manual_seed(seed)
        order = torch.randperm(len(self.x), device=self.device, generator=generator)
        for start in range(0, len(self.x), self.batch_size):
            idx = order[start : start + self.batch_size]
            self.optimizer.zero_grad(set_to_none=True)
            with autocast(self.device, self.bf16):
                loss = F.cross_entropy(self.forward(self.x[idx]).float(), self.y[idx])
            loss.backward()
            self.optimizer.step()
        sync(self.device)
        return time.perf_counter() - started


class Alongside(Hook):
    """Runs the plain loop's epochs between the harness's, so that round r is H P for even r, P H for odd r:
    after harness epoch e (even) come plain epochs e and e + 1."""

    def __init__(self, plain: PlainLoop, rounds: int):
        self.plain, self.rounds, self.seconds = plain, rounds, []

    def on_epoch_end(self, run, entry: dict) -> None:
        e = entry["epoch"] - 1
        if e % 2 == 0:
            for r in (e, e + 1):
                if r < self.rounds:
                    self.seconds.append(self.plain.epoch(seed=r))


def base_overrides(workload: str, args) -> list[str]:
    """The workload's config overrides at the run's size; real CIFAR-10 for resnet18 when ``--cifar-root``
    holds it (full size only), else the CIFAR-sized synthetic tensors."""
    full, small = WORKLOADS[workload]
    over = small if args.tiny else full
    if workload == "resnet18_cifar" and not args.tiny and args.cifar_root:
        if (Path(args.cifar_root).expanduser() / "cifar-10-batches-py").is_dir():
            over = ["model=resnet18", "data=cifar10", f"data.root={args.cifar_root}", "batch_size=256"]
    return COMMON + over + [f"threads={args.threads}"]


def loop_entry(workload, variant, args, peak, flops) -> dict:
    over = base_overrides(workload, args) + ["strategy=never"] + VARIANTS[variant]
    rounds = args.repeats + 1
    cfg = config(over + [f"epochs={rounds}"])
    run = assemble_run(cfg)
    run.compile_backend = args.compile_backend
    plain = PlainLoop(run, dict(cfg.optim), run.bf16, run.compile, args.compile_backend)
    alongside = Alongside(plain, rounds)
    run.hooks = [alongside]
    fit(run)
    # the history's seconds: the epoch's steps and its closing NaN/Inf read (a sync), without evaluation
    harness_s = [h["seconds"] for h in run.history][1:]
    plain_s = alongside.seconds[1:]
    ratios = [p / h for p, h in zip(plain_s, harness_s, strict=True)]
    n = len(run.data.train)
    ips = {"harness": n / median(harness_s), "plain": n / median(plain_s)}
    ratio = median(ratios)
    return {
        "workload": workload,
        "variant": variant,
        "settings": VARIANTS[variant],
        "metric": "harness epoch throughput / plain PyTorch loop",
        "ratio": ratio,
        "ratios": ratios,
        "ratio_of_medians": median(plain_s) / median(harness_s),
        "target": ">= 0.95",
        "ok": ratio >= 0.95,
        "seconds": {"harness": median(harness_s), "plain": median(plain_s)},
        "images_per_s": ips,
        "mfu": {k: (flops * v / (peak * 1e12) if peak else None) for k, v in ips.items()},
    }


def frozen_entry(workload, args) -> dict:
    base = base_overrides(workload, args) + ["epochs=2"]
    sides = {
        "head_only_cached": base + ["strategy=head_only", "strategy.bn=eval"],
        "all_layers": base + ["strategy=never"],
    }

    def side(over):
        def measure(_):
            run = assemble_run(config(over))
            fit(run)
            first, second = run.history
            return second["seconds"], first["seconds"], second["cached_groups"]

        return measure

    kept = alternating(args.repeats, {name: side(over) for name, over in sides.items()})
    cached, cached_first, groups = (list(v) for v in zip(*kept["head_only_cached"], strict=True))
    full, full_first, _ = (list(v) for v in zip(*kept["all_layers"], strict=True))
    speedups = [a / b for a, b in zip(full, cached, strict=True)]
    return {
        "workload": workload,
        "metric": "per-epoch speed-up of head_only (prefix cached) over all layers training, after epoch 1",
        "speedup": median(speedups),
        "speedups": speedups,
        "cached_groups": groups[0],
        "seconds": {"head_only_cached": median(cached), "all_layers": median(full)},
        "first_epoch_seconds": {"head_only_cached": median(cached_first), "all_layers": median(full_first)},
    }


def fastai_entry(args, workload: str = "resnet18_cifar", epochs: int = 1) -> dict:
    try:
        import fastai  # noqa: F401
    except ImportError:
        return {"workload": workload, "skipped": "fastai not installed (pip install -e '.[bench]')"}
    over = base_overrides(workload, args)
    over += ["strategy=full_unfreeze", f"strategy.epochs={epochs}", "strategy.bn=train"]

    def round_inputs(r: int):
        cfg = config(over + [f"seed={r}"])
        return cfg, copy.deepcopy(assemble_run(cfg).model.net.state_dict())

    def harness_side(inputs):
        cfg, start_weights = inputs
        run = assemble_run(cfg)
        run.model.net.load_state_dict(start_weights)
        started = time.perf_counter()
        fit(run)
        return time.perf_counter() - started, run.history[-1]["test_acc"]

    def fastai_side(inputs):
        cfg, start_weights = inputs
        return bench.fastai_fine_tune(cfg, start_weights, epochs, batch_size=int(cfg.batch_size))

    kept = alternating(args.repeats, {"harness": harness_side, "fastai": fastai_side}, setup=round_inputs)
    ours, ours_acc = (list(v) for v in zip(*kept["harness"], strict=True))
    theirs, theirs_acc = (list(v) for v in zip(*kept["fastai"], strict=True))
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    ratio = median(ratios)
    return {
        "workload": workload,
        "metric": f"wall time of full_unfreeze / fastai fine_tune({epochs}) (fp32, 1 + {epochs} epochs)",
        "ratio": ratio,
        "ratios": ratios,
        "target": "<= 1.0",
        "ok": ratio <= 1.0,
        "seconds": {"harness": median(ours), "fastai": median(theirs)},
        "test_acc": {"harness": median(ours_acc), "fastai": median(theirs_acc)},
    }


class SyncWatch(Hook):
    """Turns CUDA's sync debug mode to "warn" for the second epoch: its steps, NaN/Inf reads, evaluation."""

    def on_epoch_end(self, run, entry: dict) -> None:
        torch.cuda.set_sync_debug_mode("warn" if entry["epoch"] == 1 else "default")


def syncs_entry(workload: str, args) -> dict:
    """Host syncs in one harness epoch (fp32), counted by ``torch.cuda.set_sync_debug_mode``: a handful
    (the NaN/Inf read every CHECK_EVERY steps and at the end, the evaluation's sums), not one per step."""
    if not torch.cuda.is_available():
        return {"skipped": "needs CUDA (torch.cuda.set_sync_debug_mode)"}
    from harness.engine.finite import CHECK_EVERY

    run = assemble_run(config(base_overrides(workload, args) + ["strategy=never", "epochs=2"]))
    run.hooks = [SyncWatch()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit(run)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    steps = -(-len(run.data.train) // run.batch_size)
    return {
        "metric": "host syncs in the second epoch (steps, NaN/Inf reads, validation and test evaluation)",
        "syncs": len(syncs),
        "steps": steps,
        "check_every": CHECK_EVERY,
        "ok": len(syncs) < steps,
        "first_messages": sorted(set(syncs))[:5],
    }


def plan(sections: list[str]) -> list[tuple[str, str, str | None]]:
    """(section, workload, variant) in the order they run: the compile entries last, as they cost most."""
    jobs = []
    if "syncs" in sections:
        jobs += [("syncs", "resnet18_cifar", None)]
    if "loop" in sections:
        jobs += [("loop", w, v) for w in WORKLOADS for v in VARIANTS if v != "compile"]
    if "frozen" in sections:
        jobs += [("frozen", w, None) for w in WORKLOADS]
    if "fastai" in sections:
        jobs += [("fastai", "resnet18_cifar", None)]
    if "loop" in sections:
        jobs += [("loop", w, "compile") for w in WORKLOADS]
    return jobs


def table(result: dict) -> str:
    lines = ["| section | workload | setting | value | target |", "|---|---|---|---|---|"]
    for e in result["loop"]:
        value = (
            e.get("skipped")
            or e.get("error")
            or f"{e['ratio']:.3f} ({e['images_per_s']['harness']:.0f} img/s)"
        )
        lines.append(f"| loop | {e['workload']} | {e['variant']} | {value} | >= 0.95 |")
    for e in result["frozen"]:
        value = e.get("skipped") or e.get("error") or f"{e['speedup']:.2f}x"
        lines.append(f"| frozen | {e['workload']} | head_only cached / all layers | {value} | - |")
    if result["syncs"]:
        e = result["syncs"]
        value = e.get("skipped") or e.get("error") or f"{e['syncs']} in {e['steps']} steps"
        lines.append(f"| syncs | {e['workload']} | one harness epoch | {value} | < 1 per step |")
    if result["fastai"]:
        e = result["fastai"]
        value = e.get("skipped") or e.get("error") or f"{e['ratio']:.3f}"
        lines.append(f"| fastai | {e['workload']} | full_unfreeze / fine_tune | {value} | <= 1.0 |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/bench/gpu.json")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (automatic without CUDA)")
    parser.add_argument("--repeats", type=int, default=None, help="kept rounds per comparison (5; tiny: 1)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="no comparison starts after this")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak dense bf16 TFLOP/s to use")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"subset of {','.join(SECTIONS)}")
    parser.add_argument("--threads", default="auto", help="torch threads (the harness's threads=)")
    parser.add_argument(
        "--cifar-root", default=None, help="a folder with cifar-10-batches-py/: real CIFAR-10 for resnet18"
    )
    parser.add_argument(
        "--compile-backend", default=None, help="torch.compile backend (inductor; tiny: eager, no codegen)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats={args.repeats} must be >= 1")
    cuda = torch.cuda.is_available()
    args.tiny = args.tiny or not cuda
    args.repeats = args.repeats or (1 if args.tiny else 5)
    args.compile_backend = args.compile_backend or ("eager" if args.tiny else "inductor")
    device_name = torch.cuda.get_device_name(0) if cuda else "cpu"
    if args.peak_tflops is not None:
        peak, source = args.peak_tflops, "--peak-tflops"
    else:
        peak, source = peak_bf16_tflops(device_name)

    result: dict = {
        "meta": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": platform.node(),
            "device": device_name,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cpu_count": os.cpu_count(),
            "tiny": args.tiny,
            "repeats": args.repeats,
            "budget_s": args.budget_s,
            "compile_backend": args.compile_backend,
            "threads": args.threads,
        },
        "peak": {"bf16_tflops": peak, "source": source, "device": device_name},
        "workloads": {},
        "loop": [],
        "frozen": [],
        "fastai": None,
        "syncs": None,
    }
    flops: dict[str, float] = {}
    for w in WORKLOADS:
        cfg = config(base_overrides(w, args) + ["epochs=1"])
        run = assemble_run(cfg)
        flops[w] = flops_per_image(run.model.net, run.data.train.x)
        result["workloads"][w] = {
            "overrides": base_overrides(w, args),
            "data": cfg.data.name,
            "train_images": len(run.data.train),
            "batch_size": run.batch_size,
            "image_shape": list(run.data.train.x.shape[1:]),
            "flops_per_image": flops[w],
        }

    jobs = plan(sections)
    for i, (section, workload, variant) in enumerate(jobs):
        label = f"{section} {workload}" + (f" {variant}" if variant else "")
        print(f"[{i + 1}/{len(jobs)}] {label} ...", flush=True)
        entry_started = time.perf_counter()
        try:
            if entry_started - started > args.budget_s:
                entry = {"skipped": "time budget (--budget-s) spent"}
            elif section == "syncs":
                entry = syncs_entry(workload, args)
            elif section == "loop":
                entry = loop_entry(workload, variant, args, peak, flops[workload])
            elif section == "frozen":
                entry = frozen_entry(workload, args)
            else:
                entry = fastai_entry(args, workload)
        except Exception as e:  # GPU time is scarce: one failing comparison must not lose the others
            traceback.print_exc()
            entry = {"error": f"{type(e).__name__}: {e}"}
        entry = {"workload": workload, "variant": variant, **entry}
        entry["wall_s"] = time.perf_counter() - entry_started
        if section in ("fastai", "syncs"):
            result[section] = entry
        else:
            result[section].append(entry)
        print(f"    {json.dumps(entry)}", flush=True)
    result["meta"]["seconds"] = time.perf_counter() - started
    # the process-wide settings both sides ran under (assemble_run turns cudnn.benchmark off)
    result["meta"]["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    result["meta"]["tf32"] = {
        "matmul": torch.backends.cuda.matmul.allow_tf32,
        "cudnn": torch.backends.cudnn.allow_tf32,
    }
    print(table(result))
    write_json_atomic(Path(args.out), result)
    print(f"written: {args.out}")
    return result


if __name__ == "__main__":
    main()
