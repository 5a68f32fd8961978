"""The NaN/Inf check of every training step, without a host sync per step.

A check that turns ``torch.isfinite(...)`` into a Python bool waits for the GPU once per step: the host
stops queueing kernels until the step's backward has finished, and the GPU then idles while the host
queues the next step. So the check is split in two:

- **every step, on the device** (:meth:`FiniteGuard.record`): the L2 norm of each trainable gradient,
  computed in float64, and the loss go into one row of a small device buffer; the flag ``found`` (1.0 once
  any step since the last read was not finite) is updated from the buffer's rows. Fused optimizers (torch's
  ``fused=True`` Adam/AdamW/SGD, the harness default) read that flag inside their kernel and skip the
  whole update while it is set: weights, moments and step counts stay as they were, exactly as torch's
  GradScaler skips a step with an overflow. The flag is sticky, so every step after the first bad one is
  skipped too, until the host reads it;
- **every** :data:`CHECK_EVERY` **steps and at the end of each epoch, on the host** (:meth:`FiniteGuard.read`,
  one sync): if the flag is set, the run ends with a :class:`~harness.errors.NumericalError` naming the
  epoch and step where it first went non-finite, the loss then and the tensors that were NaN or Inf.

What a run that goes non-finite loses against a check that stops at the step itself: nothing in its
weights or optimizer state, which are those before the first bad step; it computes up to CHECK_EVERY - 1
more steps (their updates skipped) before it stops, and the forward passes of those steps still update
BatchNorm running statistics in the network in memory (the bad step itself did that under the old check
too). The run ends ``failed`` before its epoch's evaluation and checkpoint, so the checkpoint on disk is the
last good epoch's. One more detail: fused SGD with momentum allocates its momentum buffers uninitialised when
its very first step is skipped; the run stops before any later step could read them.

Why exact: the float64 norm of float32/bf16 gradients cannot overflow (a tensor would need ~1e231 elements
of the largest float32), so a norm is finite exactly when every element is, NaN when one is NaN, Inf when
one is Inf and none is NaN. A finite gradient never stops a run, however large.

Optimizers that cannot skip a step on the device (torch's non-fused implementations, ``optim.fused=false``)
get a guard with ``every=1``: it is read before every optimizer step, one sync per step, as before.
"""

from __future__ import annotations

import math

import torch

from harness.errors import NumericalError

CHECK_EVERY = 50  # steps between two host reads of the flag (fused optimizers); also read at each epoch's end


def skips_on_device(optimizer: torch.optim.Optimizer) -> bool:
    """True for optimizers whose step honours ``found_inf`` (torch's fused ones, as GradScaler uses them)."""
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False))


class FiniteGuard:
    """One phase's check over ``params``, the parameters of ``net`` that train in it."""

    def __init__(self, params: list[torch.nn.Parameter], net: torch.nn.Module, device, every: int):
        if every < 1:
            raise ValueError(f"every={every} must be >= 1")
        self.params, self.every = params, every
        # For the message: each parameter's name and place in the net (bad tensors are listed in net order).
        place = {id(p): (i, name) for i, (name, p) in enumerate(net.named_parameters())}
        self.places = [place[id(p)] for p in params]
        # Row k of the window: the loss and each gradient norm of the k-th step since the last read.
        self.window = torch.zeros(every, 1 + len(params), dtype=torch.float64, device=device)
        self.found = torch.zeros((), dtype=torch.float32, device=device)  # read by fused optimizers
        self.steps: list[int] = []  # the step index of each row (host side: no sync to know it)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Let a fused optimizer skip its update while ``found`` is set (no-op for other optimizers)."""
        if skips_on_device(optimizer):
            optimizer.found_inf = self.found

    @property
    def due(self) -> bool:
        return len(self.steps) >= self.every

    def record(self, loss: torch.Tensor, step: int) -> list[torch.Tensor]:
        """Device work only: put the step's loss and gradient norms in the window, update ``found``.
        Returns the per-parameter float64 gradient norms (0 where a parameter has no gradient)."""
        grads = [p.grad if p.grad is not None else p.new_zeros(()) for p in self.params]
        norms = torch._foreach_norm(grads, 2, dtype=torch.float64) if grads else []
        row = self.window[len(self.steps)]
        row[0].copy_(loss.detach())
        if norms:
            torch.stack(norms, out=row[1:])
        self.steps.append(step)
        # A sum with a NaN or Inf in it is never finite, and finite float64 values here cannot overflow.
        torch.logical_not(torch.isfinite(self.window[: len(self.steps)].sum()), out=self.found)
        return list(norms)

    def read(self, epoch: int) -> None:
        """One host sync: raise for the first non-finite step since the last read, else start a new window."""
        if not self.steps:
            return
        bad = bool(self.found.item())
        rows, steps = (self.window[: len(self.steps)].cpu() if bad else None), self.steps
        self.steps = []
        if not bad:
            return
        self.found.zero_()
        first = next(k for k in range(len(steps)) if not torch.isfinite(rows[k]).all())
        loss, norms = rows[first, 0].item(), rows[first, 1:].tolist()
        where = f"at epoch {epoch + 1}, step {steps[first] + 1}"
        if not math.isfinite(loss):
            raise NumericalError(f"loss is {loss} {where}")
        bad_tensors = sorted(
            (place, n) for place, n in zip(self.places, norms, strict=True) if not math.isfinite(n)
        )
        kinds = "/".join(sorted({"NaN" if math.isnan(n) else "Inf" for _, n in bad_tensors}))
        names = ", ".join(name for (_, name), _ in bad_tensors[:3]) + (
            ", ..." if len(bad_tensors) > 3 else ""
        )
        raise NumericalError(f"gradient is {kinds} {where} (loss {loss:.4g}) in {names}")
