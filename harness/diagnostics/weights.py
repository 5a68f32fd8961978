"""What fine-tuning does to each layer group, measured while it happens, and the invariants of freezing.

:class:`WeightDiagnostics` is a hook. Per epoch and per layer group it records one row of the record's
``diagnostics`` table (columns :data:`COLUMNS`; ``pd.DataFrame(d["data"], columns=d["columns"])``):

| column         | meaning |
|----------------|---------|
| `trainable`    | the plan trains the group in this phase (its norm layers may train anyway under bn=train) |
| `lr`           | the peak rate the group got this epoch (0 when frozen), as in the history's ``lr_max`` |
| `change_start` | ``||W_t - W_0|| / ||W_0||`` over all the group's parameters, W_0 = as the run started |
| `change_phase` | the same from the start of the current phase |
| `grad_norm`    | the L2 norm of the group's gradient, root mean square over the epoch's steps (0: none) |
| `update_ratio` | a step's update ``||W_after - W_before||`` (root mean square over the epoch's steps) over |
|                | ``||W||`` at the epoch's end, both over the group's parameters that train (0: frozen) |
| `norm_change`  | ``change_start`` of the norm layers' affine parameters alone (null: no norm layers) |
| `stats_drift`  | ``||s_t - s_0|| / ||s_0||`` of the norm layers' running mean and var (null: none) |

An unchanged group reads exactly 0.0: differences are taken against exact copies, and x - x is 0.

Cost: per step, three foreach calls over the parameters that train, and no host sync: in ``after_backward``
a copy of the weights (the gradient norms come from the loop's finite check, ``run.grad_norms``); after
``optimizer.step()`` the difference to that copy and its norms. The per-step norms are kept as they are and
squared and summed every :data:`FLUSH_STEPS` steps and at the epoch's end, a few calls for all of them.
Frozen parameters cost nothing per step (so a cached frozen prefix stays cheap). Everything else is done once
per epoch. Memory: three copies of the parameters (the run's start, the phase's start, the step buffer).

Invariants, checked every epoch (warnings in ``record["warnings"]``, the run still ends ``ok``):
- a group the plan freezes whose weights moved, compared bit for bit with the phase's start (a weight-decay
  or optimizer-state leak); its norm layers' affine parameters may move only under ``bn=train``, their
  running statistics not under ``bn=eval``;
- a group the plan trains (at a positive lr) whose weights did not move at all in an epoch: every step's
  update exactly 0 (the "unfrozen after resume but never trained" bug: parameters missing from the
  optimizer or without gradients).

After a resume, "start" means the network as the run resumed (``diagnostics.start_epoch``).

Adaptive strategies freeze groups in the middle of a phase (:meth:`WeightDiagnostics.on_trainable_change`): the
epoch's sums of the tensors that stop training are kept, a group counts as trainable in an epoch when it trained
for any of its steps (the history entry's ``trainable``), and a parameter frozen mid-phase is checked against
its value when it froze. Parameters that train inside a frozen group (BitFit's biases, norm layers under
``bn=train``) are not expected to stay put: the frozen checks look at the parameters that do not train.
"""

from __future__ import annotations

import torch

from harness.engine.hooks import Hook
from harness.models.groups import group_modules, norm_layers

DIAGNOSTICS_VERSION = 1
FLUSH_STEPS = 64  # per-step norms kept before they are squared and summed (bounds the memory they hold)
COLUMNS = [
    "epoch",
    "phase_index",
    "phase",
    "group",
    "trainable",
    "lr",
    "change_start",
    "change_phase",
    "grad_norm",
    "update_ratio",
    "norm_change",
    "stats_drift",
]


def _relative(diff_sq: float, ref_sq: float) -> float | None:
    """``||d|| / ||ref||`` from squared norms: exactly 0.0 when nothing moved, None when undefined."""
    if diff_sq == 0.0:
        return 0.0
    return (diff_sq / ref_sq) ** 0.5 if ref_sq > 0 else None


def _stats_buffers(modules) -> list[torch.Tensor]:
    """The running mean and variance of every norm layer in ``modules`` that tracks them."""
    out = []
    for layer in norm_layers(modules):
        for name in ("running_mean", "running_var"):
            buf = getattr(layer, name, None)
            if isinstance(buf, torch.Tensor):
                out.append(buf)
    return out


class WeightDiagnostics(Hook):
    """Per-epoch, per-group weight change, gradient norm, update ratio and norm-layer drift; freeze checks."""

    def __init__(self):
        self.params: list[torch.nn.Parameter] | None = None  # None until the run starts

    # --- set-up -------------------------------------------------------------------------------------

    def on_run_start(self, run) -> None:
        self.names = [gp.name for gp in run.params]
        self.bn = run.plan.bn
        device = run.device
        # Every parameter once, group by group; its segment is 2*group (weights) or 2*group + 1 (norm affine),
        # so one index_add gives per-group sums with the norm part kept apart.
        self.params, segments = [], []
        for g, gp in enumerate(run.params):
            self.params += gp.other + gp.norm
            segments += [2 * g] * len(gp.other) + [2 * g + 1] * len(gp.norm)
        self.segment = torch.tensor(segments, dtype=torch.long, device=device)
        self.segments = segments
        self.n_segments = 2 * len(self.names)
        self.has_norm = [bool(gp.norm) for gp in run.params]
        self.has_weights = [bool(gp.other) for gp in run.params]
        self.stats = [_stats_buffers(mods) for mods in group_modules(run.model)]

        self.start_epoch = run.epochs_done
        self.w0 = [p.detach().clone() for p in self.params]
        self.w0_sq = self._segment_sq(self.w0, self.segment)
        self.stats0 = [[b.clone() for b in bufs] for bufs in self.stats]
        self.before = [torch.empty_like(p) for p in self.params]  # the step buffer
        self.zero = torch.zeros((), device=device)
        self.rows: list[list] = []
        self.problems: dict[tuple[str, str, int], dict] = {}
        self._take_phase_start()
        self._select_trainable(run)

    def on_phase_start(self, run, phase_index: int) -> None:
        if self.params is None:  # a resume enters its phase once before the run starts; on_run_start copies
            return
        self._take_phase_start()
        self._select_trainable(run)

    def _take_phase_start(self) -> None:
        self.phase0 = [p.detach().clone() for p in self.params]
        self.phase0_sq = self._segment_sq(self.phase0, self.segment)
        self.stats_phase0 = [[b.clone() for b in bufs] for bufs in self.stats]
        # what a frozen parameter must still equal: its value at the phase's start, or when it froze
        self.reference = list(self.phase0)

    def _select_trainable(self, run, *, keep_epoch: bool = False) -> None:
        """The parameters that train now, in the order of ``run.train_params`` (and so of the gradient norms
        the loop leaves in ``run.grad_norms`` each step). ``keep_epoch``: mid-epoch, the sums so far stay."""
        position = {id(p): i for i, p in enumerate(self.params)}
        index = [position[id(p)] for p in run.train_params]
        self.train_index = index
        self.train_params = [self.params[i] for i in index]
        self.train_before = [self.before[i] for i in index]
        self.train_segment = self.segment[index] if index else self.segment[:0]
        # Per trainable tensor, the epoch's sums of its squared gradient and update norms (float64 vectors),
        # and the per-step norms (lists of 0-dim tensors) not yet added to them.
        device = self.zero.device
        self.grad_sq = torch.zeros(len(index), dtype=torch.float64, device=device)
        self.update_sq = torch.zeros(len(index), dtype=torch.float64, device=device)
        self.grad_norms: list[list[torch.Tensor]] = []
        self.update_norms: list[list[torch.Tensor]] = []
        if not keep_epoch:
            self.steps = 0
            # per segment, the epoch's sums of tensors that stopped training during it
            self.done_grad_sq = torch.zeros(self.n_segments, dtype=torch.float64, device=device)
            self.done_update_sq = torch.zeros(self.n_segments, dtype=torch.float64, device=device)
            self.trained_index: set[int] = set()  # every tensor that trained in the epoch
        self.trained_index.update(index)

    def on_trainable_change(self, run) -> None:
        """A rule froze groups mid-phase: keep the epoch's sums of the tensors that stop training, remember
        their values (from now on they must not move), and follow the new set."""
        if self.params is None:
            return
        self._flush()
        self.done_grad_sq.index_add_(0, self.train_segment, self.grad_sq)
        self.done_update_sq.index_add_(0, self.train_segment, self.update_sq)
        still = {id(p) for p in run.train_params}
        for i in self.train_index:
            if id(self.params[i]) not in still:
                self.reference[i] = self.params[i].detach().clone()
        self._select_trainable(run, keep_epoch=True)

    # --- per step: device work only, no host sync ----------------------------------------------------

    def after_backward(self, run) -> None:
        if not self.train_params:
            return
        self.grad_norms.append(run.grad_norms)  # per tensor of run.train_params, from the loop's finite check
        torch._foreach_copy_(self.train_before, self.train_params)  # the weights before optimizer.step()
        self.steps += 1

    def on_batch_end(self, run, step: int, steps: int, loss) -> None:
        if not self.train_params:
            return
        # before - after = -update (exactly 0 if none)
        torch._foreach_sub_(self.train_before, self.train_params)
        self.update_norms.append(torch._foreach_norm(self.train_before))
        if len(self.update_norms) == FLUSH_STEPS:
            self._flush()

    def _flush(self) -> None:
        """Add the squares of the per-step norms kept so far to the epoch's per-tensor sums."""
        for kept, sums in ((self.grad_norms, self.grad_sq), (self.update_norms, self.update_sq)):
            if kept:
                norms = torch.stack([n for step in kept for n in step]).view(len(kept), -1)
                sums += norms.double().square().sum(0)
                kept.clear()

    # --- per epoch -----------------------------------------------------------------------------------

    def _segment_sq(self, tensors: list[torch.Tensor], segment: torch.Tensor) -> list[float]:
        """Per segment, the sum of squares of ``tensors`` (aligned with ``segment``), in float64."""
        if not tensors:
            return [0.0] * self.n_segments
        sq = torch.stack(torch._foreach_norm(tensors, 2, dtype=torch.float64)).square()
        out = torch.zeros(self.n_segments, dtype=torch.float64, device=sq.device).index_add_(0, segment, sq)
        return out.tolist()

    def _accumulated(self, sums: torch.Tensor, done: torch.Tensor) -> list[float]:
        """Per segment, an epoch's per-tensor sums (of the trainable tensors) added up, with those of the
        tensors that stopped training during the epoch (``done``)."""
        return done.clone().index_add_(0, self.train_segment, sums).tolist()

    def on_epoch_end(self, run, entry: dict) -> None:
        phase_index = entry["phase_index"]
        phase = run.plan.phases[phase_index]
        d_start = self._segment_sq(
            torch._foreach_sub([p.detach() for p in self.params], self.w0), self.segment
        )
        d_phase = self._segment_sq(
            torch._foreach_sub([p.detach() for p in self.params], self.phase0), self.segment
        )
        steps = max(self.steps, 1)
        self._flush()
        grad_sq = self._accumulated(self.grad_sq, self.done_grad_sq)
        update_sq = self._accumulated(self.update_sq, self.done_update_sq)
        trained = sorted(self.trained_index)
        weight_sq = self._segment_sq([self.params[i].detach() for i in trained], self.segment[trained])
        moved = self._moved_since_phase_start()
        trains = set(entry.get("trainable", phase.trainable))
        for g, name in enumerate(self.names):
            w, n = 2 * g, 2 * g + 1
            trainable = name in trains
            lr = float(entry["lr_max"][name])
            # root mean square over the epoch's steps of the group's gradient and step-update norms
            grad = ((grad_sq[w] + grad_sq[n]) / steps) ** 0.5
            update = (update_sq[w] + update_sq[n]) / steps
            row = [
                entry["epoch"],
                phase_index,
                phase.name,
                name,
                trainable,
                lr,
                _relative(d_start[w] + d_start[n], self.w0_sq[w] + self.w0_sq[n]),
                _relative(d_phase[w] + d_phase[n], self.phase0_sq[w] + self.phase0_sq[n]),
                grad,
                _relative(update, weight_sq[w] + weight_sq[n]),
                _relative(d_start[n], self.w0_sq[n]) if self.has_norm[g] else None,
                self._stats_drift(g),
            ]
            self.rows.append(row)
            in_phase = row[COLUMNS.index("change_phase")]
            self._check(
                entry["epoch"], phase_index, g, trainable, lr, moved[g], update_sq[w], update_sq[n], in_phase
            )
        self.grad_sq.zero_()
        self.update_sq.zero_()
        self.done_grad_sq.zero_()
        self.done_update_sq.zero_()
        self.trained_index = set(self.train_index)
        self.steps = 0

    def _moved_since_phase_start(self) -> list[dict[str, bool]]:
        """Per group, bit-exactly: did its frozen weights, frozen norm affine params, running statistics
        change? A parameter that trains now is not looked at; a frozen one is compared with its value at the
        phase's start, or when it froze."""
        moved = [{"weights": False, "norm": False, "stats": False} for _ in self.names]
        for p, p0, seg in zip(self.params, self.reference, self.segments, strict=True):
            if not p.requires_grad and not torch.equal(p.detach(), p0):
                moved[seg // 2]["norm" if seg % 2 else "weights"] = True
        for g, (bufs, bufs0) in enumerate(zip(self.stats, self.stats_phase0, strict=True)):
            moved[g]["stats"] = any(not torch.equal(b, b0) for b, b0 in zip(bufs, bufs0, strict=True))
        return moved

    def _stats_drift(self, g: int) -> float | None:
        if not self.stats[g]:
            return None
        diff = sum(
            float(torch.linalg.vector_norm(b - b0, dtype=torch.float64) ** 2)
            for b, b0 in zip(self.stats[g], self.stats0[g], strict=True)
        )
        ref = sum(float(torch.linalg.vector_norm(b0, dtype=torch.float64) ** 2) for b0 in self.stats0[g])
        return _relative(diff, ref)

    # --- invariants ----------------------------------------------------------------------------------

    def _check(
        self, epoch, phase_index, g, trainable, lr, moved, update_weights, update_norm, change
    ) -> None:
        if not trainable:
            if moved["weights"]:
                self._flag("frozen_moved", g, phase_index, epoch, change)
            if moved["norm"] and self.bn != "train":
                self._flag("frozen_norm_moved", g, phase_index, epoch, change)
            if moved["stats"] and self.bn == "eval":
                self._flag("frozen_stats_moved", g, phase_index, epoch, self._stats_drift(g))
        elif lr > 0:
            # A group without weights of its own (only norm layers) is judged by its norm parameters.
            did_move = update_weights > 0 or (update_norm > 0 and not self.has_weights[g])
            if not did_move:
                self._flag("trainable_stuck", g, phase_index, epoch, 0.0)

    def _flag(self, kind: str, g: int, phase_index: int, epoch: int, amount: float | None) -> None:
        item = self.problems.setdefault((kind, self.names[g], phase_index), {"epochs": [], "max_change": 0.0})
        item["epochs"].append(epoch)
        item["max_change"] = max(item["max_change"], amount or 0.0)

    def warnings(self, plan) -> list[str]:
        """One line per (problem, group, phase), naming the group, the phase and how far it moved."""
        lines = []
        for (kind, group, index), item in self.problems.items():
            epochs = item["epochs"]
            when = f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}-{epochs[-1]}"
            where = f"group '{group}' is frozen in phase {index + 1} '{plan.phases[index].name}' ({when})"
            amount = f"{item['max_change']:.3g}"
            leak = "a weight-decay or optimizer-state leak"
            if kind == "frozen_moved":
                text = f"{where} but its weights moved (relative change up to {amount} in the phase): {leak}"
            elif kind == "frozen_norm_moved":
                text = (
                    f"{where} with bn={self.bn} but its norm-layer affine parameters moved (relative change "
                    f"of the group up to {amount}): {leak}"
                )
            elif kind == "frozen_stats_moved":
                text = f"{where} with bn=eval but its running statistics changed (drift up to {amount})"
            else:  # trainable_stuck
                text = (
                    f"group '{group}' should train in phase {index + 1} '{plan.phases[index].name}' ({when}) "
                    "but did not move at all (every step's update was 0): missing from the optimizer or "
                    "without gradients (the resume bug)?"
                )
            lines.append(f"diagnostics: {text}")
        return lines

    def on_run_end(self, run, record: dict) -> None:
        if self.params is None:
            return
        record["diagnostics"] = {
            "version": DIAGNOSTICS_VERSION,
            "start_epoch": self.start_epoch,
            "columns": COLUMNS,
            "data": self.rows,
            "problems": [
                {"kind": k, "group": grp, "phase_index": i, **item}
                for (k, grp, i), item in self.problems.items()
            ],
        }
        record.setdefault("warnings", []).extend(self.warnings(run.plan))
