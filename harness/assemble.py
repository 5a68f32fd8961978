"""One place that turns a config into a run: data, model and layer groups, plan, optimizer settings, device,
threads, determinism and seeds. Training, the LR finder, the benchmarks, CKA and the transfer experiment all
assemble their networks here, so they see exactly the same thing for the same config.

Everything that can be wrong with the input fails in :func:`assemble_run`, before any training.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from omegaconf import DictConfig

from harness.config import checks
from harness.data import DataBundle, load_data
from harness.engine import checkpoint, optim
from harness.engine.adaptive import build_controller
from harness.engine.early_stop import EarlyStop
from harness.engine.loop import Run
from harness.errors import ConfigError
from harness.models import GroupedModel, build_model
from harness.plan.freezing import split_group_params
from harness.plan.strategies import NEEDS_PRETRAINED, compile_plan

PRECISIONS = ("32", "bf16")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str):
        raise ConfigError(f"device={name!r} is not a device; use auto, cpu or cuda[:N]")
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
    checks.boolean(deterministic, "deterministic")
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it before its first call
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False


def model_for(model_cfg, data: DataBundle) -> GroupedModel:
    """The network of ``model_cfg`` shaped for ``data`` (its classes, channels and image size)."""
    return build_model(
        model_cfg, num_classes=data.num_classes, in_channels=data.in_channels, image_size=data.image_size
    )


def load_init(model: GroupedModel, init_cfg, *, load: bool = True) -> list[str]:
    """``init.from`` / ``init.groups``: start from the first n groups of a checkpoint (checked; loaded if asked).
    Returns the names of the groups that come (or, with ``init.base`` not yet fetched, will come) from it."""
    if not init_cfg.get("from") and not init_cfg.get("base"):
        return []
    n = init_cfg.get("groups")
    if n is not None and not (-len(model.groups) < n <= len(model.groups)):
        raise ConfigError(f"init.groups={n} is out of range for {len(model.groups)} layer groups")
    path = init_cfg.get("from")
    if load and path:
        checkpoint.load_model_state(model, checkpoint.load(path), path, n_groups=n)
    return model.names if n is None else model.names[:n]


def check_pretrained(strategy: str, init_cfg) -> None:
    """``lp_ft`` and ``l2sp`` are defined relative to pretrained weights (a probe of learnt features; a pull
    towards them). From random weights they would still run, but as another method reported under their
    name, so this is an error, not a warning."""
    if strategy in NEEDS_PRETRAINED and not (init_cfg.get("from") or init_cfg.get("base")):
        raise ConfigError(
            f"strategy={strategy} needs a pretrained start and init.from and init.base are both null: set "
            f"init.from=<checkpoint.pt> or init.base=A (with half=B and a class split); a probe of random "
            f"features is strategy=head_only"
        )


def early_stop_of(section) -> EarlyStop | None:
    """``early_stopping``: none (patience null), or stop on a validation plateau after ``reductions`` lr cuts."""
    if section.get("patience") is None:
        return None
    return EarlyStop(
        checks.integer(section.get("patience"), "early_stopping.patience", low=1),
        reductions=checks.integer(section.get("reductions", 0), "early_stopping.reductions", low=0),
        factor=checks.number(section.get("factor", 0.1), "early_stopping.factor", above=0.0, below=1.0),
    )


def assemble_run(cfg: DictConfig, *, load_weights: bool = True) -> Run:
    """Data, model with its layer groups, freeze plan and optimizer settings, all checked; nothing trained.

    ``load_weights=False`` checks ``init`` without reading its checkpoint: the transfer experiment checks a
    treatment this way before its base exists.
    """
    seed = checks.integer(cfg.get("seed"), "seed", low=0)
    # The seed of this network's fresh weights and batch order: the transfer experiment draws one per network.
    init_seed = (
        seed if cfg.get("init_seed") is None else checks.integer(cfg.get("init_seed"), "init_seed", low=0)
    )
    checks.integer(cfg.get("batch_size"), "batch_size", low=1)
    checks.integer(cfg.get("best_k", 3), "best_k", low=1)
    early_stop = early_stop_of(cfg.get("early_stopping") or {})
    optim.check(cfg.optim)
    device = resolve_device(cfg.device)
    set_threads(cfg.get("threads"))
    set_determinism(cfg.get("deterministic", False))
    seed_everything(init_seed)
    data = load_data(cfg.data, cfg.get("split"), half=cfg.get("half"))
    model = model_for(cfg.model, data)
    transferred = load_init(model, cfg.init, load=load_weights)
    params = split_group_params(model)
    plan = compile_plan(cfg.strategy, cfg.schedule, model.names)
    check_pretrained(plan.strategy, cfg.init)
    optim_cfg = dict(cfg.optim)
    if (plan.adaptive or {}).get("rule") == "l2sp":
        optim_cfg["weight_decay"] = 0.0  # the L2-SP penalty takes weight decay's place
    speed = cfg.get("speed") or {}
    precision = str(speed.get("precision", "32"))
    if precision not in PRECISIONS:
        raise ConfigError(f"speed.precision={speed.get('precision')!r}; choose 32 or bf16")
    channels_last = bool(speed.get("channels_last", False))
    model.net.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    return Run(
        model=model,
        params=params,
        plan=plan,
        data=data.on(device, channels_last=channels_last),
        optim_cfg=optim_cfg,
        batch_size=int(cfg.batch_size),
        seed=init_seed,
        device=device,
        prefix_cache=bool(cfg.get("prefix_cache", True)),
        bf16=precision == "bf16",
        compile=bool(speed.get("compile", False)),
        test_every_epoch=bool(cfg.get("test_every_epoch", True)),
        early_stop=early_stop,
        adaptive=build_controller(plan, params, transferred, device),
    )
