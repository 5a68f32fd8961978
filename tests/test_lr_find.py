import copy
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.engine.loop import fit
from harness.errors import ConfigError
from harness.lr_find import (
    SUGGESTIONS,
    check_options,
    describe,
    exp_rate,
    figure,
    find,
    lr_find,
    plot,
    rng_state,
    set_rng_state,
    suggest_minimum,
    suggest_slide,
    suggest_steep,
    suggest_valley,
)
from harness.train import train
from tests.conftest import REPO
from tests.test_freezing import setup, snapshot


def test_exponential_sweep_endpoints():
    assert exp_rate(1e-7, 10, 0) == pytest.approx(1e-7)
    assert exp_rate(1e-7, 10, 1) == pytest.approx(10)
    assert exp_rate(1e-7, 10, 0.5) == pytest.approx(math.sqrt(1e-7 * 10))


def test_suggestions_on_a_known_curve():
    lrs = [10 ** (-6 + i * 0.1) for i in range(60)]
    # flat, then a steep fall centred at 1e-3, then blow-up
    losses = [
        2.0 - 1.5 / (1 + math.exp(-(math.log10(lr) + 3) * 4)) + (max(0, math.log10(lr) + 1.5)) ** 2
        for lr in lrs
    ]
    assert suggest_minimum(lrs, losses) == pytest.approx(lrs[losses.index(min(losses))] / 10)
    assert suggest_steep(lrs, losses) == pytest.approx(1e-3, rel=0.3)
    assert 1e-4 < suggest_valley(lrs, losses) < lrs[losses.index(min(losses))]


def test_lr_find_restores_model_and_keeps_slice_ratios(make_cfg, tmp_path):
    run = setup(
        make_cfg(
            [
                "strategy=freeze_to",
                "strategy.k=1",
                "strategy.lr={lo:1e-4,hi:1e-2}",
                "model.batchnorm=true",
                "model.dropout=0.3",
            ]
        )
    )
    before = snapshot(run)
    grads_before = [p.requires_grad for p in run.model.net.parameters()]
    rng = torch.get_rng_state()
    result = lr_find(run, batch_size=16, num_it=40)
    after = snapshot(run)
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN buffers, bit for bit
    assert [p.requires_grad for p in run.model.net.parameters()] == grads_before
    assert torch.equal(torch.get_rng_state(), rng)
    assert 3 <= len(result.lrs) <= 40 and result.lrs == sorted(result.lrs)
    phase = run.plan.phases[0]
    assert result.ratios == pytest.approx([lr / phase.lr[-1] for lr in phase.lr])
    assert result.suggestion()[-1] == pytest.approx(result.valley)
    assert result.suggestion()[0] == pytest.approx(result.valley * phase.lr[0] / phase.lr[-1])
    plot(result, tmp_path / "lr_find.png")
    assert (tmp_path / "lr_find.png").stat().st_size > 1000


# --- the sweep as fastai's: position, options, what is suggested for whom ---------------------------------


def test_the_rate_at_step_i_is_fastais_train_iter_over_num_it(make_cfg):
    run = setup(make_cfg(["strategy=never"]))
    result = lr_find(run, start_lr=1e-5, end_lr=1e-1, num_it=8, stop_div=False)
    assert result.lrs == pytest.approx([1e-5 * 1e4 ** (i / 8) for i in range(8)], rel=1e-12)
    assert result.lrs[-1] < 1e-1  # like fastai, the sweep never reaches end_lr
    two = lr_find(run, num_it=2)  # was a ZeroDivisionError
    assert len(two.lrs) == 2 and two.window == [0, 2]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"nm_it": 50}, "lr_find.nm_it is not an lr_find option; did you mean lr_find.num_it?"),
        ({"num_it": 1}, "lr_find.num_it=1 must be an integer >= 2"),
        ({"num_it": 2.5}, "lr_find.num_it=2.5 must be an integer >= 2"),
        ({"start_lr": 0}, "lr_find.start_lr=0 must be a number > 0"),
        ({"start_lr": 1.0, "end_lr": 1.0}, "lr_find.start_lr=1.0 must be below lr_find.end_lr=1.0"),
        ({"start_lr": 10, "end_lr": 1e-3}, "lr_find.start_lr=10 must be below lr_find.end_lr=0.001"),
        ({"keep_ratios": "yes"}, "lr_find.keep_ratios='yes' must be true or false"),
        ({"stop_div": 1}, "lr_find.stop_div=1 must be true or false"),
    ],
)
def test_bad_options_are_one_line(options, message):
    with pytest.raises(ConfigError) as caught:
        check_options(options)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_suggestions_only_for_the_groups_that_train(make_cfg, tmp_path):
    result = find(make_cfg(["strategy=head_only", "lr_find.num_it=30"]), tmp_path)
    assert result.trainable == ["head"] and result.reference == "head"
    assert all(list(result.suggested(name)) == ["head"] for name in SUGGESTIONS)
    stored = json.loads((tmp_path / "lr_find.json").read_text())
    assert {name: list(rates) for name, rates in stored["suggestions"].items()} == {
        n: ["head"] for n in SUGGESTIONS
    }
    assert stored["suggestions"]["slide"]["head"] == pytest.approx(result.slide)
    text = describe(result)
    assert "head=" in text and "conv1" not in text.split("suggested", 1)[1]
    legend = [t.get_text() for t in figure(result).axes[0].get_legend().get_texts()]
    assert [label.split(":")[0] for label in legend[2:]] == ["valley", "slide", "minimum/10", "steep"]


def test_keep_ratios_false_is_the_flat_sweep(make_cfg):
    run = setup(make_cfg(["strategy=freeze_to", "strategy.k=1", "strategy.lr={lo:1e-4,hi:1e-2}"]))
    kept = lr_find(run, num_it=20)
    flat = lr_find(run, num_it=20, keep_ratios=False)
    assert kept.reference == "head" and kept.ratios[0] == pytest.approx(1e-2)
    assert flat.reference is None and flat.ratios == [1.0] * 4
    assert flat.suggested("valley") == {g: flat.valley for g in ["conv2", "fc1", "head"]}
    assert kept.losses != flat.losses  # the groups below the head swept 1/100 .. 1/10 of the head's rate


def test_lr_find_leaves_the_run_as_it_was(make_cfg):
    run = setup(
        make_cfg(["strategy=full_unfreeze", "strategy.epochs=1", "model.batchnorm=true", "model.dropout=0.3"])
    )
    fit(run)  # a trained run: the sweep must not touch its optimizer's state
    net = run.model.net
    net.eval()
    net.fc1.train()  # a mix of modes
    for p in net.head.parameters():
        p.grad = torch.full_like(p, 0.5)
    optimizer_state = copy.deepcopy(run.optimizer.state_dict())
    weights = snapshot(run)
    flags = [p.requires_grad for p in net.parameters()]
    modes = [m.training for m in net.modules()]
    grads = [p.grad for p in net.parameters()]
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    rng = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())

    result = lr_find(run, num_it=25)  # phase 1 trains the head, with dropout on: draws random numbers

    assert result.trainable == ["head"] and len(result.lrs) > 5
    assert all(torch.equal(weights[k], v) for k, v in snapshot(run).items())
    assert [p.requires_grad for p in net.parameters()] == flags
    assert [m.training for m in net.modules()] == modes
    assert all(a is b for a, b in zip((p.grad for p in net.parameters()), grads, strict=True))
    assert random.getstate() == rng[0] and (np.random.get_state()[1] == rng[1]).all()
    assert torch.equal(torch.get_rng_state(), rng[2])
    after = run.optimizer.state_dict()
    assert after["param_groups"] == optimizer_state["param_groups"]
    assert all(
        torch.equal(after["state"][i][k], optimizer_state["state"][i][k])
        for i in after["state"]
        for k in after["state"][i]
    )


def test_the_cuda_generators_are_restored_too(monkeypatch):
    # No GPU here: a stand-in for torch.cuda's generator functions checks that the state goes back.
    states = {"now": [torch.tensor([1], dtype=torch.uint8)]}
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: list(states["now"]))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: states.update(now=list(s)))
    saved = rng_state()
    states["now"] = [torch.tensor([9], dtype=torch.uint8)]  # the sweep drew CUDA random numbers
    set_rng_state(saved)
    assert torch.equal(states["now"][0], torch.tensor([1], dtype=torch.uint8))


def test_slide_on_a_short_sweep_uses_a_shorter_interval():
    lrs = [10 ** (-5 + i * 0.25) for i in range(8)]
    losses = [2.0, 1.9, 1.7, 1.4, 1.0, 0.8, 0.9, 1.5]
    # fastai raises an IndexError below 16 points; here the interval spans all 8, and as the gradients at its
    # ends differ by more than the threshold it moves left off the curve: the suggestion is its first rate.
    assert suggest_slide(lrs, losses) == lrs[0]
    assert suggest_slide(lrs, losses, lr_diff=2, thresh=0.2) == lrs[3]  # stops where they agree within 0.2


@pytest.mark.slow
def test_lr_find_sweeps_the_init_from_weights(make_cfg, tmp_path):
    # `python -m harness.lr_find init.from=<checkpoint> strategy=head_only`: the pretrained body's curve.
    base = train(make_cfg(["epochs=2"]), tmp_path / "base")
    assert base["status"] == "ok" and Path(base["checkpoint"]).is_file()
    common = [*CLI_TINY, "strategy=head_only", "lr_find.num_it=40"]
    curves = {}
    for name, extra in {"pretrained": [f"init.from={base['checkpoint']}"], "random": []}.items():
        done = lr_find_cli(*common, *extra, f"hydra.run.dir={tmp_path / name}", root=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "head=" in done.stdout and "conv1=" not in done.stdout
        curves[name] = json.loads((tmp_path / name / "lr_find.json").read_text())
    assert curves["pretrained"]["losses"] != pytest.approx(curves["random"]["losses"], rel=1e-3)
    # the trained body's features make the head learn faster: a lower smoothed loss at the same rate
    assert min(curves["pretrained"]["losses"]) < min(curves["random"]["losses"])


@pytest.mark.slow
def test_a_transfer_treatment_sweeps_its_own_network(make_cfg, tmp_path):
    cfg = make_cfg(
        ["transfer=yosinski", "split=random_half", "transfer.treatment=AnB", "transfer.n=2", "epochs=1"]
    )
    result = find(cfg, tmp_path / "sweep")
    assert result.trainable == ["fc1", "head"]  # AnB with n=2: conv1, conv2 copied from baseA and frozen
    assert list(Path(cfg.transfer.cache_dir).rglob("*.pt"))  # its base was trained (or fetched) first


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["+lr_find.nm_it=5"], "did you mean num_it?"),
        (["lr_find.start_lr=1", "lr_find.end_lr=0.1"], "lr_find.start_lr=1 must be below lr_find.end_lr=0.1"),
        # checked before a transfer treatment's bases would train
        (
            ["transfer=yosinski", "split=random_half", "lr_find.num_it=1"],
            "lr_find.num_it=1 must be an integer >= 2",
        ),
    ],
)
def test_bad_lr_find_input_is_one_line_and_exit_2(tmp_path, overrides, expected):
    done = lr_find_cli(*CLI_TINY, *overrides, root=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("lr_find.json"))  # nothing trained


CLI_TINY = ["data=synthetic", "model.channels=[8,8]", "model.hidden=[16]", "threads=1", "progress=false"]


def lr_find_cli(*args, root):
    cmd = [sys.executable, "-m", "harness.lr_find", *args, f"paths.output_root={root}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO)
