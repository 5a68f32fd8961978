"""Compute accounting: the forward and backward FLOPs a run actually executes, per epoch and in total.

What is counted is what :class:`torch.utils.flop_counter.FlopCounterMode` counts (matrix products and
convolutions, 2 FLOPs per multiply-add, forward and backward; elementwise work, norms, pooling, the loss and
the optimizer's update are not counted): the same definition a reader can apply to any run by wrapping it in
that counter. The meter does not wrap the run (that would cost a Python dispatch per operator). Instead, each
time what executes changes (a phase starts, a rule freezes groups, the prefix cache grows), it runs the module
once on two dummy samples under the counter, with the run's own ``requires_grad`` settings, and takes half of
that as the per-sample cost; then every batch adds ``samples x cost``. Per-sample costs are exact here, as the
counted operators' FLOPs are linear in the batch. The dummy passes run in eval mode (no dropout draw, no
running-statistics update) and take gradients with ``torch.autograd.grad`` (no ``.grad`` touched), so the
run's numbers do not change; their own FLOPs are kept apart (``meter_flops``).

Buckets, per epoch (``history[i]["compute"]``) and in total (the record's ``compute`` section):
- ``train_forward``, ``train_backward``: the training steps (the module a phase trains: the whole net, or
  ``net[k:]`` behind a cached prefix; a frozen input-side prefix takes no part in the backward pass);
- ``eval_forward``: validation and test evaluations;
- ``prefix_forward``: the frozen prefix's one-time cost, computing its cached features (once per phase and
  part, again when a resumed run rebuilds its cache, and for the newly frozen groups when the cache grows).

``tests/test_compute.py`` checks the totals against a ``FlopCounterMode`` wrapped around whole runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

COMPUTE_VERSION = 1
KINDS = ("train_forward", "train_backward", "eval_forward", "prefix_forward")
DUMMY = 2  # samples per measuring pass: BatchNorm1d in train mode needs more than one, and eval mode is used


@dataclass(frozen=True)
class Cost:
    forward: int  # FLOPs per sample
    backward: int


def _key(module: nn.Module, shape: tuple[int, ...]) -> tuple:
    """What decides a module's cost: its layers, its parameters and which of them train, the input shape.
    (A slice ``net[a:b]`` is a new object each time, so the object's id would not do.)"""
    params = list(module.parameters())
    return (
        tuple(id(m) for m in module.modules() if m is not module),
        tuple(id(p) for p in params),
        tuple(p.requires_grad for p in params),
        tuple(shape),
    )


def measure(module: nn.Module, shape: tuple[int, ...], device, *, backward: bool) -> tuple[Cost, int]:
    """The per-sample cost of ``module`` on inputs of ``shape``, and the FLOPs the measurement itself took."""
    module = getattr(module, "_orig_mod", module)  # a compiled module: measure the eager one
    x = torch.zeros((DUMMY, *shape), device=device)
    was_training = module.training
    module.eval()
    try:
        params = [p for p in module.parameters() if p.requires_grad] if backward else []
        with torch.set_grad_enabled(bool(params)):
            with FlopCounterMode(display=False) as fwd:
                out = module(x)
            back = 0
            if params:
                with FlopCounterMode(display=False) as bwd:
                    torch.autograd.grad(out.float().sum(), params, allow_unused=True)
                back = bwd.get_total_flops()
    finally:
        module.train(was_training)
    forward = fwd.get_total_flops()
    return Cost(forward // DUMMY, back // DUMMY), forward + back


@dataclass
class ComputeMeter:
    """Counts what a run executes; the loop tells it what runs (:meth:`configure`) and how much."""

    device: torch.device | str = "cpu"
    epoch: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    after: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))  # after the last epoch
    meter_flops: int = 0  # the measuring passes themselves
    train: Cost = Cost(0, 0)  # per sample of the module the current phase trains, as it trains now
    _costs: dict[tuple, Cost] = field(default_factory=dict, repr=False)
    _in_epoch: bool = False

    def cost(self, module: nn.Module, shape, *, backward: bool) -> Cost:
        key = (_key(module, shape), backward)
        if key not in self._costs:
            self._costs[key], spent = measure(module, shape, self.device, backward=backward)
            self.meter_flops += spent
        return self._costs[key]

    def configure(self, net: nn.Module, shape) -> None:
        """``net`` on inputs of ``shape`` is what the training steps run from now on."""
        self.train = self.cost(net, shape, backward=True)
        self.train_shape = tuple(shape)

    def _add(self, kind: str, flops: int) -> None:
        (self.epoch if self._in_epoch else self.after)[kind] += flops

    def start_epoch(self) -> None:
        self.epoch = dict.fromkeys(KINDS, 0)
        self._in_epoch = True

    def train_step(self, samples: int) -> None:
        self._add("train_forward", samples * self.train.forward)
        self._add("train_backward", samples * self.train.backward)

    def evaluated(self, net: nn.Module, shape, samples: int) -> None:
        self._add("eval_forward", samples * self.cost(net, shape, backward=False).forward)

    def prefix(self, module: nn.Module, shape, samples: int) -> None:
        self._add("prefix_forward", samples * self.cost(module, shape, backward=False).forward)

    def end_epoch(self) -> dict:
        """The epoch's FLOPs by bucket and in all (``flops``), for its history entry."""
        self._in_epoch = False
        return {**self.epoch, "flops": sum(self.epoch.values())}


def sample_shape(part) -> tuple[int, ...]:
    """The shape of one input sample of a data part (a tensor part or a dataset)."""
    x = getattr(part, "x", None)
    return tuple(x.shape[1:]) if x is not None else tuple(part[0][0].shape)


def summary(history: list[dict], meter: ComputeMeter, trainable: list[dict], seconds: float) -> dict:
    """The record's ``compute`` section: totals from the history's per-epoch entries (so a resumed run counts
    the epochs of its first attempt too), plus what ran after the last epoch."""
    per_epoch = [{"epoch": h["epoch"], **h["compute"]} for h in history if h.get("compute")]
    totals = {k: sum(e[k] for e in per_epoch) + meter.after[k] for k in KINDS}
    return {
        "version": COMPUTE_VERSION,
        "counted": "matmul and convolution FLOPs as torch.utils.flop_counter.FlopCounterMode counts them "
        "(2 per multiply-add), forward and backward, of every pass the run executed",
        "flops": sum(totals.values()),
        "forward_flops": totals["train_forward"] + totals["eval_forward"] + totals["prefix_forward"],
        "backward_flops": totals["train_backward"],
        "train_flops": totals["train_forward"] + totals["train_backward"] + totals["prefix_forward"],
        **{f"{k}_flops": v for k, v in totals.items()},
        "after_last_epoch": dict(meter.after),
        "meter_flops": meter.meter_flops,
        "per_epoch": per_epoch,
        "trainable_params": trainable,
        "seconds": seconds,
        "train_seconds": sum(h["seconds"] for h in history),
    }
