"""Weight diagnostics: exact zeros for frozen groups, the freeze-invariant warnings, no effect on the numbers,
and the figures drawn from the record."""

import json

import pandas as pd
import pytest
import torch

import harness.diagnostics.weights as diagnostics
import harness.engine.loop as loop
import harness.runner as runner_module
from harness.diagnostics.weights import COLUMNS, WeightDiagnostics
from harness.engine.hooks import Hook
from harness.engine.optim import build_optimizer
from harness.train import train


def run(make_cfg, tmp_path, overrides, name="run"):
    return train(make_cfg(list(overrides)), tmp_path / name)


def table(result) -> pd.DataFrame:
    d = result["diagnostics"]
    return pd.DataFrame(d["data"], columns=d["columns"])


def test_the_table_has_one_row_per_epoch_and_group_and_is_valid_json(make_cfg, tmp_path):
    result = run(make_cfg, tmp_path, ["strategy=full_unfreeze", "strategy.epochs=2"])
    on_disk = json.loads((tmp_path / "run" / "result.json").read_text())
    assert on_disk["diagnostics"] == json.loads(json.dumps(result["diagnostics"]))
    frame = table(on_disk)
    groups = [g["name"] for g in result["groups"]]
    assert list(frame.columns) == COLUMNS and len(frame) == 3 * len(groups)
    assert frame.groupby("epoch")["group"].apply(list).tolist() == [groups] * 3
    assert frame["phase"].tolist() == ["frozen"] * 4 + ["unfrozen"] * 8
    # no BatchNorm in this net: the norm columns are null, not zero
    assert frame["norm_change"].isna().all() and frame["stats_drift"].isna().all()
    assert on_disk["diagnostics"]["start_epoch"] == 0 and on_disk["warnings"] == []


@pytest.mark.parametrize("optim", ["adamw", "sgd"])
def test_frozen_groups_read_exactly_zero(make_cfg, tmp_path, optim):
    result = run(
        make_cfg, tmp_path, [f"optim={optim}", "optim.weight_decay=0.1", "strategy=freeze_to", "strategy.k=2"]
    )
    frame = table(result)
    frozen = frame[frame["group"].isin(["conv1", "conv2"])]
    trained = frame[frame["group"].isin(["fc1", "head"])]
    assert not frozen["trainable"].any() and trained["trainable"].all()
    for column in ("change_start", "change_phase", "grad_norm", "update_ratio", "lr"):
        assert (frozen[column] == 0.0).all(), column  # bit-exact: == 0.0, not approx
        assert (trained[column] > 0).all(), column
    assert result["warnings"] == [] and result["status"] == "ok"


def test_full_unfreeze_zero_in_the_head_phase_then_moving(make_cfg, tmp_path):
    frame = table(run(make_cfg, tmp_path, ["strategy=full_unfreeze", "strategy.epochs=2"]))
    body = frame[frame["group"] != "head"]
    assert (body.loc[body["phase_index"] == 0, "change_start"] == 0.0).all()
    assert (body.loc[body["phase_index"] == 1, "change_start"] > 0).all()
    assert (body.loc[body["phase_index"] == 1, "change_phase"] > 0).all()
    # the head's change since the phase start restarts at the unfreeze
    head = frame[frame["group"] == "head"].set_index("epoch")
    assert head.loc[2, "change_phase"] < head.loc[2, "change_start"]


@pytest.mark.parametrize("policy", ["train", "frozen", "eval"])
def test_batchnorm_policy_in_the_frozen_phase(make_cfg, tmp_path, policy):
    result = run(
        make_cfg,
        tmp_path,
        ["model.batchnorm=true", "strategy=full_unfreeze", "strategy.epochs=1", f"strategy.bn={policy}"],
    )
    frame = table(result)
    frozen = frame[(frame["phase_index"] == 0) & (frame["group"] != "head")]
    assert frozen["norm_change"].notna().all()
    if policy == "train":  # fastai's train_bn: the affine params move, so the group does (and only by them)
        assert (frozen["norm_change"] > 0).all() and (frozen["change_start"] > 0).all()
    else:
        assert (frozen["norm_change"] == 0.0).all() and (frozen["change_start"] == 0.0).all()
    assert ((frozen["stats_drift"] == 0.0) == (policy == "eval")).all()
    assert result["warnings"] == []  # every one of these is what the policy says: no leak, nothing stuck


class LeakyAdamW(torch.optim.AdamW):
    """Decays every parameter it holds, gradient or not: the classic frozen-weights-still-decay leak."""

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.mul_(1 - 0.5 * group["lr"])
        return super().step(closure)


def test_the_leak_warning_fires_on_a_leaking_optimizer(make_cfg, tmp_path, monkeypatch):
    def leaky(optim_cfg, params, rates):
        honest = build_optimizer(optim_cfg, params, rates)
        return LeakyAdamW(honest.param_groups)

    monkeypatch.setattr(loop, "build_optimizer", leaky)
    result = run(make_cfg, tmp_path, ["strategy=head_only", "epochs=2"])
    assert result["status"] == "ok"
    leaks = [w for w in result["warnings"] if "frozen" in w and "moved" in w]
    assert len(leaks) == 3, result["warnings"]  # conv1, conv2, fc1: one line each for the whole phase
    assert "group 'conv1'" in leaks[0] and "phase 1 'head' (epochs 1-2)" in leaks[0] and "leak" in leaks[0]
    problems = result["diagnostics"]["problems"]
    assert {p["group"] for p in problems} == {"conv1", "conv2", "fc1"}
    assert all(
        p["kind"] == "frozen_moved" and p["epochs"] == [1, 2] and p["max_change"] > 0 for p in problems
    )
    # the table shows the same movement the warning reports
    frozen = table(result).query("group != 'head'")
    assert (frozen["change_phase"] > 0).all()


def test_a_group_left_out_of_the_optimizer_is_reported_stuck(make_cfg, tmp_path, monkeypatch):
    # The bug users report after resuming: the group is unfrozen but its params never reach the optimizer.
    def forgetful(optim_cfg, params, rates):
        optimizer = build_optimizer(optim_cfg, params, rates)
        optimizer.param_groups[1]["params"] = []  # conv2
        return optimizer

    monkeypatch.setattr(loop, "build_optimizer", forgetful)
    result = run(make_cfg, tmp_path, ["strategy=never", "epochs=1"])
    assert result["status"] == "ok"
    (line,) = result["warnings"]
    assert "group 'conv2' should train in phase 1 'all' (epoch 1) but did not move" in line
    row = table(result).query("group == 'conv2'").iloc[0]
    assert row["trainable"] and row["change_start"] == 0.0 and row["grad_norm"] > 0


def test_diagnostics_do_not_change_the_numbers(make_cfg, tmp_path):
    common = [
        "strategy=full_unfreeze",
        "strategy.epochs=1",
        "model.batchnorm=true",
        "model.dropout=0.3",
        "resume=false",
    ]  # the same identity twice: train both, reuse neither
    off = run(make_cfg, tmp_path, common + ["diagnostics.weights=false", "diagnostics.cka=false"], "off")
    on = run(make_cfg, tmp_path, common + ["diagnostics.weights=true", "diagnostics.cka=true"], "on")

    def numbers(result):
        return [
            {k: v for k, v in h.items() if k not in ("seconds", "samples_per_s")} for h in result["history"]
        ]

    assert "diagnostics" in on and "cka" in on and "diagnostics" not in off and "cka" not in off
    assert numbers(on) == numbers(off) and on["metrics"] == off["metrics"]
    assert on["run_id"] == off["run_id"]  # diagnostics are not part of a run's identity


class Reference(Hook):
    """The per-step gradient and update norms of every group, computed the plain way, a tensor at a time."""

    def on_run_start(self, run):
        self.grad, self.update, self.weight = {}, {}, {}

    def after_backward(self, run):
        self.before = {p: p.detach().clone() for gp in run.params for p in gp.all}
        for gp in run.params:
            sq = sum(
                float(p.grad.double().norm() ** 2) for p in gp.all if p.grad is not None and p.requires_grad
            )
            self.grad.setdefault((run.epochs_done + 1, gp.name), []).append(sq)

    def on_batch_end(self, run, step, steps, loss):
        for gp in run.params:
            sq = sum(
                float((p.detach() - self.before[p]).double().norm() ** 2) for p in gp.all if p.requires_grad
            )
            self.update.setdefault((run.epochs_done + 1, gp.name), []).append(sq)

    def on_epoch_end(self, run, entry):
        for gp in run.params:
            sq = sum(float(p.detach().double().norm() ** 2) for p in gp.all if p.requires_grad)
            self.weight[entry["epoch"], gp.name] = sq


@pytest.mark.parametrize("flush_steps", [3, 10_000])  # mid-epoch flushes, and only at the epoch's end
def test_gradient_norms_and_update_ratios_match_a_plain_computation(
    make_cfg, tmp_path, monkeypatch, flush_steps
):
    monkeypatch.setattr(diagnostics, "FLUSH_STEPS", flush_steps)
    reference = Reference()
    real_build_hooks = runner_module.build_hooks
    monkeypatch.setattr(runner_module, "build_hooks", lambda *a: real_build_hooks(*a) + [reference])
    result = run(make_cfg, tmp_path, ["strategy=full_unfreeze", "strategy.epochs=2", "model.batchnorm=true"])
    frame = table(result)
    weights = {gp["name"]: gp["params"] for gp in result["groups"]}
    assert len(frame) == 3 * len(weights) and len(reference.grad[1, "head"]) > 3
    for row in frame.itertuples():
        grads, updates = reference.grad[row.epoch, row.group], reference.update[row.epoch, row.group]
        assert row.grad_norm == pytest.approx((sum(grads) / len(grads)) ** 0.5, rel=1e-5)
        update = sum(updates) / len(updates)
        expected = (update / reference.weight[row.epoch, row.group]) ** 0.5 if update else 0.0
        assert row.update_ratio == pytest.approx(expected, rel=1e-5)
    assert (frame["update_ratio"] > 0).all()  # bn=train: the BN params of the frozen groups move too


def test_hook_handles_a_resume_entering_its_phase_before_the_run_starts():
    hook = WeightDiagnostics()
    hook.on_phase_start(run=None, phase_index=0)  # resume_from() enters the phase before fit() starts the run
    record = {"warnings": []}
    hook.on_run_end(run=None, record=record)  # a run that never started adds nothing
    assert record == {"warnings": []}


# --- figures (analysis/diagnostics.py) ---------------------------------------------------------------


def test_figures_from_a_record(make_cfg, tmp_path):
    from analysis.diagnostics import diagnostics_frame, phase_map, weight_change_heatmap, write_run_figures

    result = run(make_cfg, tmp_path, ["model.batchnorm=true", "strategy=full_unfreeze", "strategy.epochs=2"])
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert diagnostics_frame(record).equals(table(result))
    paths = write_run_figures(record, tmp_path / "figures")
    for kind in ("phase_map", "weight_change"):
        for fmt in ("png", "pdf"):
            assert paths[kind][fmt].stat().st_size > 1000
    texts = [t.get_text() for t in weight_change_heatmap(record).axes[0].texts]
    assert sum(t.endswith("BN") for t in texts) == 3  # frozen conv1, conv2, fc1 in epoch 1: only BN moved
    labels = [t.get_text() for t in phase_map(record).axes[0].texts]
    assert labels.count("BN only\n2.0e-4") == 3
    with pytest.raises(ValueError, match="diagnostics"):
        weight_change_heatmap({**record, "diagnostics": None})


def test_cka_frame_and_figure_from_plain_records():
    from analysis.diagnostics import cka_figure, cka_frame

    groups = [{"name": g} for g in ("conv1", "conv2", "head")]

    def record(treatment, n, values):
        transfer = {"treatment": treatment, "n": n, "split_seed": 0} if treatment else None
        return {
            "status": "ok",
            "groups": groups,
            "transfer": transfer,
            "config": {"seed": 0, "half": "B", "init": {"from": None}, "transfer": {"treatment": None}},
            "cka": dict(zip(("conv1", "conv2", "head"), values, strict=True)),
            "cka_vs_baseB": {"conv1": 0.9},
        }

    records = [
        record(None, None, (0.5, 0.4, 0.1)),
        record("AnB+", 1, (0.9, 0.3, 0.2)),
        record("BnB+", 1, (0.99, 0.5, None)),
        record("AnB+", 2, (0.8, 0.7, 0.1)),
    ]
    frame = cka_frame(records)
    assert set(frame["treatment"]) == {"baseB", "AnB+", "BnB+"}
    assert len(frame[frame["against"] == "start"]) == 12 and frame["cka"].isna().sum() == 1
    assert frame.query("treatment == 'baseB'")["n"].isna().all()
    fig = cka_figure(records)
    assert len(fig.axes) == 2  # one panel per n
    assert {line.get_label() for line in fig.axes[0].lines} >= {"baseB", "AnB+", "BnB+"}
    with pytest.raises(ValueError, match="no CKA"):
        cka_figure(records, against="base")
