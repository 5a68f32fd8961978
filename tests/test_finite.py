"""The NaN/Inf check without a per-step host sync (harness/engine/finite.py): a bad step read later still
never reaches the weights or the optimizer state, and the run fails naming the step where it went bad."""

import pytest
import torch
from search_helpers import FAULTY_MODEL
from search_helpers import TINY as SEARCH_TINY

from harness.assemble import assemble_run
from harness.engine.finite import FiniteGuard
from harness.engine.hooks import Hook
from harness.engine.loop import fit
from harness.errors import NumericalError
from tests.conftest import compose_config


class AfterStep(Hook):
    """Counts the steps that ran to their end; keeps the weights and optimizer state after step ``at``."""

    def __init__(self, at: int):
        self.at, self.steps = at, 0

    def on_batch_end(self, run, step: int, steps: int, loss) -> None:
        self.steps += 1
        if self.steps == self.at:
            self.weights = [p.detach().clone() for p in run.model.net.parameters()]
            self.state = {id(p): {k: v.clone() for k, v in s.items()} for p, s in run.optimizer.state.items()}


def faulty_run(tmp_path, *overrides):
    cfg = compose_config(
        [*SEARCH_TINY, *FAULTY_MODEL, "+model.net.mode=inf_grad", "strategy=full_unfreeze", *overrides],
        tiny=False,
        root=tmp_path,
    )
    return assemble_run(cfg)


@pytest.mark.parametrize("optim", ["adamw", "sgd"])
def test_a_bad_step_read_steps_later_leaves_weights_and_optimizer_state_as_before_it(tmp_path, optim):
    run = faulty_run(tmp_path, f"optim={optim}")
    run.finite_check_every = 5  # the gradient goes Inf at step 3; the host reads the flag at step 5
    watch = AfterStep(at=2)
    run.hooks = [watch]
    with pytest.raises(
        NumericalError, match=r"^gradient is \S*Inf\S* at epoch 1, step 3 \(loss [0-9.]+\) in head"
    ):
        fit(run)
    assert watch.steps == 4  # steps 3 and 4 ran (their updates skipped); step 5's read stopped the run
    for now, before in zip(run.model.net.parameters(), watch.weights, strict=True):
        assert torch.equal(now.detach(), before)
    assert set(watch.state) == {id(p) for p in run.optimizer.state}
    for p, state in run.optimizer.state.items():  # moments, momentum buffers and step counts untouched
        for key, value in state.items():
            assert torch.equal(value, watch.state[id(p)][key]), key


def test_an_optimizer_that_cannot_skip_on_the_device_is_checked_before_every_step(tmp_path):
    run = faulty_run(tmp_path, "optim.fused=false")
    run.finite_check_every = 5  # not used: torch's plain AdamW ignores found_inf
    watch = AfterStep(at=2)
    run.hooks = [watch]
    with pytest.raises(NumericalError, match=r"at epoch 1, step 3 "):
        fit(run)
    assert watch.steps == 2  # stopped at step 3's own check, before its update
    for now, before in zip(run.model.net.parameters(), watch.weights, strict=True):
        assert torch.equal(now.detach(), before)


def test_the_flag_is_sticky_until_read_and_names_the_first_bad_step():
    net = torch.nn.Linear(3, 2)
    guard = FiniteGuard(list(net.parameters()), net, "cpu", every=3)
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    for step in range(3):  # a clean window: read and forgotten
        guard.record(torch.tensor(1.0), step)
    assert guard.due
    guard.read(epoch=1)
    assert not guard.due and guard.found.item() == 0.0

    guard.record(torch.tensor(1.0), 3)
    net.bias.grad[1] = float("nan")
    net.weight.grad[0, 0] = float("inf")
    guard.record(torch.tensor(1.0), 4)
    assert guard.found.item() == 1.0
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    guard.record(torch.tensor(1.0), 5)
    assert guard.found.item() == 1.0  # a finite step after a bad one is still skipped
    with pytest.raises(
        NumericalError, match=r"^gradient is Inf/NaN at epoch 2, step 5 \(loss 1\) in weight, bias$"
    ):
        guard.read(epoch=1)
    assert guard.found.item() == 0.0

    guard.record(torch.tensor(float("nan")), 0)
    with pytest.raises(NumericalError, match=r"^loss is nan at epoch 3, step 1$"):
        guard.read(epoch=2)
