"""Optimizers with one param group per layer group, and setting their rates from a schedule.

``optim.fused`` (default true) picks torch's fused implementation: one kernel per parameter and step instead
of a handful (AdamW on a CPU: ~0.13 ms a step for the default convnet, against ~0.5 ms for the single-tensor
loop torch picks there by default). It is the same update rule; fused AdamW's results differ from the other
implementations only in float rounding (~1e-7 after a few steps, for fused SGD as for fused AdamW).
``optim.fused=false`` keeps torch's default implementation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from harness.errors import ConfigError
from harness.plan.freezing import GroupParams

OPTIMIZERS = ("sgd", "adamw")


def check(optim_cfg: Mapping) -> None:
    """Reject an unknown optimizer before any training (the optimizer itself is built at phase start)."""
    name = optim_cfg.get("name")
    if name not in OPTIMIZERS:
        raise ConfigError(f"optim.name={name!r} is not an optimizer; choose one of: {', '.join(OPTIMIZERS)}")
    for key in ("weight_decay", "momentum", "eps"):
        value = optim_cfg.get(key, 0.0)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"optim.{key}={value!r} must be a number >= 0")
    if not isinstance(optim_cfg.get("fused", True), bool):
        raise ConfigError(f"optim.fused={optim_cfg.get('fused')!r} must be true or false")


def build_optimizer(
    optim_cfg: Mapping, params: list[GroupParams], rates: list[float]
) -> torch.optim.Optimizer:
    """One param group per layer group (named after it), every parameter included.

    Frozen parameters are in the optimizer too but never get a gradient, and torch optimizers skip a
    parameter whose ``.grad`` is None: that is what keeps them bit-identical and their state untouched,
    and what lets an unfreeze keep the state of params already training (``optimizer_state: keep``).
    """
    check(optim_cfg)
    name = optim_cfg.get("name")
    groups = [{"params": g.all, "lr": lr, "name": g.name} for g, lr in zip(params, rates, strict=True)]
    weight_decay = float(optim_cfg.get("weight_decay", 0.0))
    fused = optim_cfg.get("fused", True) or None  # None: torch's default choice
    if name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=rates[-1],
            momentum=float(optim_cfg.get("momentum", 0.9)),
            weight_decay=weight_decay,
            nesterov=bool(optim_cfg.get("nesterov", False)),
            fused=fused,
        )
    if name == "adamw":
        betas = tuple(float(b) for b in optim_cfg.get("betas", (0.9, 0.99)))
        return torch.optim.AdamW(
            groups,
            lr=rates[-1],
            betas=betas,
            eps=float(optim_cfg.get("eps", 1e-5)),
            weight_decay=weight_decay,
            fused=fused,
        )
    raise ConfigError(f"optim.name={name!r} is not an optimizer; choose one of: {', '.join(OPTIMIZERS)}")


def set_rates(
    optimizer: torch.optim.Optimizer, peak: list[float], factor: float | list[float], momentum: float | None
) -> None:
    """Scale every group's peak rate by the schedule's ``factor`` (keeps slice ratios), or each by its own
    (a per-group schedule: FreezeOut); set momentum/beta1."""
    factors = factor if isinstance(factor, list) else [factor] * len(peak)
    for group, lr, f in zip(optimizer.param_groups, peak, factors, strict=True):
        group["lr"] = lr * f
        if momentum is None:
            continue
        if "betas" in group:
            group["betas"] = (momentum, group["betas"][1])
        elif "momentum" in group:
            group["momentum"] = momentum
