"""The paper's protocol, checked: independent draws per network, a metric chosen on validation only, and
bases trained until they converge (early stopping keeping the best-validation weights)."""

import math

import pytest
import torch

from harness.assemble import assemble_run
from harness.engine import checkpoint
from harness.errors import ConfigError
from harness.record import best_val_k_mean
from harness.runner import run_job
from harness.train import train
from harness.transfer import plan as transfer_plan

GRID = ["transfer=yosinski", "split=random_half", "model.channels=[8,8,8]", "model.hidden=[16]"]  # L = 5


def initial_weights(cfg):
    """A network's fresh weights as its run would start (assembled, nothing trained)."""
    return {k: v.clone() for k, v in assemble_run(cfg, load_weights=False).model.net.state_dict().items()}


def job_plan(make_cfg, treatment, n, extra=()):
    cfg = make_cfg(GRID + [f"transfer.treatment={treatment}", f"transfer.n={n}", *extra])
    return cfg, transfer_plan.plan(cfg, n_groups=5)


# --- independent initial weights ---------------------------------------------------------------------------


def test_base_a_and_base_b_start_from_different_weights(make_cfg):
    _, job = job_plan(make_cfg, "AnB", 2)
    a, b = job.bases["baseA"], job.bases["baseB"]
    assert a.init_seed != b.init_seed and a.seed == b.seed == 0
    start_a, start_b = initial_weights(a), initial_weights(b)
    shared = [
        k for k in start_a if start_a[k].shape == start_b[k].shape and start_a[k].dtype.is_floating_point
    ]
    assert shared and all(not torch.equal(start_a[k], start_b[k]) for k in shared if "weight" in k)


@pytest.mark.parametrize("treatment", ["BnB", "BnB+", "AnB", "AnB+", "random"])
def test_re_initialised_layers_are_not_base_bs_starting_weights(make_cfg, treatment):
    n = 2
    _, job = job_plan(make_cfg, treatment, n)
    treated, base_b = initial_weights(job.run_config()), initial_weights(job.bases["baseB"])
    later = [k for k in treated if not k.startswith(("conv1.", "conv2.")) and k.endswith("weight")]
    assert later and all(not torch.equal(treated[k], base_b[k]) for k in later)
    # every (treatment, n) is a draw of its own
    _, other_n = job_plan(make_cfg, treatment, 3)
    assert other_n.run_config().init_seed != job.run_config().init_seed


def test_every_record_names_its_init_seed_and_a_rerun_gives_the_same_numbers(make_cfg, tmp_path):
    runs = []
    for name in ("first", "again"):
        cfg = make_cfg(
            GRID + ["transfer.treatment=BnB", "transfer.n=2", f"paths.output_root={tmp_path / name}"]
        )
        runs.append(train(cfg, tmp_path / name / "run"))
    first, again = runs
    assert first["init_seed"] == first["config"]["init_seed"] != first["transfer"]["baseB"]["init_seed"]
    assert first["transfer"]["baseB"]["init_seed"] == again["transfer"]["baseB"]["init_seed"]
    assert first["metrics"] == again["metrics"] and first["transfer"]["bases_trained_by_this_job"] == 1


def test_a_plain_run_draws_its_weights_from_its_seed(make_cfg):
    plain, explicit = make_cfg(["seed=3"]), make_cfg(["seed=3", "init_seed=3"])
    assert assemble_run(plain).seed == 3
    a, b = initial_weights(plain), initial_weights(explicit)
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = initial_weights(make_cfg(["seed=3", "init_seed=4"]))
    assert not all(torch.equal(a[k], other[k]) for k in a)


# --- the metric is chosen on validation -----------------------------------------------------------------------


def test_best_val_k_averages_test_accuracy_at_the_best_validation_epochs():
    history = [
        {"epoch": 1, "val_acc": 0.5, "test_acc": 0.99},  # the best test accuracy, at a poor validation epoch
        {"epoch": 2, "val_acc": 0.8, "test_acc": 0.70},
        {"epoch": 3, "val_acc": 0.9, "test_acc": 0.60},
        {"epoch": 4, "val_acc": 0.8, "test_acc": 0.65},  # ties with epoch 2: the later one is taken
        {"epoch": 5, "val_acc": 0.95, "test_acc": None},  # no test evaluation: cannot be averaged
    ]
    mean, used = best_val_k_mean(history, 2)
    assert used == 2 and math.isclose(mean, (0.60 + 0.65) / 2)
    assert best_val_k_mean(history, 10) == (pytest.approx((0.99 + 0.70 + 0.60 + 0.65) / 4), 4)
    assert best_val_k_mean([], 3) == (None, 0)


def test_the_record_has_no_metric_selected_on_test(make_cfg, tmp_path):
    result = train(make_cfg(["epochs=3"]), tmp_path / "run")
    assert "test_acc_best_k" not in result["metrics"]
    expected, used = best_val_k_mean(result["history"], 3)
    assert result["metrics"]["test_acc_best_val_k"] == expected and result["metrics"]["best_k"] == used == 3


# --- early stopping and converged bases --------------------------------------------------------------------


def stopping_run(make_cfg, tmp_path, name, extra=()):
    cfg = make_cfg(["epochs=12", "lr=0.05", "early_stopping.patience=2", "resume=false", *extra])
    return run_job(cfg, tmp_path / name), cfg


def test_early_stopping_stops_on_patience_and_ends_with_the_best_weights(make_cfg, tmp_path):
    result, _ = stopping_run(make_cfg, tmp_path, "run")
    stop = result["early_stopping"]
    vals = [h["val_acc"] for h in result["history"]]
    best = max(range(len(vals)), key=lambda i: (vals[i], i)) + 1
    assert stop["best_epoch"] == best and stop["epochs"] == len(vals)
    if stop["stopped"] == "patience":
        assert len(vals) < 12 and max(vals[-2:]) <= max(vals[:-2])
    kept = result["history"][best - 1]
    assert (
        result["metrics"]["val_acc"] == kept["val_acc"] and result["metrics"]["test_acc"] == kept["test_acc"]
    )
    # the checkpoint holds the kept weights: evaluating them gives the kept epoch's test accuracy
    run = assemble_run(make_cfg(["epochs=12"]))
    run.model.net.load_state_dict(checkpoint.load(result["checkpoint"])["model"])
    from harness.engine.loop import evaluate

    assert evaluate(run.model.net, run.data.test, run.device)[1] == kept["test_acc"]


def test_early_stopping_resumes_to_the_same_end(make_cfg, tmp_path, monkeypatch):
    straight, _ = stopping_run(make_cfg, tmp_path, "straight")
    assert len(straight["history"]) >= 3

    class Interrupt:
        def __getattr__(self, name):
            return lambda *a: None

        def on_epoch_end(self, run, entry):
            if entry["epoch"] == 2:
                raise KeyboardInterrupt

    import harness.runner as runner_module

    original = runner_module.build_hooks
    monkeypatch.setattr(runner_module, "build_hooks", lambda *a: original(*a) + [Interrupt()])
    with pytest.raises(KeyboardInterrupt):
        stopping_run(make_cfg, tmp_path, "broken")
    monkeypatch.setattr(runner_module, "build_hooks", original)
    cfg = make_cfg(["epochs=12", "lr=0.05", "early_stopping.patience=2"])
    resumed = run_job(cfg, tmp_path / "resumed")
    assert any("resumed from" in w for w in resumed["warnings"])
    assert (
        resumed["metrics"] == straight["metrics"] and resumed["early_stopping"] == straight["early_stopping"]
    )


def test_auto_bases_and_treatments_train_until_converged_under_one_rule(make_cfg, tmp_path):
    auto = [
        "transfer.base_epochs=auto",
        "transfer.epochs=auto",
        "transfer.patience=1",
        "transfer.reductions=1",
        "transfer.max_epochs=5",
    ]
    result = train(
        make_cfg(GRID + ["transfer.treatment=AnB", "transfer.n=2", "lr=0.05", *auto]), tmp_path / "run"
    )
    base_b, base_a = result["transfer"]["baseB"], result["transfer"]["base"]
    for base in (base_a, base_b):
        assert base["stopped"] in ("patience", "cap") and 1 <= base["best_epoch"] <= base["epochs"] <= 5
        assert base["still_rising"] == (base["stopped"] == "cap" and base["best_epoch"] > base["epochs"] - 1)
    stop = result["early_stopping"]  # the treatment follows the same rule
    assert (stop["patience"], stop["reductions"]) == (1, 1) and result["config"]["schedule"][
        "name"
    ] == "constant"
    assert len(result["history"]) == stop["epochs"] <= 5
    history = result["history"]
    for epoch in stop["reduced_at"]:  # after a cut every trained group runs at a tenth of its rate
        if epoch < len(history):
            assert history[epoch]["lr"]["head"] == pytest.approx(history[epoch - 1]["lr"]["head"] / 10)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["transfer.patience=0"], "transfer.patience"),
        (["transfer.base_epochs=abc"], "transfer.base_epochs"),
        (["transfer.epochs=0"], "transfer.epochs"),
        (["transfer.max_epochs=true"], "transfer.max_epochs"),
        (["transfer.reductions=-1"], "transfer.reductions"),
        (
            ["early_stopping.factor=1.5", "transfer.base_epochs=null", "early_stopping.patience=2"],
            "early_stopping.factor",
        ),
        (["early_stopping.patience=0"], "early_stopping.patience"),
        (["init_seed=-1"], "init_seed"),
        (["best_k=0"], "best_k"),
    ],
)
def test_bad_budget_is_one_line_before_any_base_trains(make_cfg, tmp_path, overrides, expected):
    cfg = make_cfg(GRID + ["transfer.treatment=AnB", "transfer.n=2", "transfer.base_epochs=auto", *overrides])
    with pytest.raises(ConfigError) as caught:
        train(cfg, tmp_path / "bad")
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    bases = tmp_path / "outputs" / "bases"
    assert not bases.exists() or not any(p.is_dir() for p in bases.iterdir())


def test_plateau_rule_cuts_the_rate_then_stops_and_keeps_the_latest_best():
    from harness.engine.early_stop import EarlyStop

    net = torch.nn.Linear(2, 2)
    stop = EarlyStop(patience=2, reductions=1, factor=0.1)
    vals = [0.5, 0.7, 0.7, 0.6, 0.8, 0.8, 0.7]
    ends = [stop.update(net, epoch, v) for epoch, v in enumerate(vals, start=1)]
    # no strict improvement after epoch 2 for two epochs: cut after epoch 4; epoch 5 improves; two more flat
    # epochs after it (6, 7) end the run at epoch 7; the kept weights are epoch 6's (ties: the later epoch)
    assert stop.reduced_at == [4] and stop.lr_factor == pytest.approx(0.1)
    assert ends == [False] * 6 + [True] and stop.best_epoch == 6 and stop.best_val == 0.8


def test_early_stopping_says_when_it_cuts_the_lr_and_when_it_stops(make_cfg, tmp_path, capsys):
    extra = ["progress=true", "early_stopping.patience=1", "early_stopping.reductions=1"]
    result, _ = stopping_run(make_cfg, tmp_path, "run", extra)
    out = capsys.readouterr().out
    stop = result["early_stopping"]
    assert "early stopping: lr x0.1 when val_acc has not risen for 1 epoch, 1 time;" in out
    assert stop["reduced_at"], "the tiny run should hit a plateau in 12 epochs"
    assert out.count("lr x0.1 (cut 1 of 1)") == len(stop["reduced_at"]) == 1
    stopped = f"stopped: val_acc flat for 1 epoch; kept epoch {stop['best_epoch']}'s weights"
    assert (stopped in out) == (stop["stopped"] == "patience")
    assert max(map(len, out.splitlines())) <= 80
