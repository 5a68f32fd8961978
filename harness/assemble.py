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

from harness.config import schema
from harness.data import DataBundle, load_data
from harness.data.augment import BatchAugment
from harness.engine import checkpoint
from harness.engine.adaptive import build_controller
from harness.engine.early_stop import EarlyStop
from harness.engine.loop import Run
from harness.errors import ConfigError
from harness.models import GroupedModel, build_model
from harness.models.pretrained import preprocessing_of
from harness.plan.freezing import split_group_params
from harness.plan.strategies import NEEDS_PRETRAINED, compile_plan


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    name = schema.device(name, "device")
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
    if threads is None or threads == "auto":  # any other value passed the schema (assemble_run)
        threads = int(os.environ.get("OMP_NUM_THREADS") or max(1, (os.cpu_count() or 1) // parallel_jobs()))
    torch.set_num_threads(threads)
    return threads


def set_determinism(deterministic: bool) -> None:
    """``deterministic=true`` (Lightning's flag of that name): only deterministic kernels, on GPU too. Set for
    every run, as the settings are process-wide and one process may run several jobs of a sweep."""
    schema.boolean(deterministic, "deterministic")
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it before its first call
    # Only on a change: the call imports torch._inductor (1.5 s), which a run rejected by its checks never needs.
    if torch.are_deterministic_algorithms_enabled() != deterministic or (
        deterministic and torch.is_deterministic_algorithms_warn_only_enabled()
    ):
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
    """``early_stopping`` (checked by the schema): none (patience null), or stop on a validation plateau after
    ``reductions`` lr cuts."""
    if section.get("patience") is None:
        return None
    return EarlyStop(
        int(section["patience"]),
        reductions=int(section.get("reductions", 0)),
        factor=float(section.get("factor", 0.1)),
    )


def assemble_run(cfg: DictConfig, *, load_weights: bool = True) -> Run:
    """Data, model with its layer groups, freeze plan and optimizer settings, all checked; nothing trained.

    ``load_weights=False`` checks ``init`` without reading its checkpoint: the transfer experiment checks a
    treatment this way before its base exists.
    """
    # Every value the config has (keys a generated config lacks are left to their defaults); what needs the
    # data, the model or the machine is checked below as each is built.
    schema.check_config(cfg, strict=False)
    seed = int(cfg.seed)
    # The seed of this network's fresh weights and batch order: the transfer experiment draws one per network.
    init_seed = seed if cfg.get("init_seed") is None else int(cfg.init_seed)
    early_stop = early_stop_of(cfg.get("early_stopping") or {})
    device = resolve_device(cfg.device)
    set_threads(cfg.get("threads"))
    set_determinism(cfg.get("deterministic", False))
    seed_everything(init_seed)
    # Pretrained weights bring their preprocessing (mean, std, input size): known before the data is read.
    preprocessing = preprocessing_of(schema.check_values("model", cfg.model))
    data = load_data(cfg.data, cfg.get("split"), half=cfg.get("half"), preprocessing=preprocessing)
    model = model_for(cfg.model, data)
    transferred = load_init(model, cfg.init, load=load_weights)
    params = split_group_params(model)
    plan = compile_plan(cfg.strategy, cfg.schedule, model.names)
    augment = data.augment["name"]
    prefix_cache = bool(cfg.get("prefix_cache", True))
    if augment != "none" and prefix_cache:
        # A frozen prefix's output is the same every epoch only for the same input; augmented input is not.
        plan.notes.append(f"prefix cache off: data.augment={augment} makes every epoch's input different")
        prefix_cache = False
    check_pretrained(plan.strategy, cfg.init)
    optim_cfg = dict(cfg.optim)
    if (plan.adaptive or {}).get("rule") == "l2sp":
        optim_cfg["weight_decay"] = 0.0  # the L2-SP penalty takes weight decay's place
    speed = cfg.get("speed") or {}
    precision = str(speed.get("precision", "32"))
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
        prefix_cache=prefix_cache,
        # flip_translate runs on the device, batch by batch; rrc_flip_rotate in a streamed folder's workers
        augment=BatchAugment(data.image_size) if augment == "flip_translate" else None,
        bf16=precision == "bf16",
        compile=bool(speed.get("compile", False)),
        test_every_epoch=bool(cfg.get("test_every_epoch", True)),
        early_stop=early_stop,
        adaptive=build_controller(plan, params, transferred, device),
    )
