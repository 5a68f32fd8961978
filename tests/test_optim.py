"""Optimizers: one param group per layer group, and fastai's ``wd_bn_bias`` inside each group."""

import pytest
import torch

from harness.assemble import assemble_run
from harness.engine.loop import fit
from harness.engine.optim import build_optimizer, set_rates
from harness.errors import ConfigError

BN = ["model.batchnorm=true", "strategy=never"]


def weights_of_convs_and_linears(net):
    kinds = (torch.nn.Conv2d, torch.nn.Linear)
    return {f"{name}.weight".lstrip(".") for name, m in net.named_modules() if isinstance(m, kinds)}


def flags_by_name(run, optimizer):
    names = {id(p): n for n, p in run.model.net.named_parameters()}
    return {
        names[id(p)]: d for g in optimizer.param_groups for p, d in zip(g["params"], g["do_wd"], strict=True)
    }


@pytest.mark.parametrize("wd_bn_bias", [False, True])
def test_one_param_group_per_layer_group_with_a_decay_flag_per_param(make_cfg, wd_bn_bias):
    run = assemble_run(make_cfg([*BN, f"optim.wd_bn_bias={str(wd_bn_bias).lower()}"]))
    optimizer = build_optimizer(run.optim_cfg, run.params, [1e-3, 2e-3, 3e-3, 4e-3])
    assert [g["name"] for g in optimizer.param_groups] == run.plan.groups == ["conv1", "conv2", "fc1", "head"]
    assert [len(g["params"]) for g in optimizer.param_groups] == [len(g.all) for g in run.params]
    flags = flags_by_name(run, optimizer)
    assert len(flags) == len(list(run.model.net.parameters()))
    decayed = {n for n, d in flags.items() if d}
    if wd_bn_bias:
        assert decayed == set(flags)
    else:
        assert decayed == weights_of_convs_and_linears(run.model.net) and len(decayed) == 4
    set_rates(optimizer, [1.0, 2.0, 3.0, 4.0], 0.5, 0.9)
    assert [g["lr"] for g in optimizer.param_groups] == [0.5, 1.0, 1.5, 2.0]
    assert all(g["betas"][0] == 0.9 for g in optimizer.param_groups)


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_weight_decay_reaches_only_the_flagged_params_with_a_gradient(make_cfg, name):
    run = assemble_run(make_cfg([*BN, f"optim={name}", "optim.weight_decay=0.1"]))
    net = run.model.net
    optimizer = build_optimizer(run.optim_cfg, run.params, [0.5] * 4)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for n, p in net.named_parameters():
        # zero gradients: the update is the decay alone; conv2 has none, as if frozen
        p.grad = None if n.startswith("conv2") else torch.zeros_like(p)
    optimizer.step()
    weights = weights_of_convs_and_linears(net)
    for n, p in net.named_parameters():
        decays = n in weights
        expected = before[n] * (1 - 0.5 * 0.1) if decays and not n.startswith("conv2") else before[n]
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=0, msg=n)


@pytest.mark.parametrize("name, fused", [("adamw", True), ("adamw", False), ("sgd", True)])
def test_the_update_is_torchs_with_decay_and_no_decay_param_groups(make_cfg, name, fused):
    run = assemble_run(
        make_cfg([*BN, f"optim={name}", "optim.weight_decay=0.05", f"optim.fused={str(fused).lower()}"])
    )
    net = run.model.net
    reference_net = {n: p.detach().clone().requires_grad_() for n, p in net.named_parameters()}
    ours = build_optimizer(run.optim_cfg, run.params, [1e-2] * 4)
    flags = flags_by_name(run, ours)
    split = [
        {
            "params": [reference_net[n] for n in flags if flags[n] == decays],
            "weight_decay": 0.05 if decays else 0.0,
        }
        for decays in (True, False)
    ]
    if name == "adamw":
        reference = torch.optim.AdamW(split, lr=1e-2, betas=(0.9, 0.99), eps=1e-5, fused=fused)
    else:
        reference = torch.optim.SGD(split, lr=1e-2, momentum=0.9, fused=fused)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        for n, p in net.named_parameters():
            p.grad = torch.randn(p.shape, generator=generator)
            reference_net[n].grad = p.grad.clone()
        ours.step()
        reference.step()
    for n, p in net.named_parameters():
        torch.testing.assert_close(p.detach(), reference_net[n].detach(), rtol=1e-6, atol=1e-7, msg=n)


def test_a_trained_run_keeps_one_rate_per_layer_group(make_cfg):
    run = assemble_run(make_cfg([*BN, "epochs=1"]))
    fit(run)
    flags = flags_by_name(run, run.optimizer)
    assert {n for n, d in flags.items() if d} == weights_of_convs_and_linears(run.model.net)
    assert [list(e["lr"]) for e in run.history] == [run.plan.groups]  # the history's rate of every group


def test_wd_bn_bias_must_be_a_boolean(make_cfg):
    with pytest.raises(ConfigError, match=r"optim.wd_bn_bias='maybe' must be true or false"):
        assemble_run(make_cfg(["optim.wd_bn_bias=maybe"]))
