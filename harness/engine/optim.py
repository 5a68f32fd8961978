"""Optimizers with one param group per layer group, and setting their rates from a schedule.

``optim.fused`` (default true) picks torch's fused implementation: one kernel per parameter and step instead
of a handful (AdamW on a CPU: ~0.13 ms a step for the default convnet, against ~0.5 ms for the single-tensor
loop torch picks there by default). It is the same update rule; fused AdamW's results differ from the other
implementations only in float rounding (~1e-7 after a few steps; fused SGD matched bit for bit in our checks).
``optim.fused=false`` keeps torch's default implementation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from harness.config import schema
from harness.plan.freezing import GroupParams


def check(optim_cfg: Mapping) -> dict:
    """Reject a bad optimizer config before any training (the optimizer itself is built at phase start)."""
    return schema.check_values("optim", optim_cfg)


def build_optimizer(
    optim_cfg: Mapping, params: list[GroupParams], rates: list[float]
) -> torch.optim.Optimizer:
    """One param group per layer group (named after it), every parameter included.

    Frozen parameters are in the optimizer too but never get a gradient, and torch optimizers skip a
    parameter whose ``.grad`` is None: that is what keeps them bit-identical and their state untouched,
    and what lets an unfreeze keep the state of params already training (``optimizer_state: keep``).
    """
    optim_cfg = check(optim_cfg)
    name = optim_cfg["name"]
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
    raise AssertionError(f"optim.name={name!r} passed the schema but has no builder here")


def set_rates(
    optimizer: torch.optim.Optimizer, peak: list[float], factor: float, momentum: float | None
) -> None:
    """Scale every group's peak rate by the schedule's ``factor`` (keeps slice ratios); set momentum/beta1."""
    for group, lr in zip(optimizer.param_groups, peak, strict=True):
        group["lr"] = lr * factor
        if momentum is None:
            continue
        if "betas" in group:
            group["betas"] = (momentum, group["betas"][1])
        elif "momentum" in group:
            group["momentum"] = momentum
