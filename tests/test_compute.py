"""Compute accounting (harness/engine/compute.py): the record's FLOPs are what ran, checked against
torch.utils.flop_counter.FlopCounterMode wrapped around whole runs, and against the convolution and matmul
formulas by hand."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from harness.assemble import assemble_run
from harness.engine import compute
from harness.engine.loop import fit
from harness.record import trainable_per_phase
from harness.runner import prepare
from tests.test_adaptive import FROM_A

# The tiny convnet of tests/conftest.py on 12x12 synthetic images, 10 classes, by hand (2 FLOPs per
# multiply-add): conv1 1->8 at 12x12, pool, conv2 8->8 at 6x6, pool, fc1 72->16, head 16->10.
CONV1, CONV2, FC1, HEAD = 2 * 1 * 8 * 9 * 144, 2 * 8 * 8 * 9 * 36, 2 * 72 * 16, 2 * 16 * 10
FORWARD = CONV1 + CONV2 + FC1 + HEAD


def test_per_sample_costs_are_the_formulas(make_cfg):
    run = assemble_run(make_cfg([]))
    net, shape = run.model.net, (1, 12, 12)
    cost, _ = compute.measure(net, shape, "cpu", backward=True)
    # backward: every weight gradient (as much as its forward), every input gradient but the first layer's
    assert cost == compute.Cost(FORWARD, FORWARD + CONV2 + FC1 + HEAD)
    for p in net[:2].parameters():  # conv1 and conv2 frozen: no weight gradients there, no input gradient
        p.requires_grad_(False)  # below fc1
    assert compute.measure(net, shape, "cpu", backward=True)[0] == compute.Cost(FORWARD, FC1 + HEAD + HEAD)
    head_only = compute.measure(net[3:], (16,), "cpu", backward=True)[0]
    assert head_only == compute.Cost(HEAD, HEAD)


def counted_run(make_cfg, overrides):
    """A run's record-side FLOPs and what a FlopCounterMode around its whole training counted."""
    cfg = make_cfg(list(overrides))
    run_cfg, _ = prepare(cfg)
    run = assemble_run(run_cfg)
    with FlopCounterMode(display=False) as counter:
        fit(run)
    section = compute.summary(run.history, run.compute, trainable_per_phase(run), 0.0)
    return run, section, counter.get_total_flops()


@pytest.mark.parametrize(
    "overrides",
    [
        ["strategy=never"],
        ["strategy=head_only"],  # cached prefix: the prefix's one-time cost, then the head only
        ["strategy=head_only", "prefix_cache=false"],
        ["strategy=gradual", "strategy.every=1"],  # a new view every phase
        ["strategy=bitfit"],  # backward to the first layer, weight gradients of the head only
        ["strategy=freezeout", "strategy.t0=0.3", "epochs=4"],  # freezes mid-epoch, the cache grows
        ["strategy=autofreeze", "strategy.interval=2", "strategy.percentile=90", "epochs=4"],
        ["strategy=never", "early_stopping.patience=1", "test_every_epoch=false", "epochs=4"],
        [*FROM_A, "strategy=lp_ft", "strategy.patience=1", "strategy.probe_epochs=4"],
    ],
    ids=lambda o: " ".join(x for x in o if x.startswith(("strategy=", "prefix", "early"))),
)
def test_the_record_counts_what_flop_counter_mode_counts(make_cfg, overrides):
    run, section, counted = counted_run(make_cfg, overrides)
    # everything the counter saw is in the record, apart from the meter's own two-sample measurements
    assert section["flops"] + section["meter_flops"] == counted
    assert section["meter_flops"] < 0.05 * section["flops"]  # two samples per configuration
    assert section["flops"] == sum(e["flops"] for e in section["per_epoch"]) + sum(
        section["after_last_epoch"].values()
    )
    assert section["flops"] == section["forward_flops"] + section["backward_flops"]


def test_a_cached_prefix_costs_once_and_saves_every_epoch_after(make_cfg):
    run, cached, _ = counted_run(make_cfg, ["strategy=head_only", "epochs=3"])
    _, plain, _ = counted_run(make_cfg, ["strategy=head_only", "epochs=3", "prefix_cache=false"])
    n, evaluated = len(run.data.train), len(run.data.val) + len(run.data.test)
    prefix = FORWARD - HEAD
    # uncached: every epoch the whole forward pass, and the head's weight gradient (no input gradient)
    assert plain["flops"] == 3 * (n * (FORWARD + HEAD) + evaluated * FORWARD)
    # cached: the prefix once over every part, then every epoch only the head
    assert cached["prefix_forward_flops"] == (n + evaluated) * prefix
    assert cached["flops"] == (n + evaluated) * prefix + 3 * (n * 2 * HEAD + evaluated * HEAD)
    first, *rest = cached["per_epoch"]
    assert first["prefix_forward"] == cached["prefix_forward_flops"] and all(
        e["prefix_forward"] == 0 for e in rest
    )


def test_trainable_parameters_per_phase(make_cfg):
    run, section, _ = counted_run(make_cfg, ["strategy=full_unfreeze", "strategy.epochs=1"])
    total = sum(p.numel() for p in run.model.net.parameters())
    head = sum(p.numel() for p in run.params[-1].all)
    assert section["trainable_params"] == [
        {"phase": "frozen", "index": 0, "start": head, "epochs": 1, "end": head, "of": total},
        {"phase": "unfrozen", "index": 1, "start": total, "epochs": 1, "end": total, "of": total},
    ]
    run, section, _ = counted_run(
        make_cfg, ["strategy=autofreeze", "strategy.interval=2", "strategy.percentile=90", "epochs=4"]
    )
    (row,) = section["trainable_params"]
    assert row["start"] == total and row["end"] < total


def test_the_meter_leaves_the_numbers_alone(make_cfg):
    """Measuring runs dummy passes; they must not touch gradients, running statistics or the RNG."""
    cfg = make_cfg(["model.batchnorm=true", "model.dropout=0.3"])
    run = assemble_run(cfg)
    before = {k: v.clone() for k, v in run.model.net.state_dict().items()}
    rng = torch.get_rng_state()
    compute.measure(run.model.net, (1, 12, 12), "cpu", backward=True)
    assert all(torch.equal(before[k], v) for k, v in run.model.net.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
    assert all(p.grad is None for p in run.model.net.parameters())
    assert run.model.net.training
