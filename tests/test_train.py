"""One run end to end, composed from the real config tree and shrunk to tiny data."""

import json

import pytest
import torch

from harness.engine import checkpoint
from harness.engine.hooks import Hook
from harness.record import RECORD_NAME, RECORD_VERSION
from harness.store import RunStore
from harness.train import train
from tests.conftest import compose_config


def run(make_cfg, tmp_path, overrides=(), name="run"):
    cfg = make_cfg(list(overrides))
    return train(cfg, tmp_path / name), cfg


def test_record_schema(make_cfg, tmp_path):
    result, cfg = run(make_cfg, tmp_path, ["strategy=full_unfreeze", "strategy.epochs=2"])
    on_disk = json.loads((tmp_path / "run" / RECORD_NAME).read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert on_disk["version"] == RECORD_VERSION and on_disk["status"] == "ok" and on_disk["reason"] is None
    for key in ("val_acc", "test_acc", "val_loss", "test_loss", "best_val_acc", "test_acc_best_val_k"):
        assert 0 <= on_disk["metrics"][key] < 10, key
    names = [g["name"] for g in on_disk["groups"]]
    assert names[-1] == "head" and all(g["params"] > 0 for g in on_disk["groups"])
    assert [h["epoch"] for h in on_disk["history"]] == [1, 2, 3]
    assert [h["phase"] for h in on_disk["history"]] == ["frozen", "unfrozen", "unfrozen"]
    for entry in on_disk["history"]:
        assert set(entry["lr"]) == set(names) and entry["seconds"] > 0
    # The frozen phase gives frozen groups lr 0; the unfrozen phase gives every group a positive rate.
    assert all(v == 0 for g, v in on_disk["history"][0]["lr"].items() if g != "head")
    assert all(v > 0 for v in on_disk["history"][1]["lr_max"].values())
    assert on_disk["config"]["strategy"]["name"] == "full_unfreeze"
    assert on_disk["plan"]["phases"][1]["trainable"] == names
    assert len(on_disk["summary"]) == 2 and on_disk["summary"][0][-1]["trainable"] == "yes"
    assert on_disk["timing"]["seconds"] > 0 and on_disk["timing"]["samples_per_s"] > 0
    assert on_disk["harness"]["version"]
    assert len(on_disk["run_id"]) == 16


def test_learns_the_synthetic_data(make_cfg, tmp_path):
    result, _ = run(make_cfg, tmp_path, ["epochs=6", "lr=1e-2", "batch_size=16"])
    assert result["metrics"]["test_acc"] > 0.5  # 10 classes: chance is 0.1


def test_same_seed_same_numbers(make_cfg, tmp_path):
    a, _ = run(make_cfg, tmp_path, ["seed=3", "resume=false"], "a")
    b, _ = run(make_cfg, tmp_path, ["seed=3", "resume=false"], "b")  # trained again, not reused
    assert "reused" not in b
    c, _ = run(make_cfg, tmp_path, ["seed=4"], "c")
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert a["metrics"] == b["metrics"]
    assert a["run_id"] == b["run_id"] != c["run_id"]
    assert [h["train_loss"] for h in a["history"]] != [h["train_loss"] for h in c["history"]]


def test_the_record_says_which_nondeterministic_settings_were_on(make_cfg, tmp_path):
    a, _ = run(make_cfg, tmp_path, [], "a")
    env = a["environment"]
    assert env["nondeterministic"] == [] and env["device"] == "cpu"  # CPU: same seed, same numbers
    assert (
        env["deterministic_algorithms"] is False and env["cudnn_benchmark"] is False and env["threads"] == 1
    )
    try:
        b, _ = run(make_cfg, tmp_path, ["deterministic=true"], "b")
    finally:
        torch.use_deterministic_algorithms(False)
    assert (
        b["environment"]["deterministic_algorithms"] is True
        and b["environment"]["cudnn_deterministic"] is True
    )
    # another setting; on CPU the same numbers
    assert b["run_id"] != a["run_id"] and b["metrics"] == a["metrics"]
    # as a user script might leave it: the next run turns it off, and says so
    torch.backends.cudnn.benchmark = True
    c, _ = run(make_cfg, tmp_path, ["seed=5"], "c")
    assert c["environment"]["cudnn_benchmark"] is False


class Interrupt(Hook):
    """Simulates a killed process: stops after ``at`` epochs, once the checkpoint is on disk."""

    def __init__(self, at):
        self.at = at

    def on_epoch_end(self, run, entry):
        if entry["epoch"] == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("strategy", ["full_unfreeze", "gradual"])
def test_resume_ends_with_the_same_numbers(make_cfg, tmp_path, monkeypatch, strategy):
    over = [f"strategy={strategy}", "strategy.epochs=2", "model.batchnorm=true", "model.dropout=0.2"]
    straight, _ = run(make_cfg, tmp_path / "straight", over + ["resume=false"])

    import harness.runner as runner_module

    original = runner_module.build_hooks
    monkeypatch.setattr(runner_module, "build_hooks", lambda *a: original(*a) + [Interrupt(2)])
    with pytest.raises(KeyboardInterrupt):
        run(make_cfg, tmp_path / "broken", over + ["resume=false"])  # starts over, then dies after epoch 2
    monkeypatch.setattr(runner_module, "build_hooks", original)
    cfg = make_cfg(over)  # resume=true is the default
    assert checkpoint.load(RunStore(cfg.checkpoint.dir, straight["run_id"]).checkpoint)["epochs_done"] == 2
    resumed = train(cfg, tmp_path / "resumed")

    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
    assert resumed["metrics"] == straight["metrics"]
    assert "reused" not in resumed and any("resumed from" in w for w in resumed["warnings"])


def test_init_from_copies_the_first_groups(make_cfg, tmp_path):
    first, _ = run(make_cfg, tmp_path, ["split=random_half", "half=A"], "base")
    base = checkpoint.load(first["checkpoint"])["model"]
    cfg = make_cfg(
        [
            "split=random_half",
            "half=B",
            f"init.from={first['checkpoint']}",
            "init.groups=2",
            "epochs=1",
            "strategy=head_only",
        ]
    )
    second = train(cfg, tmp_path / "transfer")
    after = checkpoint.load(second["checkpoint"])["model"]
    # head_only: the two copied conv groups are frozen, so they still equal the base bit for bit
    for key in ("conv1.0.weight", "conv2.0.weight"):
        assert torch.equal(after[key], base[key]), key
    assert not torch.equal(
        after["head.0.weight"] if "head.0.weight" in after else after["head.weight"],
        base["head.0.weight"] if "head.0.weight" in base else base["head.weight"],
    )


def test_test_set_only_at_the_end_changes_no_number(make_cfg, tmp_path):
    every, _ = run(make_cfg, tmp_path, ["epochs=3"], "every")
    end, _ = run(make_cfg, tmp_path, ["epochs=3", "test_every_epoch=false"], "end")
    assert [h["test_acc"] for h in end["history"][:-1]] == [None, None]
    assert end["history"][-1]["test_acc"] == every["history"][-1]["test_acc"]
    assert end["metrics"]["test_acc"] == every["metrics"]["test_acc"]
    assert [h["val_acc"] for h in end["history"]] == [h["val_acc"] for h in every["history"]]
    assert (
        end["metrics"]["test_acc_best_val_k"] == end["metrics"]["test_acc"] and end["metrics"]["best_k"] == 1
    )


def test_an_inf_gradient_stops_the_run_before_the_step_reaches_the_weights(tmp_path):
    from search_helpers import FAULTY_MODEL
    from search_helpers import TINY as SEARCH_TINY

    from harness.assemble import assemble_run
    from harness.engine.loop import fit
    from harness.errors import NumericalError

    cfg = compose_config(
        [*SEARCH_TINY, *FAULTY_MODEL, "+model.net.mode=inf_grad", "strategy=full_unfreeze"],
        tiny=False,
        root=tmp_path,
    )
    run = assemble_run(cfg)
    with pytest.raises(NumericalError, match=r"gradient is .*Inf.* at epoch 1, step 3 \(loss [0-9.]+\) in "):
        fit(run)
    assert all(torch.isfinite(p).all() for p in run.model.net.parameters())  # the poisoned step never ran

    result = train(cfg, tmp_path / "run")
    assert result["status"] == "failed" and result["stopped_epoch"] == 0
    assert result["reason"].startswith("NumericalError: gradient is")


def test_the_finite_check_keeps_the_gradient_norms_and_stops_only_on_nan_or_inf(make_cfg):
    from harness.assemble import assemble_run
    from harness.engine.loop import check_finite, enter_phase
    from harness.errors import NumericalError

    run = assemble_run(make_cfg(["strategy=head_only"]))
    run.finite_check_every = 1  # read at every step: each call below is judged at once
    enter_phase(run, 0, first_epoch_of_phase=True)
    assert run.train_params == run.params[-1].all  # the head's weight and bias
    for p in run.train_params:
        p.grad = torch.randn_like(p)
    check_finite(run, torch.tensor(2.0), 0, 0)
    assert [n.item() for n in run.grad_norms] == pytest.approx(
        [p.grad.norm().item() for p in run.train_params]
    )

    for p in run.train_params:  # finite, but their float32 norms would overflow: the float64 ones do not
        p.grad = torch.full_like(p, 3e38)
    check_finite(run, torch.tensor(2.0), 0, 0)
    assert [n.item() for n in run.grad_norms] == pytest.approx(
        [3e38 * p.numel() ** 0.5 for p in run.train_params]
    )

    run.train_params[0].grad[0, 0] = float("nan")
    with pytest.raises(
        NumericalError, match=r"^gradient is NaN at epoch 2, step 5 \(loss 2\) in head.weight$"
    ):
        check_finite(run, torch.tensor(2.0), 1, 4)
    with pytest.raises(NumericalError, match=r"^loss is inf at epoch 1, step 1$"):
        check_finite(run, torch.tensor(float("inf")), 0, 0)


@pytest.mark.parametrize("optim", ["adamw", "sgd"])
def test_the_fused_optimizer_gives_the_numbers_of_the_plain_one(make_cfg, tmp_path, optim):
    from harness.assemble import assemble_run
    from harness.errors import ConfigError

    fused, _ = run(make_cfg, tmp_path, [f"optim={optim}"], "fused")
    plain, _ = run(make_cfg, tmp_path, [f"optim={optim}", "optim.fused=false"], "plain")
    assert plain["run_id"] != fused["run_id"]  # the implementation is part of a run's identity
    for a, b in zip(fused["history"], plain["history"], strict=True):  # the same up to float rounding
        for key in ("train_loss", "val_loss", "test_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), key
    with pytest.raises(ConfigError, match="optim.fused='yes' must be true or false"):
        assemble_run(make_cfg([f"optim={optim}", "optim.fused=yes"]))


class FailsAtTheEnd(Hook):
    def on_run_end(self, run, record):
        raise ConnectionError("the logging server went away")


def test_a_hook_failing_at_the_end_never_loses_the_result(make_cfg, tmp_path, monkeypatch):
    import harness.runner as runner_module

    original = runner_module.build_hooks
    monkeypatch.setattr(runner_module, "build_hooks", lambda *a: [FailsAtTheEnd(), *original(*a)])
    result = train(make_cfg(), tmp_path / "run")
    assert result["status"] == "ok"
    assert any("FailsAtTheEnd failed at the end of the run: ConnectionError" in w for w in result["warnings"])
    on_disk = json.loads((tmp_path / "run" / RECORD_NAME).read_text())
    assert on_disk["metrics"] == result["metrics"] and "diagnostics" in on_disk  # later hooks still ran
