"""The training loop: executes a freeze plan epoch by epoch. Reads top to bottom.

Everything the loop needs is gathered in a :class:`Run` by :mod:`harness.train`; everything optional
(progress, logging, pruning, diagnostics) is a :class:`harness.engine.hooks.Hook`. What an adaptive strategy
decides during training is its controller's (``run.adaptive``, :mod:`harness.engine.adaptive`), called at
fixed points; what the run executes is counted by ``run.compute`` (:mod:`harness.engine.compute`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from harness.data import DataBundle, batches, inference_batch_size, num_batches
from harness.data.augment import BatchAugment
from harness.engine.adaptive import Controller
from harness.engine.compute import ComputeMeter, sample_shape
from harness.engine.early_stop import EarlyStop
from harness.engine.finite import CHECK_EVERY, FiniteGuard, skips_on_device
from harness.engine.hooks import Hook, call
from harness.engine.optim import build_optimizer, set_rates
from harness.engine.prefix import PhaseView, cacheable_groups, phase_view
from harness.models.groups import GroupedModel
from harness.plan import freezing, schedules
from harness.plan.freezing import GroupParams
from harness.plan.strategies import Phase, Plan


@dataclass
class Run:
    model: GroupedModel
    params: list[GroupParams]
    plan: Plan
    data: DataBundle
    optim_cfg: dict
    batch_size: int
    seed: int
    device: torch.device
    hooks: list[Hook] = field(default_factory=list)
    save_checkpoint: Callable[[Run], None] | None = None
    optimizer: torch.optim.Optimizer | None = None
    history: list[dict] = field(default_factory=list)
    epochs_done: int = 0  # > 0 when resumed from a checkpoint
    prefix_cache: bool = (
        True  # run a frozen, static input-side prefix once per phase (harness/engine/prefix.py)
    )
    # autocast forward and loss to bfloat16 (mixed precision; weights and optimizer stay fp32)
    bf16: bool = False
    # torch.compile the module each phase trains (the net, or net[k:] behind a cached prefix)
    compile: bool = False
    # the paper's best-k metric needs a test evaluation per epoch; else only the last
    test_every_epoch: bool = True
    # Set by the loop for hooks: the parameters that train in the current phase (requires_grad, group by
    # group, in GroupParams.all order), and after each backward the L2 norm of each one's gradient (float64,
    # 0 where it has none), computed once per step by check_finite (the diagnostics reuse them).
    train_params: list[torch.nn.Parameter] = field(default_factory=list)
    grad_norms: list[torch.Tensor] = field(default_factory=list)
    # The phase's NaN/Inf check (set by enter_phase), and how many steps pass between two host reads of it
    # when the optimizer can skip a bad step on the device (harness/engine/finite.py).
    finite: FiniteGuard | None = None
    finite_check_every: int = CHECK_EVERY
    # torch.compile's backend when compile is on (the GPU benchmark's CPU test traces with "eager")
    compile_backend: str = "inductor"
    # early_stopping.patience: stop when validation accuracy stops improving, end with the best weights
    early_stop: EarlyStop | None = None
    # data.augment on the device (harness/data/augment.py): train batches only, seeded per (seed, epoch)
    augment: BatchAugment | None = None
    # The plan's rule that decides during training (a fixed plan's decides nothing), and the FLOP meter.
    adaptive: Controller | None = None
    compute: ComputeMeter | None = None
    # Set by the loop: the groups that train now (the phase's, less those a rule froze since it began).
    trainable: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.adaptive = self.adaptive or Controller(self.plan)
        self.compute = self.compute or ComputeMeter(self.device)

    @property
    def total_epochs(self) -> int:
        """The epochs this run trains: the plan's, or fewer once a rule ended a phase early (lp_ft)."""
        return self.adaptive.total_epochs

    def shuffle_seed(self, epoch: int) -> int:
        # Each epoch's order depends only on (seed, epoch), so a resumed run sees the same batches.
        return self.seed * 1_000_003 + epoch


def autocast(device, enabled: bool):
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def evaluate(
    net: torch.nn.Module, part, device, batch_size: int | None = None, bf16: bool = False
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``net`` on a data part, in eval mode.

    Sums stay on the device and are read once at the end (not a host sync per batch); the float64 sum of
    the float32 batch sums is the same number as adding them up in Python."""
    was_training = net.training
    net.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    for x, y in batches(part, batch_size or inference_batch_size(device), shuffle=False, device=device):
        with autocast(device, bf16):
            logits = net(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
        count += len(y)
    net.train(was_training)
    return loss_sum.item() / count, correct.item() / count


def check_finite(run: Run, loss: torch.Tensor, epoch: int, step: int) -> None:
    """End the run at the step where the loss or any gradient stops being finite, before a bad update
    reaches the weights; without a host sync per step (:mod:`harness.engine.finite` says how and what a
    failing run loses).

    The step's loss and the float64 L2 norm of every trainable parameter's gradient (kept in
    ``run.grad_norms``, which the diagnostics reuse) are recorded on the device; a fused optimizer skips its
    update once one is not finite. Every ``run.finite.every`` steps (and at the epoch's end, by the loop) the
    host reads the flag and raises :class:`NumericalError` for the first bad step. A finite gradient never
    ends a run.
    """
    run.grad_norms = run.finite.record(loss, step)
    if run.finite.due:
        run.finite.read(epoch)


def enter_phase(run: Run, index: int, first_epoch_of_phase: bool) -> None:
    phase = run.plan.phases[index]
    run.adaptive.on_phase_start(run, index, first_epoch_of_phase)
    set_trainable(run, phase)
    reset = run.plan.optimizer_state == "reset" and first_epoch_of_phase
    if run.optimizer is None or reset:
        run.optimizer = build_optimizer(run.optim_cfg, run.params, phase.lr)
    new_finite_guard(run)
    call(run.hooks, "on_phase_start", run, index)


def new_finite_guard(run: Run) -> None:
    """The NaN/Inf check over the parameters that train now, read every finite_check_every steps when the
    optimizer can skip a bad step on the device, else before every step (harness/engine/finite.py)."""
    every = run.finite_check_every if skips_on_device(run.optimizer) else 1
    run.finite = FiniteGuard(run.train_params, run.model.net, run.device, every)
    run.finite.attach(run.optimizer)


def set_trainable(run: Run, phase: Phase) -> None:
    """requires_grad from the groups that train now (and what trains inside frozen ones: BitFit's biases)."""
    run.trainable = run.adaptive.trainable(phase)
    also = freezing.partial_ids(run.model, phase.partial)
    freezing.apply_trainable(run.params, run.trainable, run.plan.bn, also)
    run.train_params = [p for group in run.params for p in group.all if p.requires_grad]
    run.adaptive.on_trainable(run)


def refreeze(run: Run, phase: Phase, view: PhaseView, epoch: int) -> None:
    """A rule froze groups in the middle of an epoch: they leave the backward pass from the next step on
    (their forward pass goes when the next epoch's view caches them)."""
    run.finite.read(epoch)  # the steps so far are checked before the guard follows the new parameters
    set_trainable(run, phase)
    new_finite_guard(run)
    freezing.set_modes(run.model, run.trainable, run.plan.bn)
    run.compute.configure(view.net, sample_shape(view.part("train")))
    call(run.hooks, "on_trainable_change", run)


def epoch_view(run: Run, phase: Phase, view: PhaseView | None) -> PhaseView:
    """What this epoch feeds to which module: the whole net on the data, or net[k:] on the cached features
    of a static frozen prefix; built when a phase starts, grown when a rule froze more of the input side."""
    k = cacheable_groups(run.model, phase, run.plan.bn, run.data, run.trainable) if run.prefix_cache else 0
    if view is not None and view.cached_groups == k:
        return view
    if view is not None and 0 < view.cached_groups < k:
        view = view.grow(run.model, k)
    else:
        view = phase_view(
            run.model,
            phase,
            run.plan.bn,
            run.data,
            run.device,
            enabled=run.prefix_cache,
            trainable=run.trainable,
            on_prefix=run.compute.prefix,
        )
    # Each part's features are computed when first asked for: train and val now (the epoch's seconds include
    # them), test only if this phase evaluates it.
    for part in ("train", "val"):
        view.part(part)
    run.compute.configure(view.net, sample_shape(view.part("train")))
    if run.compile:
        view.net = torch.compile(view.net, backend=run.compile_backend)
    return view


def fit(run: Run) -> None:
    """Train ``run.model`` through the remaining epochs of ``run.plan``; history goes to ``run.history``."""
    plan = run.plan
    groups = plan.groups
    steps = num_batches(run.data.train, run.batch_size)
    call(run.hooks, "on_run_start", run)
    first_epoch = epoch = run.epochs_done
    view = None
    while epoch < run.total_epochs:  # a rule may shorten a phase, and so the run, as it goes (lp_ft)
        phase_index, epoch_in_phase = run.adaptive.phase_at(epoch)
        phase = plan.phases[phase_index]
        started = time.perf_counter()  # the epoch's seconds include a phase's setup (and prefix features)
        run.compute.start_epoch()
        if epoch_in_phase == 0 or epoch == first_epoch:
            enter_phase(run, phase_index, first_epoch_of_phase=epoch_in_phase == 0)
            view = None
        view = epoch_view(run, phase, view)
        freezing.set_modes(run.model, run.trainable, plan.bn)
        params_at_start = sum(p.numel() for p in run.train_params)

        phase_steps = phase.epochs * steps
        loss_sum = torch.zeros((), device=run.device)
        lr_max = [0.0] * len(groups)
        trained_steps = [0] * len(groups)
        seed = run.shuffle_seed(epoch)
        order = batches(view.part("train"), run.batch_size, shuffle=True, seed=seed, device=run.device)
        # Its own stream, drawn per (seed, epoch) like the order: a resumed run augments as an uninterrupted one
        augment = run.augment.for_epoch(seed * 2 + 1, run.device) if run.augment is not None else None
        for i, (x, y) in enumerate(order):
            if augment is not None:
                x = augment(x)
            step = epoch_in_phase * steps + i
            factors = schedules.group_factors(phase.schedule, step, phase_steps, steps, len(groups))
            if run.early_stop is not None:  # cut on a validation plateau (early_stopping.reductions)
                factors = [f * run.early_stop.lr_factor for f in factors]
            set_rates(run.optimizer, phase.lr, factors, schedules.momentum(phase.schedule, step, phase_steps))

            run.optimizer.zero_grad(set_to_none=True)  # also drops stale grads of groups frozen since
            with autocast(run.device, run.bf16):
                loss = F.cross_entropy(view.net(x).float(), y)
            loss.backward()
            check_finite(run, loss, epoch, i)
            run.adaptive.after_backward(run)  # the rule's gradient work: L2-SP's penalty, AutoFreeze's norms
            call(run.hooks, "after_backward", run)
            trains = set(run.trainable)
            for g, (name, pg) in enumerate(zip(groups, run.optimizer.param_groups, strict=True)):
                if name in trains:  # the rate the group really gets at this step
                    lr_max[g] = max(lr_max[g], pg["lr"])
                    trained_steps[g] += 1
            run.optimizer.step()
            run.compute.train_step(len(y))
            loss_sum += loss.detach()
            call(run.hooks, "on_batch_end", run, i + 1, steps, loss)
            if run.adaptive.after_step(run, epoch, step, phase_steps):  # the rule froze groups
                refreeze(run, phase, view, epoch)
        run.finite.read(epoch)  # the epoch's last steps, before its evaluation and checkpoint (a host sync)
        seconds = time.perf_counter() - started

        val_loss, val_acc = evaluate(view.net, view.part("val"), run.device, bf16=run.bf16)
        run.compute.evaluated(view.net, sample_shape(view.part("val")), len(view.part("val")))
        test_loss, test_acc = None, None
        if run.test_every_epoch or epoch == run.total_epochs - 1:
            test_loss, test_acc = evaluate(view.net, view.part("test"), run.device, bf16=run.bf16)
            run.compute.evaluated(view.net, sample_shape(view.part("test")), len(view.part("test")))
        trains = set(run.trainable)
        entry = {
            "epoch": epoch + 1,
            "phase": phase.name,
            "phase_index": phase_index,
            "train_loss": loss_sum.item() / steps,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            # The rate each group actually got (0 for frozen groups; their norm params may still train under bn=train).
            "lr": {
                g: (pg["lr"] if g in trains else 0.0)
                for g, pg in zip(groups, run.optimizer.param_groups, strict=True)
            },
            "lr_max": dict(zip(groups, lr_max, strict=True)),
            # Which groups trained in this epoch, for how many of its steps (a rule may freeze one mid-epoch).
            "trainable": [g for g, n in zip(groups, trained_steps, strict=True) if n],
            "trained_steps": dict(zip(groups, trained_steps, strict=True)),
            "seconds": seconds,
            "cached_groups": view.cached_groups,
            "samples_per_s": len(run.data.train) / seconds if seconds > 0 else None,
            "compute": {
                **run.compute.end_epoch(),
                "trainable_params": params_at_start,
                "trainable_params_end": sum(p.numel() for p in run.train_params),
            },
        }
        run.history.append(entry)
        run.epochs_done = epoch + 1
        stop = run.early_stop is not None and run.early_stop.update(run.model.net, epoch + 1, val_acc)
        run.adaptive.end_epoch(run, epoch, entry)  # its decisions into the entry; lp_ft may end its probe
        if run.save_checkpoint is not None:
            run.save_checkpoint(run)
        call(run.hooks, "on_epoch_end", run, entry)
        if stop:
            break
        epoch += 1
    if run.early_stop is not None:
        end_with_best_weights(run)


def end_with_best_weights(run: Run) -> None:
    """Early stopping's end: the best-validation weights back in the net (and in the checkpoint), and their
    test accuracy in their epoch's entry if that epoch had no test evaluation."""
    run.early_stop.restore(run.model.net)
    kept = run.history[run.early_stop.best_epoch - 1]
    if kept["test_acc"] is None:
        kept["test_loss"], kept["test_acc"] = evaluate(
            run.model.net, run.data.test, run.device, bf16=run.bf16
        )
        run.compute.evaluated(run.model.net, sample_shape(run.data.test), len(run.data.test))
    if run.save_checkpoint is not None:
        run.save_checkpoint(run)
