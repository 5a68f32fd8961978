"""Frozen-prefix caching: run the frozen input-side groups once per phase instead of every epoch.

When the first k groups of a sequential model (or all but the head of a timm model, whose
``forward_features`` is then the prefix) are frozen and nothing random or stateful happens in them
(no dropout, no BatchNorm updating its statistics, no augmentation: the data is tensors in memory), their
output for a sample is the same in every epoch of the phase. So the phase computes it once per part, and the
epochs train the remaining groups on those features. Numbers are those of the uncached path (tests check it);
only the cost changes.

A part's features are computed the first time the loop asks for that part: a phase that never evaluates the
test set (``test_every_epoch=false`` and not the run's last phase, e.g. fastai's one-epoch head phase) never
runs the prefix on it, so a one-epoch phase costs one forward pass of train and val, as uncached it does.

:class:`PhaseView` answers "what does this phase feed to which module": the whole net on the raw data, or
``net[k:]`` on the cached prefix features.

An adaptive strategy freezes more of the input side during a phase (AutoFreeze, FreezeOut): :meth:`PhaseView.grow`
then extends the cached prefix from the features it already holds (``net[j:k]`` on them), not from the data.
Every pass through a prefix is reported to ``on_prefix(module, sample_shape, samples)``: the compute meter counts it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from harness.data import DataBundle, Part, TensorPart, inference_batch_size
from harness.models.groups import NORM_TYPES, GroupedModel, group_modules
from harness.plan.strategies import Phase


@dataclass
class PhaseView:
    """The module a phase trains and evaluates, and the train/val/test parts to feed it (:meth:`part`)."""

    net: nn.Module  # the module the loop calls
    data: DataBundle  # the run's data
    cached_groups: int  # k: how many leading groups are run once per part (0 = none)
    prefix: nn.Module | None = None  # net[:split] when k > 0
    device: torch.device | str = "cpu"
    on_prefix: Callable[[nn.Module, tuple, int], None] | None = None  # (module, sample shape, samples)
    _features: dict[str, TensorPart] = field(default_factory=dict, repr=False)

    def part(self, name: str) -> Part:
        """``"train"``, ``"val"`` or ``"test"`` as ``net`` takes it: the data, or the prefix's features."""
        if self.prefix is None:
            return getattr(self.data, name)
        if name not in self._features:
            source = getattr(self.data, name)
            self._features[name] = _features(self.prefix, source, self.device)
            if self.on_prefix is not None:
                self.on_prefix(self.prefix, tuple(source.x.shape[1:]), len(source))
        return self._features[name]

    def grow(self, model: GroupedModel, k: int) -> PhaseView:
        """The view with the first ``k`` (> cached_groups) groups cached: the parts already computed are run
        on through the groups in between, the others will be computed from the data when asked for."""
        start, split = _children_of_groups(model, self.cached_groups), _children_of_groups(model, k)
        middle = model.net[start:split]
        grown = PhaseView(model.net[split:], self.data, k, model.net[:split], self.device, self.on_prefix)
        for name, part in self._features.items():
            grown._features[name] = _features(middle, part, self.device)
            if self.on_prefix is not None:
                self.on_prefix(middle, tuple(part.x.shape[1:]), len(part))
        return grown


def _is_static(module: nn.Module, bn: str) -> bool:
    """True when the module's output depends only on its input: no dropout, no norm statistics updating."""
    for sub in module.modules():
        if isinstance(sub, nn.modules.dropout._DropoutNd) and sub.p > 0:
            return False
        if isinstance(sub, NORM_TYPES) and getattr(sub, "track_running_stats", False) and bn != "eval":
            return False  # under bn=train|frozen the running statistics of the prefix keep moving
        if isinstance(sub, NORM_TYPES) and bn == "train" and list(sub.parameters(recurse=False)):
            return False  # under bn=train the affine parameters of a frozen group's norm layers train
    return True


def cacheable_groups(
    model: GroupedModel, phase: Phase, bn: str, data: DataBundle, trainable: list[str] | None = None
) -> int:
    """How many leading groups of ``phase`` can be run once (0 when caching is not exact or not possible);
    ``trainable``: the groups training now, when an adaptive rule froze some of the phase's."""
    splittable = model.sequential or model.body_and_head is not None
    if not splittable or not isinstance(data.train, TensorPart) or phase.partial is not None:
        return 0  # partial: parameters train inside the frozen groups (BitFit's biases)
    trainable = phase.trainable if trainable is None else trainable
    k = 0
    for group, modules in zip(model.groups, group_modules(model), strict=True):
        if group.name in trainable or not all(_is_static(m, bn) for m in modules):
            break
        k += 1
    if k == len(model.groups):
        return 0  # everything frozen: nothing to train, nothing to cache for
    if not model.sequential and k != len(model.groups) - 1:
        return 0  # a body-and-head net splits only before its head group
    return k


def _children_of_groups(model: GroupedModel, k: int) -> int:
    """Index of the first child of ``net`` after the first k groups (groups may span several children)."""
    return sum(len(g.prefixes) for g in model.groups[:k])


@torch.no_grad()
def _features(prefix: nn.Module, part: TensorPart, device) -> TensorPart:
    was_training = prefix.training
    prefix.eval()  # identical to train mode here: the prefix is static (no dropout, norm layers fixed)
    size = inference_batch_size(device)
    chunks = [prefix(part.x[i : i + size].to(device)) for i in range(0, len(part), size)]
    prefix.train(was_training)
    return TensorPart(torch.cat(chunks), part.y.to(device))


def phase_view(
    model: GroupedModel,
    phase: Phase,
    bn: str,
    data: DataBundle,
    device,
    enabled: bool = True,
    *,
    trainable: list[str] | None = None,
    on_prefix: Callable[[nn.Module, tuple, int], None] | None = None,
) -> PhaseView:
    k = cacheable_groups(model, phase, bn, data, trainable) if enabled else 0
    if k == 0:
        return PhaseView(model.net, data, 0)
    if not model.sequential:  # forward_features once per part, forward_head every step
        body, head = model.body_and_head
        return PhaseView(head, data, k, body, device, on_prefix)
    split = _children_of_groups(model, k)
    return PhaseView(model.net[split:], data, k, model.net[:split], device, on_prefix)
