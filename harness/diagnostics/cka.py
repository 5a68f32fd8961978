"""Representation similarity: linear CKA (Kornblith, Norouzi, Lee, Hinton 2019) per layer group.

Linear CKA of two representations of the same n examples, X (n, d1) and Y (n, d2), with centred columns:

    CKA(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)          (feature space)
              = <Kc, Lc>_F / (||Kc||_F ||Lc||_F),  K = X X^T, L = Y Y^T,  Kc = H K H   (example space, HSIC)

It is 1 for a representation and itself, and invariant to orthogonal transforms and isotropic scaling of
either side (not to arbitrary invertible linear maps). Only the n x n Gram matrices are needed, so a
network's representation of the probe batch is kept as one small Gram matrix per group instead of its
activations (a conv layer of a ResNet gives hundreds of thousands of features per example).

:class:`CkaHook` compares each group's output on a fixed probe batch (the first ``probe_size`` validation
examples, never shuffled) between the network as training starts and as it ends, and, for runs that start
from a checkpoint (``init.from``: a transfer treatment's base), between the trained network and that
checkpoint itself; transfer treatments also get the trained baseB. It runs the net in eval mode under
``no_grad`` and draws nothing from the RNG, so it does not change the numbers of a run.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from harness.data import batches
from harness.engine.hooks import Hook
from harness.errors import ConfigError
from harness.models.groups import GroupedModel, group_modules

# --- the measure --------------------------------------------------------------------------------------


def _centre_columns(x: torch.Tensor) -> torch.Tensor:
    x = x.reshape(x.shape[0], -1).to(torch.float64)  # float64: features can number 10^5, sums must not drift
    return x - x.mean(dim=0, keepdim=True)


def gram(x: torch.Tensor) -> torch.Tensor:
    """The centred linear Gram matrix Kc = H X X^T H (n, n) of a representation (n, ...), in float64."""
    xc = _centre_columns(x)
    return xc @ xc.T  # centring the columns of X centres rows and columns of X X^T


def cka_from_grams(k: torch.Tensor, k2: torch.Tensor) -> float:
    """Linear CKA from two centred Gram matrices (:func:`gram`); NaN when either side is constant."""
    hsic = (k * k2).sum()  # <Kc, Lc>_F: HSIC up to the 1/(n-1)^2 that cancels in the ratio
    denom = torch.linalg.matrix_norm(k) * torch.linalg.matrix_norm(k2)
    return float(hsic / denom) if denom > 0 else math.nan


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same n examples (n, d1) and (n, d2).

    Uses whichever of the two equal formulas is cheaper: the feature-space one costs n*d1*d2, the
    example-space one n^2*(d1+d2). NaN when either representation is constant over the examples.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same examples on both sides, got {x.shape[0]} and {y.shape[0]} rows")
    xc, yc = _centre_columns(x), _centre_columns(y)
    n, d1, d2 = xc.shape[0], xc.shape[1], yc.shape[1]
    if d1 * d2 <= n * (d1 + d2):
        cross = torch.linalg.matrix_norm(yc.T @ xc) ** 2
        denom = torch.linalg.matrix_norm(xc.T @ xc) * torch.linalg.matrix_norm(yc.T @ yc)
        return float(cross / denom) if denom > 0 else math.nan
    return cka_from_grams(xc @ xc.T, yc @ yc.T)


# --- per-group representations ------------------------------------------------------------------------


@torch.no_grad()
def group_outputs(model: GroupedModel, x: torch.Tensor) -> list[torch.Tensor]:
    """The output of every layer group on ``x``, flattened to (n, features), in group order.

    A sequential model (``model.sequential``: each group a run of consecutive children of an
    ``nn.Sequential``) is run child by child; any other net gets forward hooks on each group's last module.
    The net runs in eval mode (no batch statistics, no dropout, no RNG draw) and every module's
    train/eval flag is restored afterwards, so the caller's BatchNorm policy stays as it was.
    """
    net = model.net
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        if model.sequential:
            outputs = _sequential_outputs(model, x)
        else:
            outputs = _hooked_outputs(model, x)
    finally:
        for m, training in modes:
            m.training = training
    return [o.reshape(o.shape[0], -1) for o in outputs]


def _sequential_outputs(model: GroupedModel, x: torch.Tensor) -> list[torch.Tensor]:
    children = dict(model.net.named_children())
    outputs = []
    for group in model.groups:
        for name in group.prefixes:
            x = children[name](x)
        outputs.append(x)
    return outputs


def _hooked_outputs(model: GroupedModel, x: torch.Tensor) -> list[torch.Tensor]:
    # A group's representation is the output of the last module it names (its top-most layer).
    found: dict[int, torch.Tensor] = {}
    handles = []
    for i, modules in enumerate(group_modules(model)):
        handles.append(modules[-1].register_forward_hook(lambda _m, _in, out, i=i: found.__setitem__(i, out)))
    try:
        model.net(x)
    finally:
        for h in handles:
            h.remove()
    missing = [
        model.groups[i].name for i in range(len(model.groups)) if not isinstance(found.get(i), torch.Tensor)
    ]
    if missing:
        raise ValueError(
            f"layer groups {missing} produced no tensor output in the forward pass; CKA cannot see them"
        )
    return [found[i] for i in range(len(model.groups))]


def group_grams(model: GroupedModel, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """{group: centred Gram matrix (n, n) on the CPU} of ``model``'s representation of ``x``."""
    return {g.name: gram(o).cpu() for g, o in zip(model.groups, group_outputs(model, x), strict=True)}


def compare(grams_a: dict[str, torch.Tensor], grams_b: dict[str, torch.Tensor]) -> dict[str, float | None]:
    """{group: CKA} over the groups both sides have (None, valid JSON, where CKA is undefined)."""
    out = {}
    for name, k in grams_a.items():
        if name in grams_b:
            value = cka_from_grams(k, grams_b[name])
            out[name] = None if math.isnan(value) else value
    return out


def probe_batch(part, size: int, device) -> torch.Tensor:
    """The first ``size`` examples of a data part, in stored order (the same probe for every run)."""
    x, _ = next(iter(batches(part, size, shuffle=False, device=device)))
    return x


# --- the hook -----------------------------------------------------------------------------------------


class CkaHook(Hook):
    """Records ``cka`` (start vs trained), ``cka_vs_base`` (``init.from`` checkpoint vs trained) and, for
    transfer treatments, ``cka_vs_baseB`` (trained baseB vs trained), each ``{group: value}``, and
    ``cka_probe`` (what was compared)."""

    def __init__(self, model_cfg, init_from: str | None, probe_size: int = 256):
        self.model_cfg = model_cfg
        self.init_from = init_from
        self.probe_size = int(probe_size)
        self.probe: torch.Tensor | None = None
        self.start: dict[str, torch.Tensor] = {}
        self.start_epoch = 0
        self.skipped: str | None = None

    def on_run_start(self, run) -> None:
        # Held-out data: validation, or the test part when a config keeps no validation set.
        self.part = "val" if len(run.data.val) else "test"
        try:
            self.probe = probe_batch(getattr(run.data, self.part), self.probe_size, run.device)
            self.start = group_grams(run.model, self.probe)
        except (ValueError, RuntimeError, StopIteration) as e:
            # A measurement must never fail a run (e.g. a custom net whose group outputs are not tensors).
            self.probe, self.skipped = None, f"diagnostics: CKA skipped: {type(e).__name__}: {e}"
        self.start_epoch = run.epochs_done  # > 0 after a resume: then "start" is the resumed network

    def on_run_end(self, run, record: dict) -> None:
        if self.skipped:
            record.setdefault("warnings", []).append(self.skipped)
        if self.probe is None:  # the run stopped before it started, or CKA could not be measured
            return
        trained = group_grams(run.model, self.probe)
        record["cka"] = compare(self.start, trained)
        record["cka_probe"] = {
            "part": self.part,
            "size": int(self.probe.shape[0]),
            "start_epoch": self.start_epoch,
        }
        base_b = ((record.get("transfer") or {}).get("baseB") or {}).get("path")
        for key, path in (
            ("cka_vs_base", self.init_from),
            ("cka_vs_baseB", base_b and Path(base_b) / "base.pt"),
        ):
            if not path:
                continue
            try:
                record[key] = self._against_checkpoint(run, str(path), trained)
            except ConfigError as e:  # the record must still be written: say why this comparison is missing
                record.setdefault("warnings", []).append(f"diagnostics: {key} skipped: {e}")

    def _against_checkpoint(self, run, path: str, trained: dict) -> dict[str, float | None]:
        """CKA between the trained net and the network stored in checkpoint ``path``, group by group."""
        from harness.engine import checkpoint
        from harness.models import build_model

        data = run.data
        # Building a model draws its random init from the global RNG: fork it, so the run's stream and
        # anything a later hook draws stay exactly as without diagnostics.
        with torch.random.fork_rng(devices=[]):
            other = build_model(
                self.model_cfg,
                num_classes=data.num_classes,
                in_channels=data.in_channels,
                image_size=data.image_size,
            )
        state = checkpoint.load(path)
        try:
            checkpoint.load_model_state(other, state, path)
            groups = other.names
        except ConfigError:
            # Another class count (base A vs B halves of unequal size): the head differs, compare the rest.
            groups = checkpoint.load_model_state(other, state, path, n_groups=len(other.groups) - 1)
        other.net.to(run.device)
        grams = group_grams(other, self.probe)
        return compare({g: trained[g] for g in groups}, grams)
