"""The decision rules of the adaptive and partial fine-tuning strategies, as plain functions of plain numbers.

Each rule is what its paper says, and nothing else: no tensors, no state, no loop. The controllers that keep
their state during training and call these at the right moments are in :mod:`harness.engine.adaptive`; the
strategies that compile them into plans are in :mod:`harness.plan.strategies`.

| rule | paper | function |
|---|---|---|
| layer-wise lr decay | ELECTRA, BEiT, timm ``param_groups_layer_decay`` | :func:`llrd_rates` |
| FreezeOut end times and lr | Brock et al. 2017 | :func:`freezeout_ends`, :func:`freezeout_factor` |
| AutoFreeze | Liu et al. 2021 | :func:`gradient_change`, :func:`autofreeze_prefix` |
| Auto-RGN | Lee et al. 2023 | :func:`rgn_scales` |
"""

from __future__ import annotations

import math
from collections.abc import Sequence

SCALINGS = ("linear", "cubic")


def llrd_rates(lr: float, n_groups: int, gamma: float) -> list[float]:
    """Group i of L gets ``lr * gamma ** (L - 1 - i)``: the head ``lr``, each group below it gamma times less."""
    return [lr * gamma ** (n_groups - 1 - i) for i in range(n_groups)]


def freezeout_ends(n_groups: int, t0: float, scaling: str = "linear") -> list[float]:
    """Each group's end time as a fraction of the phase: ``t_i = t0 + (1 - t0) * i / (L - 1)``.

    ``cubic`` cubes that value (Brock et al.'s code cubes the linear time, so its ``t0`` is "pre-cubed"):
    later groups get cubically more of the run than the first. The last group (the head) ends at 1.
    """
    if n_groups == 1:
        return [1.0]
    linear = [t0 + (1 - t0) * i / (n_groups - 1) for i in range(n_groups)]
    return [t**3 for t in linear] if scaling == "cubic" else linear


def freezeout_factor(pos: float, end: float, scale_lr: bool = False) -> float:
    """The multiplier of a group's lr at progress ``pos`` of the phase: a cosine from 1 to 0 over [0, end),
    0 from ``end`` on (the group is frozen then). ``scale_lr`` starts a group at ``1 / end`` times the rate,
    so groups that train for less of the run take bigger steps (the paper's scaled variant)."""
    if end <= 0 or pos >= end:
        return 0.0
    start = 1 / end if scale_lr else 1.0
    return start * 0.5 * (1 + math.cos(math.pi * pos / end))


def gradient_change(previous: Sequence[float], current: Sequence[float]) -> list[float]:
    """AutoFreeze's eta per group: ``|G_prev - G| / G_prev`` of the accumulated gradient norms of two
    intervals. A group with no gradient in either interval did not change (0); one that had none before
    and has some now changed without bound (inf)."""
    out = []
    for prev, cur in zip(previous, current, strict=True):
        if prev > 0:
            out.append(abs(prev - cur) / prev)
        else:
            out.append(0.0 if cur == 0 else math.inf)
    return out


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation between order statistics (numpy's default);
    inf values sort last."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(rank), math.ceil(rank)
    if lo == hi or ordered[lo] == ordered[hi]:
        return ordered[lo]
    if math.isinf(ordered[hi]):
        return ordered[hi]
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def autofreeze_prefix(eta: Sequence[float], frozen: int, p: float) -> int:
    """How many input-side groups are frozen after an AutoFreeze decision.

    ``eta`` holds every group's gradient change (input side first, the head last); the first ``frozen`` are
    frozen already and take no part. The threshold is the p-th percentile of the eta of the groups still
    training (the head included: it trains to the end, but its change is part of the picture); then groups
    freeze from the input side for as long as their eta is strictly below it. The head never freezes, and a
    group never freezes while one nearer the input still trains (a frozen prefix, so its activations can be
    cached).
    """
    n = len(eta)
    active = list(eta[frozen:])
    if len(active) < 2:
        return frozen
    threshold = percentile(active, p)
    k = frozen
    while k < n - 1 and eta[k] < threshold:
        k += 1
    return k


def rgn_scales(grad_norms: Sequence[float], weight_norms: Sequence[float]) -> list[float]:
    """Auto-RGN: each group's relative gradient norm ``||g|| / ||w||``, divided by the largest one, so the
    group that moves most relative to its size gets the full rate and the others a share of it. A group
    without weights to speak of (norm 0) gets 0; when no group has a gradient every scale is 1 (nothing to
    rank)."""
    rgn = [g / w if w > 0 else 0.0 for g, w in zip(grad_norms, weight_norms, strict=True)]
    top = max(rgn, default=0.0)
    if not top > 0 or not math.isfinite(top):
        return [1.0] * len(rgn)
    return [r / top for r in rgn]
