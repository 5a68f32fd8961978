"""``python -m harness.train``: one run (or, with ``-m``, a Hydra multirun of them).

One run, top to bottom: config -> data -> model + layer groups -> freeze plan -> loop -> result record.
:func:`train` is an ordinary function of a composed config (tests call it directly); :func:`main` only
wraps it for Hydra and turns user errors into one line and exit code 2.
"""

from __future__ import annotations

import os
import random
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

import harness
from harness import checkpoint, optim, record, transfer
from harness.atomic import check_writable
from harness.compose import CONF_DIR as CONF_PATH
from harness.data import load_data
from harness.errors import ConfigError, NumericalError
from harness.freezing import split_group_params
from harness.hooks import Hook, StopRun
from harness.logger import build_logger_hooks
from harness.loop import Run, enter_phase, fit
from harness.models import build_model
from harness.progress import ProgressHook
from harness.store import RunStore, mark_started, reused_record
from harness.strategy import compile_plan
from harness.summary import phase_rows

# An absolute path: Hydra resolves a relative one against the package when the app is not __main__.
CONF_DIR = str(CONF_PATH)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available here; use device=auto or device=cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not a device; use auto, cpu or cuda[:N]") from None


def parallel_jobs() -> int:
    """How many jobs of this sweep run at once on this machine (a process-pool launcher's n_jobs), else 1."""
    try:
        from hydra.core.hydra_config import HydraConfig

        launcher = HydraConfig.get().launcher
    except (ImportError, ValueError):  # not inside a Hydra app
        return 1
    jobs = launcher.get("n_jobs") or 1
    return max(1, int(jobs)) if int(jobs) > 0 else os.cpu_count() or 1


def set_threads(threads) -> int:
    """Torch's intra-op threads: given, or the cores shared fairly among parallel jobs (no oversubscription)."""
    if threads is None or threads == "auto":
        threads = int(os.environ.get("OMP_NUM_THREADS") or max(1, (os.cpu_count() or 1) // parallel_jobs()))
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ConfigError(f"threads={threads!r} must be a positive integer or auto")
    torch.set_num_threads(threads)
    return threads


def set_determinism(deterministic: bool) -> None:
    """``deterministic=true`` (Lightning's flag of that name): only deterministic kernels, on GPU too. Set for
    every run, as the settings are process-wide and one process may run several jobs of a sweep."""
    if not isinstance(deterministic, bool):
        raise ConfigError(f"deterministic={deterministic!r} must be true or false")
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it before its first call
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False


def environment(device: torch.device, run: Run) -> dict:
    """Versions and machine, and the settings that decide whether a rerun gives the same numbers."""
    settings = {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "threads": torch.get_num_threads(),
        "bf16": run.bf16,
        "compile": run.compile,
    }
    # What is on that can change the numbers of a rerun with the same seed. On CPU nothing: the same seed and
    # thread count give the same numbers (tests/test_train.py).
    nondeterministic = []
    if device.type == "cuda" and not settings["deterministic_algorithms"]:
        nondeterministic.append(
            "CUDA kernels with atomic adds (e.g. convolution backward): set deterministic=true"
        )
    return {
        "torch": torch.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        **settings,
        "nondeterministic": nondeterministic,
    }


def memory_mb() -> dict:
    """This process's resident memory now and at its peak (Linux; empty elsewhere): a soak reads these per run."""
    try:
        import resource

        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return {
            "rss_mb": pages * os.sysconf("SC_PAGE_SIZE") / 2**20,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    except (OSError, ValueError, ImportError, IndexError):
        return {}


def build_hooks(cfg: DictConfig, config: dict, rid: str) -> list[Hook]:
    hooks: list[Hook] = [ProgressHook(epoch_lines=bool(cfg.get("progress", True)))]
    hooks += build_logger_hooks(cfg.get("logger"), config, rid)
    # [diagnostics] Before the trial hook: a pruned run still measures the epoch it stops after.
    diagnostics = cfg.get("diagnostics") or {}
    if diagnostics.get("weights", False):
        from harness.diagnostics import WeightDiagnostics

        hooks.append(WeightDiagnostics())
    if diagnostics.get("cka", False):
        from harness.cka import CkaHook

        hooks.append(CkaHook(cfg.model, cfg.init.get("from"), int(diagnostics.get("probe_size", 256))))
    # [search] A job of an Optuna study reports val_acc to its trial every epoch and stops when pruned.
    if cfg.get("trial") and cfg.trial.get("number") is not None:
        from harness.search.trial_hook import TrialHook

        hooks.append(TrialHook(cfg.trial))
    return hooks


def build_run(cfg: DictConfig) -> Run:
    """Data, model with its layer groups, freeze plan and optimizer settings, all checked; nothing trained."""
    for key, minimum in (("seed", 0), ("batch_size", 1)):
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"{key}={value!r} must be an integer >= {minimum}")
    optim.check(cfg.optim)
    device = resolve_device(cfg.device)
    set_threads(cfg.get("threads"))
    set_determinism(cfg.get("deterministic", False))
    seed_everything(cfg.seed)
    data = load_data(cfg.data, cfg.get("split"), half=cfg.get("half"))
    model = build_model(
        cfg.model, num_classes=data.num_classes, in_channels=data.in_channels, image_size=data.image_size
    )
    init_from = cfg.init.get("from")
    if init_from:
        source = checkpoint.load(init_from)
        n = cfg.init.get("groups")
        if n is not None and not (-len(model.groups) < n <= len(model.groups)):
            raise ConfigError(f"init.groups={n} is out of range for {len(model.groups)} layer groups")
        checkpoint.load_model_state(model, source, init_from, n_groups=n)
    params = split_group_params(model)
    plan = compile_plan(cfg.strategy, cfg.schedule, model.names)
    speed = cfg.get("speed") or {}
    precision = str(speed.get("precision", "32"))
    if precision not in ("32", "bf16"):
        raise ConfigError(f"speed.precision={speed.get('precision')!r}; choose 32 or bf16")
    channels_last = bool(speed.get("channels_last", False))
    model.net.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    return Run(
        model=model,
        params=params,
        plan=plan,
        data=data.on(device, channels_last=channels_last),
        optim_cfg=dict(cfg.optim),
        batch_size=int(cfg.batch_size),
        seed=int(cfg.seed),
        device=device,
        prefix_cache=bool(cfg.get("prefix_cache", True)),
        bf16=precision == "bf16",
        compile=bool(speed.get("compile", False)),
        test_every_epoch=bool(cfg.get("test_every_epoch", True)),
    )


def train(cfg: DictConfig, output_dir: str | Path, extra: dict | None = None) -> dict:
    """Train one run as ``cfg`` says, write ``output_dir/result.json`` and return the record.

    A transferability treatment (``transfer.treatment``) is first rewritten into the ordinary run it is
    (:mod:`harness.transfer`); ``extra`` sections are added to the record as they are.
    """
    treatment = transfer.treatment_of(cfg)
    if treatment is not None:
        return transfer.run_treatment(cfg, output_dir, treatment, train)
    output_dir = Path(output_dir)
    check_writable(output_dir, "the run's output folder")
    check_writable(cfg.checkpoint.dir, "checkpoint.dir")
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra", None)
    rid = record.run_id(config)
    store = RunStore(cfg.checkpoint.dir, rid)
    resume = bool(cfg.get("resume", True))
    with store.lock():  # a second job with this identity waits here, then reuses the result
        stored = store.finished() if resume else None
        if stored is not None:
            result = reused_record(stored, config, store, extra)
            print(
                f"run {rid} finished earlier (in {result['reused']['from']}): reusing its result "
                f"(resume=false trains it again)",
                flush=True,
            )
            record.write_json_atomic(output_dir / record.RECORD_NAME, result)
            return result
        result = train_once(cfg, config, rid, store, output_dir, resume, extra)
        store.save_finished(result, output_dir)
    return result


def train_once(
    cfg: DictConfig,
    config: dict,
    rid: str,
    store: RunStore,
    output_dir: Path,
    resume: bool,
    extra: dict | None,
) -> dict:
    started = datetime.now(UTC)
    run = build_run(cfg)  # everything that can be wrong with the input fails here, before any training
    device = run.device
    ckpt_file = store.checkpoint
    warnings = []
    if not resume:
        store.forget()
    mark_started(output_dir, rid, config.get("experiment_name"))

    def save(run: Run) -> None:
        checkpoint.save(
            ckpt_file,
            {
                "model": run.model.net.state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "plan": run.plan.to_dict(),
                "epochs_done": run.epochs_done,
                "history": run.history,
                "groups": [{"name": g.name, "modules": list(g.prefixes)} for g in run.model.groups],
                "config": config,
                "run_id": rid,
                "rng": torch.get_rng_state(),
            },
        )

    run.hooks = build_hooks(cfg, config, rid)
    run.save_checkpoint = save if cfg.checkpoint.save else None
    if resume and ckpt_file.is_file():
        try:
            state = checkpoint.load(ckpt_file)
        except ConfigError as e:  # a damaged checkpoint is never used: the run starts over
            warnings.append(f"ignored the checkpoint of an earlier attempt and started over: {e}")
            print(f"warning: {warnings[-1]}", flush=True)
        else:
            resume_from(run, state, ckpt_file)
            if run.epochs_done:
                warnings.append(f"resumed from {ckpt_file} after epoch {run.epochs_done}")

    status, reason = "ok", None
    clock = time.perf_counter()
    try:
        fit(run)
    except StopRun as stop:
        status, reason = stop.status, stop.reason
    except NumericalError as e:
        status, reason = "failed", f"NumericalError: {e}"
    except Exception as e:  # a sweep must go on: the record says what happened
        status, reason = "failed", f"{type(e).__name__}: {e}"
        traceback.print_exc()
    seconds = time.perf_counter() - clock

    result = make_record(cfg, config, rid, run, status, reason, started, seconds, ckpt_file, device)
    result["warnings"] += warnings
    result.update(extra or {})
    for hook in run.hooks:
        try:
            hook.on_run_end(run, result)
        except Exception as e:  # a hook failing at the end (a logger, a storage) must not lose the result
            result["warnings"].append(
                f"{type(hook).__name__} failed at the end of the run: {type(e).__name__}: {e}"
            )
            traceback.print_exc()
    record.write_json_atomic(output_dir / record.RECORD_NAME, result)
    return result


def resume_from(run: Run, state: dict, path: Path) -> None:
    """Continue where a checkpoint stopped: weights, optimizer, freeze state, history, RNG."""
    if state["plan"] != run.plan.to_dict():
        raise ConfigError(
            f"checkpoint '{path}' was made with another freeze plan; delete it or set resume=false"
        )
    run.model.net.load_state_dict(state["model"])
    run.epochs_done = int(state["epochs_done"])
    run.history = list(state["history"])
    torch.set_rng_state(state["rng"])
    if run.epochs_done < run.plan.total_epochs:
        index, _ = run.plan.phase_at(run.epochs_done)
        enter_phase(run, index, first_epoch_of_phase=False)  # restores requires_grad and builds the optimizer
        run.optimizer.load_state_dict(state["optimizer"])
    print(f"resumed from {path} after epoch {run.epochs_done}/{run.plan.total_epochs}")


def make_record(cfg, config, rid, run: Run, status, reason, started, seconds, ckpt_file, device) -> dict:
    history = run.history
    last = history[-1] if history else {}
    best_k = int(cfg.get("best_k", 10))
    test_accs = [h["test_acc"] for h in history if h["test_acc"] is not None]
    samples = sum(len(run.data.train) for _ in history)
    return {
        "version": record.RECORD_VERSION,
        "run_id": rid,
        "status": status,
        "reason": reason,
        "stopped_epoch": run.epochs_done if status != "ok" else None,
        "config": config,
        "plan": run.plan.to_dict(),
        "groups": [
            {"name": g.name, "modules": list(g.prefixes), "params": sum(p.numel() for p in gp.all)}
            for g, gp in zip(run.model.groups, run.params, strict=True)
        ],
        "summary": [phase_rows(run.model, run.params, run.plan, i) for i in range(len(run.plan.phases))],
        "metrics": {
            "val_acc": last.get("val_acc"),
            "val_loss": last.get("val_loss"),
            "test_acc": last.get("test_acc"),
            "test_loss": last.get("test_loss"),
            "best_val_acc": max((h["val_acc"] for h in history), default=None),
            "test_acc_best_k": record.best_k_mean(test_accs, best_k),
            "best_k": min(best_k, len(test_accs)),
        },
        "history": history,
        "data": {
            "name": run.data.name,
            "classes": run.data.classes,
            "train": len(run.data.train),
            "val": len(run.data.val),
            "test": len(run.data.test),
        },
        "timing": {
            "seconds": seconds,
            "train_seconds": sum(h["seconds"] for h in history),
            "samples_per_s": samples / sum(h["seconds"] for h in history) if history else None,
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            **memory_mb(),
        },
        "environment": environment(device, run),
        "harness": {"version": harness.__version__, "git_commit": record.git_commit()},
        "checkpoint": str(ckpt_file) if cfg.checkpoint.save and ckpt_file.exists() else None,
        "warnings": [],
    }


def _output_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    output_dir = _output_dir()
    try:
        result = train(cfg, output_dir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        if _is_multirun():  # this job is bad; the other jobs of the sweep still run, and its record says why
            config = OmegaConf.to_container(cfg, resolve=False)
            config.pop("hydra", None)
            failed = record.failed_before_training(config, f"ConfigError: {e}")
            record.write_json_atomic(Path(output_dir) / record.RECORD_NAME, failed)
            return None
        sys.exit(2)
    print(
        f"{result['status']}: val_acc {result['metrics']['val_acc']} test_acc {result['metrics']['test_acc']}; "
        f"result in {os.path.join(output_dir, record.RECORD_NAME)}",
        flush=True,
    )
    if result["status"] == "failed" and not _is_multirun():
        print(f"error: run failed: {result['reason']}", file=sys.stderr, flush=True)
        sys.exit(1)
    return result["metrics"]["val_acc"]


if __name__ == "__main__":
    # Run the task function of the importable module, not of __main__: process-pool launchers (joblib,
    # submitit) pickle it, and a function of __main__ is pickled by value with all of torch behind it.
    from harness.train import main as importable_main

    importable_main()
