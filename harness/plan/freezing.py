"""Putting a phase of a plan into effect on a model: requires_grad and norm-layer modes.

Frozen means frozen: a frozen parameter has ``requires_grad=False``, so it gets no gradient, and
optimizers skip parameters without a gradient, so it also gets no weight decay and no optimizer-state
change. Norm layers inside frozen groups follow the plan's BatchNorm policy:

| policy   | affine params (weight, bias) | running statistics | layer mode |
|----------|------------------------------|--------------------|------------|
| `train`  | keep training (fastai's `train_bn=True`) | update    | train      |
| `frozen` | fixed                        | update             | train      |
| `eval`   | fixed                        | fixed              | eval       |

A phase with ``partial="bias"`` (BitFit) also trains the biases inside the groups it freezes: the one place
where freezing reaches below a group, because the method is defined on parameter kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from harness.models.groups import NORM_TYPES, GroupedModel, group_modules, group_parameters, norm_layers


@dataclass
class GroupParams:
    """The parameters of one layer group, split into norm-layer params and the rest."""

    name: str
    norm: list[nn.Parameter]
    other: list[nn.Parameter]
    # The ``bias`` params among ``other`` (of linear and conv layers): with ``norm``, what fastai's
    # ``wd_bn_bias=False`` leaves undecayed (harness/engine/optim.py).
    biases: list[nn.Parameter] = field(default_factory=list)

    @property
    def all(self) -> list[nn.Parameter]:
        return self.other + self.norm

    def decays(self, wd_bn_bias: bool) -> list[bool]:
        """Per parameter of :attr:`all`: does weight decay apply to it?"""
        if wd_bn_bias:
            return [True] * len(self.all)
        skip = {id(p) for p in self.biases + self.norm}
        return [id(p) not in skip for p in self.all]


def split_group_params(model: GroupedModel) -> list[GroupParams]:
    by_group = group_parameters(model)
    norm_ids = {
        id(p) for m in model.net.modules() if isinstance(m, NORM_TYPES) for p in m.parameters(recurse=False)
    }
    bias_ids = {
        id(p)
        for m in model.net.modules()
        for name, p in m.named_parameters(recurse=False)
        if name == "bias" and id(p) not in norm_ids
    }
    return [
        GroupParams(
            g.name,
            [p for p in ps if id(p) in norm_ids],
            [p for p in ps if id(p) not in norm_ids],
            [p for p in ps if id(p) in bias_ids],
        )
        for g, ps in zip(model.groups, by_group, strict=True)
    ]


def apply_trainable(
    params: list[GroupParams], trainable: list[str], bn: str, also: frozenset[int] = frozenset()
) -> None:
    """Set requires_grad for every parameter from the phase's trainable groups and the bn policy; ``also``
    holds the ids of parameters that train inside frozen groups (BitFit's biases, :func:`partial_ids`)."""
    for group in params:
        trains = group.name in trainable
        for p in group.other:
            p.requires_grad_(trains or id(p) in also)
        for p in group.norm:
            p.requires_grad_(trains or bn == "train" or id(p) in also)


def bias_parameters(model: GroupedModel) -> list[nn.Parameter]:
    """The ``bias`` of every layer that is not a norm layer (those are norm-layer parameters)."""
    return [
        p
        for m in model.net.modules()
        if not isinstance(m, NORM_TYPES)
        for name, p in m.named_parameters(recurse=False)
        if name == "bias"
    ]


def partial_ids(model: GroupedModel, partial: str | None) -> frozenset[int]:
    """The ids of the parameters a phase's ``partial`` trains inside its frozen groups."""
    if partial == "bias":
        return frozenset(id(p) for p in bias_parameters(model))
    return frozenset()


def set_modes(model: GroupedModel, trainable: list[str], bn: str) -> None:
    """Call instead of ``net.train()``: under bn=eval, norm layers of frozen groups stay in eval mode."""
    model.net.train()
    if bn != "eval":
        return
    for group, modules in zip(model.groups, group_modules(model), strict=True):
        if group.name not in trainable:
            for layer in norm_layers(modules):
                layer.eval()
