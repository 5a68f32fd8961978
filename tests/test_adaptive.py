"""The adaptive and partial strategies while they train (harness/engine/adaptive.py and the loop's calls): what
each rule decides, that frozen means frozen, and that a resumed run decides and ends exactly as an
uninterrupted one."""

import math

import pytest
import torch

from harness.assemble import assemble_run
from harness.engine import checkpoint
from harness.engine.hooks import Hook
from harness.engine.loop import fit
from harness.store import RunStore
from harness.train import train
from tests.test_train import Interrupt

# A pretrained start for the strategies that need one: the cached base of half A (2 tiny epochs), on half B.
FROM_A = ["split=random_half", "half=B", "init.base=A"]  # the base settings of conf/transfer/yosinski.yaml


def trained(make_cfg, tmp_path, overrides, name="run"):
    return train(make_cfg(list(overrides)), tmp_path / name)


def state(net) -> dict:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


class Snapshots(Hook):
    """The weights whenever a rule freezes groups mid-phase, and at each phase start."""

    def __init__(self):
        self.at_change, self.at_phase = [], {}

    def on_trainable_change(self, run):
        self.at_change.append((list(run.trainable), state(run.model.net)))

    def on_phase_start(self, run, index):
        self.at_phase[index] = state(run.model.net)


def assembled(make_cfg, overrides, hooks=()):
    run = assemble_run(make_cfg(list(overrides)))
    run.hooks = list(hooks)
    return run


def group_keys(run, name):
    group = run.model.groups[run.model.index(name)]
    return [k for k in run.model.net.state_dict() if group.owns(k)]


def test_llrd_rates_fall_by_gamma_per_group(make_cfg, tmp_path):
    result = trained(make_cfg, tmp_path, ["strategy=llrd", "strategy.gamma=0.5", "lr=1e-2"])
    names = [g["name"] for g in result["groups"]]
    for entry in result["history"]:
        rates = [entry["lr_max"][g] for g in names]
        assert all(r / rates[-1] == pytest.approx(0.5 ** (len(names) - 1 - i)) for i, r in enumerate(rates))
    assert result["adaptive"] is None and result["warnings"] == []


def test_bitfit_moves_only_biases_and_the_head(make_cfg):
    run = assembled(make_cfg, ["strategy=bitfit", "lr=1e-2"])
    start = state(run.model.net)
    fit(run)
    end = state(run.model.net)
    head = set(group_keys(run, "head"))
    for key in start:
        if key in head or key.endswith(".bias"):
            assert not torch.equal(start[key], end[key]), key
        else:
            assert torch.equal(start[key], end[key]), key  # conv and fc weights: bit-identical
    assert all(h["cached_groups"] == 0 for h in run.history)  # trained biases: nothing static to cache


def test_bitfit_is_no_diagnostics_leak(make_cfg, tmp_path):
    result = trained(make_cfg, tmp_path, ["strategy=bitfit", "lr=1e-2"])
    assert result["warnings"] == []
    assert [r["trainable"] for r in result["summary"][0]] == ["bias", "bias", "bias", "yes"]
    frozen_rate = result["summary"][0][0]["lr"]
    assert frozen_rate > 0  # the biases of a frozen group train at its rate


def test_freezeout_freezes_each_group_at_its_end_time_and_caches_it(make_cfg):
    snaps = Snapshots()
    run = assembled(make_cfg, ["strategy=freezeout", "strategy.t0=0.3", "epochs=4", "lr=1e-2"], [snaps])
    fit(run)
    steps = math.ceil(len(run.data.train) / run.batch_size)
    total = 4 * steps
    ends = run.plan.phases[0].schedule["ends"]
    froze = {g: d["step"] for d in run.adaptive.decisions for g in d["froze"]}
    names = run.plan.groups
    for name, end in zip(names[:-1], ends, strict=False):
        # the first step whose progress reaches t_i takes no update: the group trained ceil(t_i * S) steps
        assert froze[name] == math.ceil(end * total), (name, end)
    assert "head" not in froze
    # frozen means frozen: from its freeze on, a group's weights never move again
    end_state = state(run.model.net)
    for trainable, snap in snaps.at_change:
        for name in names:
            if name not in trainable:
                assert all(torch.equal(snap[k], end_state[k]) for k in group_keys(run, name)), name
    # from the epoch after a freeze on, the frozen prefix runs from the cache
    for before, entry in zip(run.history, run.history[1:], strict=False):
        assert entry["cached_groups"] == len(before["adaptive"]["frozen"])
    assert run.history[-1]["cached_groups"] == 2 and run.history[-1]["adaptive"]["frozen"] == names[:3]
    assert [h["trained_steps"]["head"] for h in run.history] == [steps] * 4
    # each group's rate is its own cosine: conv1's peak in the last epoch is 0, the head's is not
    assert run.history[-1]["lr_max"][names[0]] == 0.0 and run.history[-1]["lr_max"]["head"] > 0


def test_autofreeze_freezes_prefixes_the_rule_chose_and_runs_them_from_the_cache(make_cfg, tmp_path):
    over = ["strategy=autofreeze", "strategy.interval=2", "strategy.percentile=90", "epochs=4", "lr=1e-2"]
    result = trained(make_cfg, tmp_path, over)
    decisions = result["adaptive"]["decisions"]
    names = [g["name"] for g in result["groups"]]
    assert decisions, "the rule never froze anything"
    frozen = 0
    for d in decisions:
        # the decision is the rule applied to what it measured: a prefix strictly below the threshold,
        # stopped by the first group at or above it (or by the head)
        assert d["froze"] == names[frozen : frozen + len(d["froze"])]
        assert all(d["eta"][g] < d["threshold"] for g in d["froze"])
        frozen += len(d["froze"])
        nxt = names[frozen]
        assert nxt == "head" or d["eta"][nxt] is None or d["eta"][nxt] >= d["threshold"]
        assert d["step"] % 2 == 0  # at interval ends only
    assert frozen < len(names)  # never the head
    assert result["warnings"] == []  # the diagnostics saw no frozen group move
    last = result["history"][-1]
    assert last["cached_groups"] == len(last["adaptive"]["frozen"]) > 0  # the speed-up: the prefix cache
    assert result["adaptive"]["froze_at"][names[0]]["step"] == decisions[0]["step"]


class RgnCheck(Hook):
    """At every step, after the rule: each group's rate over its scheduled rate is its RGN over the largest."""

    def __init__(self):
        self.errors = []

    def on_run_start(self, run):
        self.peak = run.plan.phases[0].lr

    def after_backward(self, run):
        rgn = []
        for gp in run.params:
            g = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in gp.all))
            w = math.sqrt(sum(float(p.detach().pow(2).sum()) for p in gp.all))
            rgn.append(g / w)
        ratio = [pg["lr"] / lr for pg, lr in zip(run.optimizer.param_groups, self.peak, strict=True)]
        top = max(ratio)  # the group with the largest RGN gets the scheduled rate itself
        self.errors += [abs(r / top - x / max(rgn)) for r, x in zip(ratio, rgn, strict=True)]


def test_auto_rgn_scales_each_rate_by_its_relative_gradient_norm(make_cfg):
    check = RgnCheck()
    run = assembled(make_cfg, ["strategy=auto_rgn", "schedule=constant"], [check])
    fit(run)
    assert check.errors and max(check.errors) < 1e-5
    scales = run.history[0]["adaptive"]["rgn_scale"]
    assert max(scales.values()) <= 1 and min(scales.values()) > 0


def test_l2sp_adds_the_gradient_of_its_penalty_and_no_weight_decay(make_cfg, tmp_path):
    cfg = make_cfg([*FROM_A, "strategy=l2sp", "strategy.alpha=0.3", "strategy.beta=0.05"])
    from harness.runner import prepare

    run_cfg, _ = prepare(cfg)
    run = assemble_run(run_cfg)
    assert run.optim_cfg["weight_decay"] == 0.0 and run.adaptive.transferred == run.plan.groups[:-1]
    anchor = [w.clone() for w in run.adaptive.anchor]
    with torch.no_grad():  # move away from the start, so that the alpha term is not zero
        for p in run.model.net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x, y = run.data.train.x[:8], run.data.train.y[:8]
    net = run.model.net

    def penalised():
        loss = torch.nn.functional.cross_entropy(net(x), y)
        for p, w0 in zip(run.adaptive.anchored, anchor, strict=True):
            loss = loss + 0.3 / 2 * (p - w0).pow(2).sum()
        for p in run.adaptive.free:
            loss = loss + 0.05 / 2 * p.pow(2).sum()
        return loss

    expected = torch.autograd.grad(penalised(), list(net.parameters()))
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    run.adaptive.after_backward(run)
    for p, e in zip(net.parameters(), expected, strict=True):
        assert torch.allclose(p.grad, e, atol=1e-6)


def test_lp_ft_ends_its_probe_on_a_plateau_and_fine_tunes_from_the_best_probe(make_cfg):
    cfg = make_cfg(
        [*FROM_A, "strategy=lp_ft", "strategy.patience=1", "strategy.probe_epochs=8", "strategy.epochs=2"]
    )
    from harness.runner import prepare

    snaps = Snapshots()
    run = assemble_run(prepare(cfg)[0])
    run.hooks = [snaps]
    fit(run)
    (decision,) = run.adaptive.decisions
    probe_epochs = run.adaptive.lengths[0]
    assert decision["epoch"] == probe_epochs and decision["why"] in ("patience", "cap")
    assert [h["phase"] for h in run.history] == ["probe"] * probe_epochs + ["finetune"] * 2
    probe = run.history[:probe_epochs]
    best = max(probe, key=lambda h: (h["val_acc"], h["epoch"]))
    assert decision["kept_epoch"] == best["epoch"] and decision["kept_val_acc"] == best["val_acc"]
    # fine-tuning started from the kept probe: the weights at its phase start are the kept epoch's
    kept = run.adaptive.stop.weights
    assert all(torch.equal(snaps.at_phase[1][k], kept[k]) for k in kept)


@pytest.mark.parametrize(
    "strategy, extra",
    [
        # intervals of 4 steps straddle the epochs (9 steps each): the checkpoint holds a half-summed interval
        ("autofreeze", ["strategy.interval=4", "strategy.percentile=30"]),
        ("freezeout", ["strategy.t0=0.2"]),
        ("auto_rgn", ["strategy.interval=2"]),
        ("lp_ft", [*FROM_A, "strategy.patience=1", "strategy.probe_epochs=3"]),
        ("l2sp", FROM_A),
    ],
)
def test_a_resumed_run_decides_and_ends_as_the_uninterrupted_one(
    make_cfg, tmp_path, monkeypatch, strategy, extra
):
    over = [f"strategy={strategy}", "epochs=5", "lr=1e-2", *extra]
    straight = trained(make_cfg, tmp_path / "straight", over + ["resume=false"])

    import harness.runner as runner_module

    original = runner_module.build_hooks
    monkeypatch.setattr(runner_module, "build_hooks", lambda *a: original(*a) + [Interrupt(3)])
    with pytest.raises(KeyboardInterrupt):
        trained(make_cfg, tmp_path / "broken", over + ["resume=false"])
    monkeypatch.setattr(runner_module, "build_hooks", original)
    cfg = make_cfg(over)
    assert checkpoint.load(RunStore(cfg.checkpoint.dir, straight["run_id"]).checkpoint)["epochs_done"] == 3
    resumed = train(cfg, tmp_path / "resumed")

    assert any("resumed from" in w for w in resumed["warnings"])
    if strategy in ("autofreeze", "freezeout"):  # the rule decides after the resume, too
        assert any(d["epoch"] > 3 for d in straight["adaptive"]["decisions"])
    assert resumed["adaptive"]["decisions"] == straight["adaptive"]["decisions"]
    assert [h.get("adaptive") for h in resumed["history"]] == [h.get("adaptive") for h in straight["history"]]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
    assert [h["trainable"] for h in resumed["history"]] == [h["trainable"] for h in straight["history"]]
    assert resumed["metrics"] == straight["metrics"]


@pytest.mark.slow
def test_an_autofreeze_run_killed_mid_way_resumes_to_the_same_decisions(tmp_path):
    """The acceptance check with real processes: SIGKILL after a checkpoint, the same command again."""
    import json
    import subprocess
    import sys

    from search_helpers import REPO, env

    from tests.test_kill_rerun import kill_when_mid_run, start

    common = [
        "data=synthetic",
        "data.per_class=150",
        "batch_size=16",
        "threads=1",
        "progress=false",
        "model.channels=[8,16]",
        "model.hidden=[32]",
        "strategy=autofreeze",
        "strategy.interval=12",
        "strategy.percentile=30",
        "epochs=6",
        "lr=1e-2",
    ]

    def cmd(root, *extra):
        return [sys.executable, "-m", "harness.train", f"paths.output_root={root}", *common, *extra]

    straight = subprocess.run(
        cmd(tmp_path / "a", "hydra.run.dir=" + str(tmp_path / "straight")),
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert straight.returncode == 0, straight.stderr[-3000:]
    first = start(cmd(tmp_path / "b", "hydra.run.dir=" + str(tmp_path / "killed")), tmp_path / "first.log")
    done = kill_when_mid_run(
        first, tmp_path / "killed", tmp_path / "b" / "checkpoints", tmp_path / "first.log"
    )
    assert 1 <= done < 6
    again = subprocess.run(
        cmd(tmp_path / "b", "hydra.run.dir=" + str(tmp_path / "resumed")),
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"after epoch {done}/6" in again.stdout

    a = json.loads((tmp_path / "straight" / "result.json").read_text())
    b = json.loads((tmp_path / "resumed" / "result.json").read_text())
    assert a["adaptive"]["decisions"], "the rule never decided: the check would be empty"
    assert any(d["epoch"] > done for d in a["adaptive"]["decisions"])  # it decides after the kill, too
    assert b["adaptive"]["decisions"] == a["adaptive"]["decisions"]
    assert [h["train_loss"] for h in b["history"]] == [h["train_loss"] for h in a["history"]]
    assert b["metrics"] == a["metrics"]
