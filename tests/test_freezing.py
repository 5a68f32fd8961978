"""Frozen means frozen: no gradient, no weight decay, no optimizer state, bit-identical weights;
and the BatchNorm policy does exactly what its table says."""

import copy

import pytest
import torch

from harness.assemble import assemble_run
from harness.engine.loop import fit


def setup(cfg):
    return assemble_run(cfg)


def snapshot(run):
    return {k: v.clone() for k, v in run.model.net.state_dict().items()}


@pytest.mark.parametrize("optim", ["adamw", "sgd"])
def test_frozen_groups_are_bit_identical_and_have_no_optimizer_state(make_cfg, optim):
    run = setup(make_cfg([f"optim={optim}", "strategy=freeze_to", "strategy.k=2", "optim.weight_decay=0.1"]))
    before = snapshot(run)
    fit(run)
    after = snapshot(run)
    frozen, trained = ["conv1", "conv2"], ["fc1", "head"]
    for key in before:
        group = key.split(".")[0]
        if group in frozen:
            assert torch.equal(before[key], after[key]), key
        if group in trained and key.endswith("weight"):
            assert not torch.equal(before[key], after[key]), key
    for gp in run.params:
        for p in gp.all:
            has_state = bool(run.optimizer.state.get(p))
            assert has_state == (gp.name in trained), gp.name
            if gp.name in frozen:
                assert p.grad is None and not p.requires_grad


def test_unfreezing_keeps_the_state_of_params_already_training(make_cfg):
    # keep is an option of full_unfreeze (its default is fastai's reset, tested below)
    run = setup(make_cfg(["strategy=full_unfreeze", "strategy.epochs=1", "strategy.optimizer_state=keep"]))
    fit(run)  # phase 1 trains the head only, phase 2 everything
    head = run.params[-1].all[0]
    conv = run.params[0].all[0]
    assert float(run.optimizer.state[head]["step"]) == 2 * float(
        run.optimizer.state[conv]["step"]
    )  # head: both phases; conv: phase 2 only


def test_reset_rebuilds_the_optimizer_at_each_phase(make_cfg):
    run = setup(make_cfg(["strategy=full_unfreeze", "strategy.epochs=1", "strategy.optimizer_state=reset"]))
    fit(run)
    head, conv = run.params[-1].all[0], run.params[0].all[0]
    assert float(run.optimizer.state[head]["step"]) == float(run.optimizer.state[conv]["step"])


BN = ["model.batchnorm=true", "strategy=head_only", "epochs=1"]


@pytest.mark.parametrize(
    "policy, affine_moves, stats_move",
    [("train", True, True), ("frozen", False, True), ("eval", False, False)],
)
def test_batchnorm_policy(make_cfg, policy, affine_moves, stats_move):
    run = setup(make_cfg(BN + [f"strategy.bn={policy}"]))
    before = snapshot(run)
    fit(run)
    after = snapshot(run)
    bn = "conv1.1"
    assert isinstance(run.model.net.conv1[1], torch.nn.BatchNorm2d)
    affine_changed = not torch.equal(before[f"{bn}.weight"], after[f"{bn}.weight"])
    stats_changed = not torch.equal(before[f"{bn}.running_mean"], after[f"{bn}.running_mean"])
    assert affine_changed == affine_moves
    assert stats_changed == stats_move
    # conv weights of the frozen group never move, whatever the policy
    assert torch.equal(before["conv1.0.weight"], after["conv1.0.weight"])


def test_eval_policy_keeps_frozen_norm_layers_in_eval_mode(make_cfg):
    from harness.plan.freezing import set_modes

    run = setup(make_cfg(BN + ["strategy.bn=eval"]))
    set_modes(run.model, ["head"], "eval")
    assert not run.model.net.conv1[1].training and run.model.net.conv1[0].training
    set_modes(run.model, ["head"], "frozen")
    assert run.model.net.conv1[1].training


def test_frozen_params_still_frozen_after_a_deep_copy_of_the_plan(make_cfg):
    run = setup(make_cfg(["strategy=surgical", "strategy.groups=[conv2]"]))
    plan = copy.deepcopy(run.plan)
    before = snapshot(run)
    fit(run)
    after = snapshot(run)
    moved = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert moved == {"conv2"} and plan == run.plan
