import re

import pytest
from omegaconf import OmegaConf

from harness.errors import ConfigError
from harness.plan.strategies import Plan, compile_plan, freeze, freeze_to
from tests.conftest import CONF

ONE_CYCLE = OmegaConf.to_container(OmegaConf.load(CONF / "schedule/one_cycle.yaml"))


def strategy(name, **over):
    cfg = OmegaConf.load(CONF / f"strategy/{name}.yaml")
    cfg = OmegaConf.merge({"epochs": 3, "lr": 1e-3}, {"s": cfg}, {"s": over})
    return OmegaConf.to_container(cfg, resolve=True)["s"]


def groups(n):
    return [f"g{i}" for i in range(n - 1)] + ["head"]


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_fine_tune_matches_fastai(n):
    plan = compile_plan(strategy("full_unfreeze", epochs=4), ONE_CYCLE, groups(n))
    frozen, unfrozen = plan.phases
    base_lr = 2e-3
    # phase 1: freeze(), freeze_epochs at slice(base_lr), pct_start 0.99
    assert frozen.epochs == 1 and frozen.trainable == ["head"]
    assert frozen.lr == pytest.approx([base_lr / 10] * (n - 1) + [base_lr])
    assert frozen.schedule["pct_start"] == 0.99 and frozen.schedule["div"] == 25.0
    # phase 2: base_lr /= 2, unfreeze(), slice(base_lr/100, base_lr), pct_start 0.3, div 5
    hi, lo = base_lr / 2, base_lr / 2 / 100
    assert unfrozen.epochs == 4 and unfrozen.trainable == groups(n)
    assert unfrozen.lr == pytest.approx([lo * (hi / lo) ** (i / (n - 1)) for i in range(n)])
    assert unfrozen.schedule["pct_start"] == 0.3 and unfrozen.schedule["div"] == 5.0
    assert unfrozen.schedule["div_final"] == 1e5
    assert plan.total_epochs == 5


def test_fine_tune_without_freeze_epochs_is_one_phase():
    plan = compile_plan(strategy("full_unfreeze", freeze_epochs=0), ONE_CYCLE, groups(3))
    assert [p.name for p in plan.phases] == ["unfrozen"]


def test_freeze_vocabulary():
    g = groups(4)
    assert freeze(g) == ["head"] == freeze_to(g, -1)
    assert freeze_to(g, 0) == g  # unfreeze()
    assert freeze_to(g, 2) == g[2:]
    assert freeze_to(g, -2) == g[-2:]


@pytest.mark.parametrize("k", [4, 5, -4, -10])
def test_freeze_to_out_of_range(k):
    with pytest.raises(ConfigError, match=rf"strategy.k={k} is out of range .* allowed: -3 \.\. 3"):
        compile_plan(strategy("freeze_to", k=k), ONE_CYCLE, groups(4))


def test_freezing_a_one_group_model_is_an_error():
    for name in ("head_only", "gradual"):
        with pytest.raises(ConfigError, match="one layer group"):
            compile_plan(strategy(name), ONE_CYCLE, ["all"])
    with pytest.raises(ConfigError, match="one layer group"):
        compile_plan(strategy("freeze_to", k=-1), ONE_CYCLE, ["all"])


def test_gradual_unfreezes_one_more_group_every_n_epochs():
    plan = compile_plan(strategy("gradual", every=2, epochs=3), ONE_CYCLE, groups(4))
    assert [p.trainable for p in plan.phases] == [["head"], ["g2", "head"], ["g1", "g2", "head"], groups(4)]
    assert [p.epochs for p in plan.phases] == [2, 2, 2, 3]
    assert plan.phase_at(0) == (0, 0) and plan.phase_at(5) == (2, 1) and plan.phase_at(8) == (3, 2)
    assert "kept across phases" in plan.describe()


def test_surgical_keeps_model_order_and_rejects_unknown_groups():
    plan = compile_plan(strategy("surgical", groups=["head", "g0"]), ONE_CYCLE, groups(3))
    assert plan.phases[0].trainable == ["g0", "head"]
    with pytest.raises(ConfigError, match=r"unknown layer groups \['conv9'\]"):
        compile_plan(strategy("surgical", groups=["conv9"]), ONE_CYCLE, groups(3))


@pytest.mark.parametrize(
    "name, over, message",
    [
        ("never", {"bn": "sometimes"}, "strategy.bn='sometimes' is not a BatchNorm policy"),
        ("never", {"lr": {"lo": 1e-2, "hi": 1e-3}}, "greater than hi"),
        ("never", {"lr": [1e-3, 1e-3]}, "lists 2 learning rates but the model has 3"),
        ("never", {"epochs": 0}, "strategy.epochs=0 must be an integer >= 1"),
        ("never", {"optimizer_state": "drop"}, "optimizer_state='drop'"),
        ("full_unfreeze", {"base_lr": -1}, "base_lr=-1 must be a number > 0"),
    ],
)
def test_bad_strategy_input(name, over, message):
    with pytest.raises(ConfigError, match=message):
        compile_plan(strategy(name, **over), ONE_CYCLE, groups(3))


def test_unknown_strategy_lists_choices():
    with pytest.raises(ConfigError, match="choose one of: never, head_only, full_unfreeze"):
        compile_plan({"name": "sometimes"}, ONE_CYCLE, groups(3))


def test_plan_round_trips_as_plain_data():
    plan = compile_plan(strategy("full_unfreeze"), ONE_CYCLE, groups(3))
    assert Plan.from_dict(plan.to_dict()) == plan


# --- partial and adaptive strategies ------------------------------------------------------------------


def test_llrd_spreads_one_rate_down_from_the_head():
    plan = compile_plan(strategy("llrd", gamma=0.5), ONE_CYCLE, groups(4))
    (phase,) = plan.phases
    assert phase.trainable == groups(4) and phase.lr == pytest.approx([1e-3 / 8, 1e-3 / 4, 1e-3 / 2, 1e-3])
    assert plan.adaptive is None  # a fixed plan: the rates are known before training
    with pytest.raises(ConfigError, match="strategy.lr must be one number for llrd"):
        compile_plan(strategy("llrd", lr={"lo": 1e-5, "hi": 1e-3}), ONE_CYCLE, groups(4))


def test_bitfit_trains_the_head_and_the_biases_inside_frozen_groups():
    plan = compile_plan(strategy("bitfit"), ONE_CYCLE, groups(4))
    (phase,) = plan.phases
    assert phase.trainable == ["head"] and phase.partial == "bias" and plan.bn == "train"
    assert "their biases and norm layers train" in plan.describe()
    with pytest.raises(ConfigError, match="bitfit trains the norm-layer parameters by definition"):
        compile_plan(strategy("bitfit", bn="eval"), ONE_CYCLE, groups(4))


def test_lp_ft_probes_the_head_then_fine_tunes_everything_at_a_tenth():
    plan = compile_plan(strategy("lp_ft", probe_epochs=6, patience=2, epochs=4), ONE_CYCLE, groups(3))
    probe, tune = plan.phases
    assert probe.trainable == ["head"] and probe.epochs == 6 and probe.schedule["name"] == "constant"
    assert probe.lr == pytest.approx([1e-3] * 3)
    assert tune.trainable == groups(3) and tune.epochs == 4 and tune.schedule["name"] == "one_cycle"
    assert tune.lr == pytest.approx([1e-4] * 3)  # lr: null = probe_lr / 10
    assert plan.adaptive == {"rule": "lp_ft", "phase": 0, "patience": 2}
    assert plan.optimizer_state == "reset"
    given = compile_plan(strategy("lp_ft", lr={"lo": 1e-5, "hi": 1e-4}), ONE_CYCLE, groups(3))
    assert given.phases[1].lr == pytest.approx([1e-5, 10**-4.5, 1e-4])


def test_freezeout_plans_one_end_time_per_group():
    plan = compile_plan(strategy("freezeout", t0=0.5), ONE_CYCLE, groups(5))
    (phase,) = plan.phases
    assert phase.schedule == {"name": "freezeout", "ends": [0.5, 0.625, 0.75, 0.875, 1.0], "scale_lr": False}
    assert plan.adaptive == {"rule": "freezeout", "t0": 0.5, "scaling": "linear", "scale_lr": False}
    cubic = compile_plan(strategy("freezeout", t0=0.8, scaling="cubic", scale_lr=True), ONE_CYCLE, groups(3))
    assert cubic.phases[0].schedule["ends"] == pytest.approx([0.512, 0.729, 1.0])


def test_autofreeze_l2sp_and_auto_rgn_name_their_rule():
    auto = compile_plan(strategy("autofreeze", interval=7, percentile=30), ONE_CYCLE, groups(4))
    assert auto.adaptive == {"rule": "autofreeze", "interval": 7, "percentile": 30.0}
    assert auto.phases[0].trainable == groups(4)
    l2sp = compile_plan(strategy("l2sp", alpha=0.1, beta=0.0), ONE_CYCLE, groups(4))
    assert l2sp.adaptive == {"rule": "l2sp", "alpha": 0.1, "beta": 0.0}
    assert "weight decay is off" in l2sp.describe()
    rgn = compile_plan(strategy("auto_rgn"), ONE_CYCLE, groups(4))
    assert rgn.adaptive == {"rule": "auto_rgn", "interval": 1}


@pytest.mark.parametrize(
    "name, over, message",
    [
        ("llrd", {"gamma": 0}, "strategy.gamma=0 must be a number > 0.0 and <= 1.0"),
        ("llrd", {"gamma": 1.5}, "strategy.gamma=1.5"),
        ("llrd", {"gamma": "x"}, "strategy.gamma='x'"),
        ("l2sp", {"alpha": -0.1}, "strategy.alpha=-0.1 must be a number >= 0.0"),
        ("l2sp", {"beta": -1}, "strategy.beta=-1 must be a number >= 0.0"),
        ("freezeout", {"t0": 1.0}, "strategy.t0=1.0 must be a number >= 0.0 and < 1.0"),
        ("freezeout", {"t0": -0.1}, "strategy.t0=-0.1"),
        ("freezeout", {"scaling": "squared"}, "strategy.scaling='squared' is not a FreezeOut scaling"),
        ("autofreeze", {"percentile": 0}, "strategy.percentile=0 must be a number > 0.0 and < 100.0"),
        ("autofreeze", {"percentile": 100}, "strategy.percentile=100"),
        ("autofreeze", {"interval": 0}, "strategy.interval=0 must be an integer >= 1"),
        ("auto_rgn", {"interval": 0}, "strategy.interval=0 must be an integer >= 1"),
        ("lp_ft", {"patience": 0}, "strategy.patience=0 must be an integer >= 1"),
        ("lp_ft", {"probe_epochs": 0}, "strategy.probe_epochs=0 must be an integer >= 1"),
    ],
)
def test_bad_adaptive_strategy_input(name, over, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        compile_plan(strategy(name, **over), ONE_CYCLE, groups(3))


def test_adaptive_plans_round_trip_and_find_their_phase_with_real_lengths():
    plan = compile_plan(strategy("lp_ft", probe_epochs=6, epochs=4), ONE_CYCLE, groups(3))
    assert Plan.from_dict(plan.to_dict()) == plan
    # the probe ended after 2 of its 6 epochs: epoch 2 (0-based) is the first of fine-tuning
    assert plan.phase_at(2, [2, 4]) == (1, 0) and plan.phase_at(2) == (0, 2)
