"""The transferability experiment of Yosinski, Clune, Bengio and Lipson (2014), as config rewriting.

A treatment job (``transfer.treatment=AnB transfer.n=3``) becomes an ordinary run on half B:
- its bases (``baseA``/``baseB``) are ordinary runs on half A/B with strategy ``never``, trained once and
  kept in a cache keyed by exactly the inputs that decide them (:mod:`harness.bases`);
- the treatment copies the first n groups from its base (``init.from``, ``init.groups=n``) and freezes them
  (``freeze_to(n)``) or trains them (the ``+`` treatments); the rest starts from a fresh random init.

| treatment | layers 1..n | layers n+1..L |
|---|---|---|
| BnB  | copied from baseB, frozen | re-initialised, trained |
| BnB+ | copied from baseB, trained | re-initialised, trained |
| AnB  | copied from baseA, frozen | re-initialised, trained |
| AnB+ | copied from baseA, trained | re-initialised, trained |
| random | random init, frozen | trained |
| warm | all layers from a base trained on ``warm_fraction`` of B, trained | - |
| scratch | random init on all of B at the same budget (the warm start's control) | - |

Every treatment job also makes sure ``baseB`` exists, so each record carries the baseB reference line.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf, open_dict

from harness.errors import ConfigError


@dataclass(frozen=True)
class Treatment:
    name: str
    base_half: str | None  # whose weights the first n layers get: "A", "B" or None (random init)
    frozen: bool  # copied (or random) layers frozen (lr 0, no weight decay) or trained
    uses_n: bool = True


TREATMENTS = {
    t.name: t
    for t in (
        Treatment("BnB", "B", True),
        Treatment("BnB+", "B", False),
        Treatment("AnB", "A", True),
        Treatment("AnB+", "A", False),
        Treatment("random", None, True),
        Treatment("warm", "B", False, uses_n=False),
        Treatment("scratch", None, False, uses_n=False),
    )
}


def treatment_of(cfg: DictConfig) -> Treatment | None:
    section = cfg.get("transfer") or {}
    name = section.get("treatment")
    if name is None or section.get("rewritten"):  # None, or already turned into its ordinary run
        return None
    if name not in TREATMENTS:
        raise ConfigError(
            f"transfer.treatment={name!r} is not a treatment; choose one of: {', '.join(TREATMENTS)}"
        )
    return TREATMENTS[name]


def check_n(cfg: DictConfig, treatment: Treatment, n_groups: int) -> int | None:
    if not treatment.uses_n:
        return None
    n = cfg.transfer.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= n_groups - 1:
        raise ConfigError(
            f"transfer.n={n!r} is out of range: this model has {n_groups} weight layers (groups), so n is 1 .. {n_groups - 1}"
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
        base.trial = {
            "number": None
        }  # a base is shared by many jobs: it never reports to one job's search trial
        base.resume = False
    return base


def treatment_config(
    cfg: DictConfig, treatment: Treatment, n: int | None, base_checkpoint: str | None, n_groups: int
) -> DictConfig:
    """The ordinary run a treatment is: half B, the first n groups copied and frozen or trained."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    t = cfg.transfer
    with open_dict(out):
        out.pop("hydra", None)
        out.half = "B"
        out.transfer.rewritten = True
        epochs = int(t.get("epochs") or cfg.epochs)
        if treatment.name in ("warm", "scratch"):
            strategy = {"name": "never", "epochs": epochs, "lr": cfg.lr}
            out.init = {
                "from": base_checkpoint,
                "groups": None,
            }  # warm: every group, head included (same classes)
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


def run_treatment(cfg: DictConfig, output_dir, treatment: Treatment, train_fn) -> dict:
    """Train (or fetch) the bases, then the treatment itself; the record gets a ``transfer`` section."""
    from harness.atomic import check_writable
    from harness.bases import ensure_base
    from harness.data import load_data
    from harness.models import build_model

    check_writable(cfg.transfer.cache_dir, "transfer.cache_dir")

    data = load_data(cfg.data, cfg.get("split"), half="B")
    probe = build_model(
        cfg.model, num_classes=data.num_classes, in_channels=data.in_channels, image_size=data.image_size
    )
    n_groups = len(probe.groups)
    n = check_n(cfg, treatment, n_groups)

    cache = cfg.transfer.cache_dir
    base_b = ensure_base(base_config(cfg, "B"), cache, train_fn)
    if treatment.name == "warm":
        base = ensure_base(base_config(cfg, "B", float(cfg.transfer.warm_fraction)), cache, train_fn)
    elif treatment.base_half == "A":
        base = ensure_base(base_config(cfg, "A"), cache, train_fn)
    elif treatment.base_half == "B":
        base = base_b
    else:
        base = None
    run_cfg = treatment_config(cfg, treatment, n, str(base.checkpoint) if base else None, n_groups)
    split = cfg.get("split") or {}
    section = {
        "treatment": treatment.name,
        "n": n,
        "layers": n_groups,
        "frozen": treatment.frozen,
        "split": split.get("name"),
        "split_seed": split.get("seed"),
        "b_domain": split.get("b_domain"),
        "seed": int(cfg.seed),
        "base": base.summary() if base else None,
        "baseB": base_b.summary(),
        "bases_trained_by_this_job": sum(
            b.trained_now for b in {id(b): b for b in (base_b, base) if b}.values()
        ),
    }
    return train_fn(run_cfg, output_dir, extra={"transfer": section})
