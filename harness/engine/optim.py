"""Optimizers with one param group per layer group, and setting their rates from a schedule.

``optim.fused`` (default true) picks torch's fused implementation: one kernel per parameter and step instead
of a handful (AdamW on a CPU: ~0.13 ms a step for the default convnet, against ~0.5 ms for the single-tensor
loop torch picks there by default). It is the same update rule; fused AdamW's results differ from the other
implementations only in float rounding (~1e-7 after a few steps, for fused SGD as for fused AdamW).
``optim.fused=false`` keeps torch's default implementation.

``optim.wd_bn_bias`` (fastai's name): false (the default of both presets) puts no weight decay on biases and
norm-layer parameters, true decays every parameter. A layer group is still one param group: each group holds
its decay rate (``wd``) and one flag per parameter (``do_wd``, fastai's name for it), and the optimizer
applies the decay itself right before torch's update, exactly as torch would with ``weight_decay`` set
(decoupled ``p *= 1 - lr * wd`` for AdamW, ``grad += wd * p`` for SGD), and only to parameters that have a
gradient (frozen ones never decay). Torch's own ``weight_decay`` stays 0.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from harness.config import schema
from harness.plan.freezing import GroupParams


def check(optim_cfg: Mapping) -> dict:
    """Reject a bad optimizer config before any training (the optimizer itself is built at phase start)."""
    return schema.check_values("optim", optim_cfg)


class _MaskedDecay:
    """Weight decay on the parameters a group flags in ``do_wd`` only; the torch optimizer it is mixed into
    runs with ``weight_decay=0`` and does the rest of the update."""

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:  # the decay must see the gradients, which a closure computes only later
            raise NotImplementedError("harness optimizers take no closure")
        for group in self.param_groups:
            if group["wd"]:
                # not strict: a group whose params were taken out (a test's fault injection) keeps its flags
                flags = zip(group["params"], group["do_wd"], strict=False)
                decayed = [p for p, d in flags if d and p.grad is not None]
                if decayed:
                    self._decay(decayed, group)
        return super().step()


class AdamW(_MaskedDecay, torch.optim.AdamW):
    def _decay(self, params: list[torch.Tensor], group: dict) -> None:
        decay = group["lr"] * group["wd"]
        found = getattr(self, "found_inf", None)  # set when a fused step skips a non-finite one on the device
        if found is not None:
            decay = decay * (1 - found)  # a skipped step decays nothing either (no host sync to know)
        torch._foreach_mul_(params, 1 - decay)  # torch AdamW's decoupled decay


class SGD(_MaskedDecay, torch.optim.SGD):
    def _decay(self, params: list[torch.Tensor], group: dict) -> None:
        # torch SGD's L2 term goes into the gradient, so a step the fused kernel skips applies none of it.
        torch._foreach_add_([p.grad for p in params], params, alpha=group["wd"])


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
    weight_decay = float(optim_cfg.get("weight_decay", 0.0))
    wd_bn_bias = optim_cfg.get("wd_bn_bias", False)
    groups = [
        {"params": g.all, "lr": lr, "name": g.name, "wd": weight_decay, "do_wd": g.decays(wd_bn_bias)}
        for g, lr in zip(params, rates, strict=True)
    ]
    fused = optim_cfg.get("fused", True) or None  # None: torch's default choice
    if name == "sgd":
        return SGD(
            groups,
            lr=rates[-1],
            momentum=float(optim_cfg.get("momentum", 0.9)),
            weight_decay=0.0,
            nesterov=bool(optim_cfg.get("nesterov", False)),
            fused=fused,
        )
    if name == "adamw":
        betas = tuple(float(b) for b in optim_cfg.get("betas", (0.9, 0.99)))
        return AdamW(
            groups,
            lr=rates[-1],
            betas=betas,
            eps=float(optim_cfg.get("eps", 1e-5)),
            weight_decay=0.0,
            fused=fused,
        )
    raise AssertionError(f"optim.name={name!r} passed the schema but has no builder here")


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
