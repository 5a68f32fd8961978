"""A treatment job as a plan: the bases it needs and the ordinary run it becomes once they exist.

:func:`plan` reads a treatment config (``transfer.treatment=AnB transfer.n=3``) and returns a
:class:`TransferPlan`, plain data: the config of every base to ensure (``baseB`` always, for the reference line
of every record; ``baseA`` for the A treatments; the warm-start base), and :meth:`TransferPlan.run_config`, the
treatment's own run on half B once the base checkpoints are known. Nothing here trains: the caller
(:func:`harness.runner.prepare`) checks every config of the plan, then fetches or trains the bases, then runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf, open_dict

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

    def run_config(self, checkpoints: dict[str, str | None]) -> DictConfig:
        """The ordinary run of the treatment: half B, the first n groups copied and frozen or trained."""
        source = checkpoints.get(self.source) if self.source else None
        return treatment_config(self.cfg, self.treatment, self.n, source)

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
    bases = {"baseB": base_config(cfg, "B")}
    if treatment.name == "warm":
        bases["warm"] = base_config(cfg, "B", float(cfg.transfer.warm_fraction))
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


def base_config(cfg: DictConfig, half: str, train_fraction: float = 1.0) -> DictConfig:
    """The config of a base: the experiment's training settings, all layers trained, on one half."""
    base = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(base):
        base.pop("hydra", None)
        base.half = half
        base.seed = int(cfg.transfer.base_seed if cfg.transfer.get("base_seed") is not None else cfg.seed)
        base.transfer = {"treatment": None}
        base.init = {"from": None, "groups": None}
        base.data.train_fraction = train_fraction
        base.strategy = {
            "name": "never",
            "epochs": int(cfg.transfer.base_epochs or cfg.epochs),
            "lr": cfg.lr,
            "bn": "train",
            "optimizer_state": "keep",
        }
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
    with open_dict(out):
        out.pop("hydra", None)
        out.half = "B"
        epochs = int(t.get("epochs") or cfg.epochs)
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
