"""Running one job: the run store decides whether to reuse, continue or train; the loop trains; the record
is written. A job here is an ordinary run: a transfer treatment reaches this module already turned into one
(:mod:`harness.transfer.plan`), and so does each base it needs.
"""

from __future__ import annotations

import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from harness import record
from harness.assemble import assemble_run, model_for
from harness.atomic import check_writable
from harness.config import checks
from harness.config.compose import CONF_DIR
from harness.data import load_data
from harness.engine import checkpoint
from harness.engine.hooks import Hook, StopRun
from harness.engine.logger import build_logger_hooks
from harness.engine.loop import Run, enter_phase, fit
from harness.engine.preempt import Preempted, PreemptHook
from harness.engine.preempt import active as preemption_watched
from harness.engine.progress import ProgressHook
from harness.errors import ConfigError, NumericalError
from harness.store import RunStore, mark_started, reused_record
from harness.transfer import plan as transfer_plan
from harness.transfer.bases import ensure_base
from harness.transfer.treatments import treatment_of


def prepare(cfg: DictConfig) -> tuple[DictConfig, dict]:
    """The ordinary run that ``cfg`` is, and the sections it adds to the record.

    A plain config is its own run. A transfer treatment is planned (:mod:`harness.transfer.plan`); every
    config of the plan, its bases' and its own, is assembled and so checked completely before any base
    trains; then the bases are fetched from the cache or trained, and the treatment's run points at them.
    """
    if treatment_of(cfg) is None:
        return (cfg, {}) if cfg.init.get("base") is None else from_base(cfg)
    n_groups = len(model_for(cfg.model, load_data(cfg.data, cfg.get("split"), half="B")).groups)
    job = transfer_plan.plan(cfg, n_groups)
    for base_cfg in job.bases.values():
        assemble_run(base_cfg)
    assemble_run(job.run_config(), load_weights=False)
    check_writable(job.cache_dir, "transfer.cache_dir")
    entries = {role: ensure_base(base_cfg, job.cache_dir, run_job) for role, base_cfg in job.bases.items()}
    run_cfg = job.run_config(entries)
    return run_cfg, {"transfer": job.section(entries)}


def from_base(cfg: DictConfig) -> tuple[DictConfig, dict]:
    """``init.base=A``: start from the base trained on half A of this split (fine-tuned here on half B), the
    same cached base the transfer experiment's baseA is: trained once (under a lock) by the first job that
    needs it, with the base settings of ``transfer`` (those of ``conf/transfer/yosinski.yaml`` where the
    config has none). The run stays an ordinary run; its record gets a ``base`` section."""
    half = checks.one_of(cfg.init.base, "init.base", ("A", "B"), what="a half to start from")
    other = "B" if half == "A" else "A"
    if cfg.init.get("from"):
        raise ConfigError(
            f"init.base={half} and init.from={cfg.init['from']} both name a start; set one of them"
        )
    if cfg.get("half") != other:
        raise ConfigError(
            f"init.base={half} starts from the base trained on half {half}, so it fine-tunes on the other: "
            f"set half={other} (and a class split, e.g. split=random_half); half={cfg.get('half')!r}"
        )
    settings = OmegaConf.load(Path(CONF_DIR) / "transfer" / "yosinski.yaml")
    settings.treatment = None
    with_settings = OmegaConf.merge({"transfer": settings}, cfg)  # the config's own values win
    base_cfg = transfer_plan.base_config(with_settings, half)
    assemble_run(base_cfg)
    assemble_run(cfg, load_weights=False)
    cache_dir = str(with_settings.transfer.cache_dir)
    check_writable(cache_dir, "transfer.cache_dir")
    entry = ensure_base(base_cfg, cache_dir, run_job)
    run_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(run_cfg):
        run_cfg.pop("hydra", None)
        run_cfg.init["from"] = str(entry.checkpoint)
    compute = entry.record.get("compute") or {}
    return run_cfg, {"base": {**entry.summary(), "flops": compute.get("flops")}}


def build_hooks(cfg: DictConfig, config: dict, rid: str) -> list[Hook]:
    hooks: list[Hook] = [ProgressHook(epoch_lines=bool(cfg.get("progress", True)))]
    hooks += build_logger_hooks(cfg.get("logger"), config, rid)
    # [diagnostics] Before the trial hook: a pruned run still measures the epoch it stops after.
    diagnostics = cfg.get("diagnostics") or {}
    if diagnostics.get("weights", False):
        from harness.diagnostics.weights import WeightDiagnostics

        hooks.append(WeightDiagnostics())
    if diagnostics.get("cka", False):
        from harness.diagnostics.cka import CkaHook

        hooks.append(CkaHook(cfg.model, cfg.init.get("from"), int(diagnostics.get("probe_size", 256))))
    # [search] A job of an Optuna study reports val_acc to its trial every epoch and stops when pruned.
    if cfg.get("trial") and cfg.trial.get("number") is not None:
        from harness.search.trial_hook import TrialHook

        hooks.append(TrialHook(cfg.trial))
    # [cluster] Last, so every other hook has seen the epoch: a SLURM job's warning signal ends the run at the
    # next safe point, checkpoint saved, and the job is requeued (harness/engine/preempt.py).
    if preemption_watched():
        hooks.append(PreemptHook())
    return hooks


def run_job(cfg: DictConfig, output_dir: str | Path, extra: dict | None = None) -> dict:
    """Run the ordinary run ``cfg`` once: reuse its stored result, continue its checkpoint or train it; write
    ``output_dir/result.json`` and return the record. ``extra`` sections are added to the record as they are.
    """
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
            for hook in build_logger_hooks(cfg.get("logger"), config, rid):
                hook.replay(result)  # the logger asked for gets the stored history, marked as reused
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
    run = assemble_run(cfg)  # everything that can be wrong with the input fails here, before any training
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
                "early_stop": run.early_stop.state() if run.early_stop else None,
                "adaptive": run.adaptive.state(),
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
    except Preempted:  # not finished: no record; the requeued job continues from the checkpoint
        for hook in run.hooks:
            hook.on_run_interrupted(run)
        raise
    except NumericalError as e:
        status, reason = "failed", f"NumericalError: {e}"
    except Exception as e:  # a sweep must go on: the record says what happened
        status, reason = "failed", f"{type(e).__name__}: {e}"
        traceback.print_exc()
    seconds = time.perf_counter() - clock

    result = record.make_record(cfg, config, rid, run, status, reason, started, seconds, ckpt_file, device)
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
    if run.early_stop is not None and state.get("early_stop"):
        run.early_stop.load_state(state["early_stop"])
    if state.get(
        "adaptive"
    ):  # the rule's decisions and state: the resumed run decides as the first would have
        run.adaptive.load_state(state["adaptive"])
    if run.epochs_done < run.total_epochs:
        index, _ = run.adaptive.phase_at(run.epochs_done)
        enter_phase(run, index, first_epoch_of_phase=False)  # restores requires_grad and builds the optimizer
        run.optimizer.load_state_dict(state["optimizer"])
    print(f"resumed from {path} after epoch {run.epochs_done}/{run.total_epochs}")
