"""A treatment job as a plan: the bases it needs and the ordinary run it becomes once they exist.

:func:`plan` reads a treatment config (``transfer.treatment=AnB transfer.n=3``) and returns a
:class:`TransferPlan`, plain data: the config of every base to ensure (``baseB`` always, for the reference line
of every record; ``baseA`` for the A treatments; the warm-start base), and :meth:`TransferPlan.run_config`, the
treatment's own run on half B once the base checkpoints are known. Nothing here trains: the caller
(:func:`harness.runner.prepare`) checks every config of the plan, then fetches or trains the bases, then runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf, open_dict

from harness.config import checks
from harness.errors import ConfigError
from harness.transfer.treatments import Treatment, treatment_of


@dataclass
class TransferPlan:
    treatment: Treatment
    n: int | None  # groups copied from the base (None: warm and scratch, which use every layer or none)
    n_groups: int  # weight layers (groups) of the model
    source: str | None  # the role whose checkpoint the treatment copies ("baseA", "baseB", "warm") or None
    cache_dir: str
    cfg: DictConfig  # the treatment job's config, as composed
    bases: dict[str, DictConfig] = field(default_factory=dict)  # role -> base config; "baseB" always

    def run_config(self, entries: dict | None = None) -> DictConfig:
        """The ordinary run of the treatment: half B, the first n groups copied and frozen or trained.

        ``entries`` (role -> :class:`~harness.transfer.bases.BaseEntry`) once the bases exist; without them the
        config is for checking only (no base checkpoint yet).
        """
        source = (entries or {}).get(self.source) if self.source else None
        return treatment_config(self.cfg, self.treatment, self.n, str(source.checkpoint) if source else None)

    def section(self, entries: dict) -> dict:
        """The record's ``transfer`` section, from the base entries (role -> :class:`BaseEntry`)."""
        split = self.cfg.get("split") or {}
        base = entries.get(self.source) if self.source else None
        used = {id(e): e for e in entries.values()}.values()
        return {
            "treatment": self.treatment.name,
            "n": self.n,
            "layers": self.n_groups,
            "frozen": self.treatment.frozen,
            "split": split.get("name"),
            "split_seed": split.get("seed"),
            "b_domain": split.get("b_domain"),
            "seed": int(self.cfg.seed),
            "base": base.summary() if base else None,
            "baseB": entries["baseB"].summary(),
            "bases_trained_by_this_job": sum(e.trained_now for e in used),
        }


def plan(cfg: DictConfig, n_groups: int) -> TransferPlan | None:
    """The plan of a treatment job, or None when ``cfg`` is not one. ``n_groups``: the model's groups."""
    treatment = treatment_of(cfg)
    if treatment is None:
        return None
    n = check_n(cfg, treatment, n_groups)
    check_budget(cfg.transfer)
    if cfg.get("init_seed") is not None:
        raise ConfigError(
            f"init_seed={cfg.init_seed!r}: a transfer job draws one per network from seed; leave init_seed "
            "null and vary seed (or transfer.base_seed) instead"
        )
    bases = {"baseB": base_config(cfg, "B")}
    if treatment.name == "warm":
        bases["warm"] = base_config(cfg, "B", float(cfg.transfer.warm_fraction), role="warm")
        source = "warm"
    elif treatment.base_half == "A":
        bases["baseA"] = base_config(cfg, "A")
        source = "baseA"
    elif treatment.base_half == "B":
        source = "baseB"
    else:
        source = None
    return TransferPlan(treatment, n, n_groups, source, str(cfg.transfer.cache_dir), cfg, bases)


def check_n(cfg: DictConfig, treatment: Treatment, n_groups: int) -> int | None:
    if not treatment.uses_n:
        return None
    n = cfg.transfer.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= n_groups - 1:
        raise ConfigError(
            f"transfer.n={n!r} is out of range: this model has {n_groups} weight layers (groups), "
            f"so n is 1 .. {n_groups - 1}"
        )
    return n


def derive_seed(seed: int, role: str) -> int:
    """The seed of one network of a grid replicate: baseA, baseB and each (treatment, n) draw their fresh
    weights and batch orders from streams of their own, as the paper's networks were independent draws (one
    seed for all would make BnB restart from baseB's own initial weights and batch order)."""
    digest = hashlib.sha256(f"freezelab/{seed}/{role}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 2**31


def check_budget(t) -> None:
    """``transfer.base_epochs``, ``transfer.epochs`` and the convergence rule, before any base trains."""
    for key in ("base_epochs", "epochs"):
        value = t.get(key)
        is_count = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        if not (value is None or value == "auto" or is_count):
            raise ConfigError(f"transfer.{key}={value!r} must be an integer >= 1, auto or null")
    if "auto" in (t.get("base_epochs"), t.get("epochs")):
        checks.integer(t.get("patience"), "transfer.patience", low=1)
        checks.integer(t.get("reductions"), "transfer.reductions", low=0)
        checks.integer(t.get("max_epochs"), "transfer.max_epochs", low=1)


def budget(cfg: DictConfig, key: str) -> tuple[int, dict, dict | None]:
    """(epochs, early_stopping, schedule) of a base (``key="base_epochs"``) or a treatment (``"epochs"``).

    ``auto`` is the convergence rule, the same for bases and treatments (the paper trains both on one
    schedule): a constant lr, cut by 10 when validation accuracy has not improved for ``transfer.patience``
    epochs, ``transfer.reductions`` times, then stop; at most ``transfer.max_epochs``; the best-validation
    weights are kept. A number: that many epochs on the experiment's own schedule; null: the top-level epochs.
    """
    t = cfg.transfer
    if t.get(key) == "auto":
        stopping = {"patience": int(t.patience), "reductions": int(t.reductions), "factor": 0.1}
        return int(t.max_epochs), stopping, {"name": "constant"}
    return int(t.get(key) or cfg.epochs), dict(cfg.get("early_stopping") or {"patience": None}), None


def base_config(
    cfg: DictConfig, half: str, train_fraction: float = 1.0, role: str | None = None
) -> DictConfig:
    """The config of a base: the experiment's training settings, all layers trained, on one half."""
    t = cfg.transfer
    base = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    epochs, stopping, schedule = budget(cfg, "base_epochs")
    with open_dict(base):
        base.pop("hydra", None)
        base.half = half
        base.seed = int(t.base_seed if t.get("base_seed") is not None else cfg.seed)
        base.init_seed = derive_seed(base.seed, role or f"base{half}")
        base.transfer = {"treatment": None}
        base.init = {"from": None, "groups": None}
        base.data.train_fraction = train_fraction
        base.strategy = {
            "name": "never",
            "epochs": epochs,
            "lr": cfg.lr,
            "bn": "train",
            "optimizer_state": "keep",
        }
        base.early_stopping = stopping
        if schedule is not None:
            base.schedule = schedule
        base.logger = {"name": "none"}
        base.trial = {"number": None}  # a base is shared by many jobs: it never reports to one job's trial
        base.resume = False
    return base


def treatment_config(
    cfg: DictConfig, treatment: Treatment, n: int | None, base_checkpoint: str | None
) -> DictConfig:
    """The ordinary run a treatment is: half B, the first n groups copied and frozen or trained."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    t = cfg.transfer
    epochs, stopping, schedule = budget(cfg, "epochs")
    with open_dict(out):
        out.pop("hydra", None)
        out.half = "B"
        out.init_seed = derive_seed(int(cfg.seed), f"{treatment.name}/n{n}")
        out.early_stopping = stopping
        if schedule is not None:
            out.schedule = schedule
        if treatment.name in ("warm", "scratch"):
            strategy = {"name": "never", "epochs": epochs, "lr": cfg.lr}
            # warm: every group, head included (same classes)
            out.init = {"from": base_checkpoint, "groups": None}
        elif treatment.frozen:
            strategy = {"name": "freeze_to", "k": n, "epochs": epochs, "lr": cfg.lr}
            out.init = {"from": base_checkpoint, "groups": n}
        else:
            # The paper trains copied layers at the same rate as new ones; a slice is the fastai-style option.
            plus_lr = t.get("plus_lr")
            strategy = {"name": "never", "epochs": epochs, "lr": plus_lr if plus_lr is not None else cfg.lr}
            out.init = {"from": base_checkpoint, "groups": n}
        out.strategy = {**strategy, "bn": t.get("bn", "eval"), "optimizer_state": "keep"}
    return out
