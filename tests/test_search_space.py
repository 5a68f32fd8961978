"""Search-space parsing (harness/search/space.py), the search presets' composition, and what a job record
means for its trial (harness/search/outcome.py). Fast: no training, no subprocess."""

from __future__ import annotations

import math

import optuna
import pytest
from conftest import compose_config
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from harness.errors import ConfigError
from harness.search import outcome
from harness.search.space import SearchSpace, conditional_params, flatten, parse_entry

optuna.logging.set_verbosity(optuna.logging.WARNING)


def param(text: str, name: str = "x"):
    entry = parse_entry(name, text)
    assert not isinstance(entry, str), f"{text} parsed as a fixed value"
    return entry


# --- each syntax form -------------------------------------------------------------------------------


def test_interval_is_a_uniform_float():
    assert param("interval(0.1, 1)").distribution == FloatDistribution(0.1, 1.0)


def test_tag_log_interval_is_a_log_float():
    assert param("tag(log, interval(1e-5, 1e-2))").distribution == FloatDistribution(1e-5, 1e-2, log=True)


def test_tag_int_interval_is_an_integer_with_both_ends():
    assert param("tag(int, interval(1, 5))").distribution == IntDistribution(1, 5)
    assert param("tag(int, log, interval(1, 64))").distribution == IntDistribution(1, 64, log=True)


def test_choice_and_the_comma_form_are_categorical():
    assert param("choice(a, b, c)").distribution == CategoricalDistribution(("a", "b", "c"))
    assert param("a,b,c").distribution == CategoricalDistribution(("a", "b", "c"))
    mixed = param("choice(1, 2.5, true, x)")
    assert mixed.distribution.choices == (1, 2.5, True, "x")


def test_range_excludes_its_end():
    p = param("range(1, 5)")
    assert p.distribution == IntDistribution(1, 4)
    assert p.values == [1, 2, 3, 4]
    assert param("range(0, 10, 3)").values == [0, 3, 6, 9]
    assert param("range(5, 0, -2)").values == [1, 3, 5]  # a negative step still stops before 0
    assert param("range(3)").values == [0, 1, 2]


def test_float_range_is_a_stepped_float():
    p = param("range(0.1, 0.5, 0.1)")
    assert isinstance(p.distribution, FloatDistribution) and p.distribution.step == pytest.approx(0.1)
    assert p.values == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_tag_log_range_needs_step_one():
    assert param("tag(log, range(1, 65))").distribution == IntDistribution(1, 64, log=True)
    with pytest.raises(ConfigError, match="step 1"):
        param("tag(log, range(1, 65, 2))")


@pytest.mark.parametrize(
    "text, message",
    [
        ("range(3, 3)", "empty"),
        ("interval(2, 1)", "empty"),
        ("tag(log, interval(0, 1))", "positive"),
        ("tag(int, interval(0.5, 3))", "whole-number"),
        ("tag(fancy, interval(0, 1))", "fancy"),
        ("tag(log, choice(1, 2))", "log"),
        ("choice(", "cannot parse"),
    ],
)
def test_bad_sweeps_say_what_is_wrong(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_entry("x", text)


def test_a_plain_value_fixes_the_key():
    assert parse_entry("strategy", "full_unfreeze") == "strategy=full_unfreeze"
    assert parse_entry("epochs", 3) == "epochs=3"
    assert parse_entry("lr", {"lo": 1e-5, "hi": 1e-3}) == "lr={lo:1e-05,hi:0.001}"


# --- values back to overrides ----------------------------------------------------------------------


SPACE = {
    "a": "interval(0.1, 1)",
    "b": "tag(log, interval(1e-5, 1e-2))",
    "c": "tag(int, interval(1, 5))",
    "d": "choice(1, true, 'with space', [1,2])",
    "e": "range(0, 10, 3)",
    "f": "range(0.1, 0.5, 0.1)",
    "strategy": "never,head_only",
}


def test_suggested_values_round_trip_through_hydra_overrides():
    space, fixed = SearchSpace.build(SPACE)
    assert fixed == []
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    parser = OverridesParser.create()
    for _ in range(20):
        trial = study.ask()
        lines = space.suggest(trial)
        parsed = {o.get_key_element(): o.value() for o in parser.parse_overrides(lines)}
        for name, value in trial.params.items():
            if name == "d" and isinstance(value, str) and value.startswith("["):
                assert parsed[name] == [1, 2]  # a list choice is passed as the list
            else:
                assert parsed[name] == value and type(parsed[name]) is type(value), (
                    name,
                    value,
                    parsed[name],
                )
        study.tell(trial, 0.0)


def test_choice_keeps_one_and_true_apart():
    p = param("choice(1, true)")
    assert p.format(1) == "1" and p.format(True) == "true"


def test_float_overrides_are_exact():
    p = param("tag(log, interval(1e-5, 1e-2))")
    value = 0.00012345678901234567
    assert float(p.format(value)) == value


# --- building the space from config and command line ---------------------------------------------


def test_command_line_sweeps_replace_and_plain_values_fix():
    params = {"strategy.base_lr": "tag(log, interval(1e-4, 1e-2))", "strategy.epochs": "range(1, 5)"}
    space, passthrough = SearchSpace.build(
        params,
        ["data=synthetic", "strategy.epochs=3", "strategy.base_lr=choice(1e-3,1e-2)", "lr=interval(0.1,1)"],
    )
    assert list(space.params) == ["strategy.base_lr", "lr"]  # epochs fixed by the command line
    assert space.params["strategy.base_lr"].distribution == CategoricalDistribution((1e-3, 1e-2))
    assert passthrough == ["data=synthetic", "strategy.epochs=3"]


def test_nested_params_flatten_and_null_drops_a_key():
    assert flatten({"strategy": {"k": "range(1, 3)", "bn": None}, "lr": "interval(0.1, 1)"}) == {
        "strategy.k": "range(1, 3)",
        "lr": "interval(0.1, 1)",
    }


def test_an_empty_space_is_an_error():
    with pytest.raises(ConfigError, match="empty"):
        SearchSpace.build({"x": None})


def test_size_and_grid_of_a_finite_space():
    space, _ = SearchSpace.build({"a": "range(1, 4)", "b": "choice(x, y)"})
    assert space.size == 6
    assert space.grid() == {"a": [1, 2, 3], "b": ["x", "y"]}
    continuous, _ = SearchSpace.build({"a": "interval(0, 1)"})
    assert continuous.size is None
    with pytest.raises(ConfigError, match="continuous"):
        continuous.grid()


def test_conditional_parameters_exist_only_for_their_value():
    cfg = compose_config(["search=strategy"])
    space, _ = SearchSpace.build(
        {"strategy": "choice(never, freeze_to, gradual)"},
        custom_search_space="harness.search.space.conditional_params",
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        lines = space.suggest(trial, cfg)
        keys = {line.split("=", 1)[0] for line in lines}
        strategy = trial.params["strategy"]
        seen.add(strategy)
        assert ("strategy.k" in keys) == (strategy == "freeze_to")
        assert ("strategy.every" in keys) == (strategy == "gradual")
        assert ("strategy.bn" in keys) == (strategy != "never")
        assert "lr" in keys
        study.tell(trial, 0.0)
    assert seen == {"never", "freeze_to", "gradual"}
    assert conditional_params(study.ask(), compose_config([])) == {}  # no search preset: nothing to add


# --- presets compose -------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["finetune_lr", "strategy"])
def test_presets_compose_with_a_typed_search_node(preset):
    cfg = compose_config([f"search={preset}"])
    assert cfg.search.study_name == preset
    assert cfg.search.objectives == ["val_acc"]
    space, _ = SearchSpace.build(dict(cfg.search.params), custom_search_space=cfg.search.custom_search_space)
    assert space.params
    assert cfg.trial.number is None  # a job becomes a trial only through the sweeper's overrides


def test_finetune_preset_searches_the_slice_on_a_log_scale():
    cfg = compose_config(["search=finetune_lr"])
    space, _ = SearchSpace.build(dict(cfg.search.params))
    assert cfg.strategy.name == "full_unfreeze"
    assert space.params["strategy.base_lr"].distribution.log
    assert space.params["strategy.lr_mult"].distribution.log  # lr_mult is hi/lo of the unfrozen slice
    assert isinstance(space.params["strategy.epochs"].distribution, IntDistribution)


def test_a_misspelt_search_key_fails_at_composition():
    with pytest.raises(Exception, match="n_trial"):
        compose_config(["search=finetune_lr", "search.n_trial=3"])


# --- a job's record -> the trial's state -------------------------------------------------------------


def record(status="ok", val_acc=0.9, **extra):
    return {
        "status": status,
        "reason": extra.get("reason"),
        "stopped_epoch": extra.get("stopped_epoch"),
        "metrics": {"val_acc": val_acc, "best_val_acc": val_acc, "test_acc": 0.99},
        "timing": {"seconds": 2.0},
        "history": [{"val_acc": val_acc}] * 2,
    }


def test_outcome_of_records():
    done = outcome.outcome_of_record(record(), ["val_acc"])
    assert done.state == "COMPLETE" and done.values == [0.9]
    assert outcome.outcome_of_record(record(), ["val_acc", "seconds"]).values == [0.9, 2.0]
    pruned = outcome.outcome_of_record(record("pruned", reason="pruned by x", stopped_epoch=1), ["val_acc"])
    assert pruned.state == "PRUNED" and pruned.attrs["stopped_epoch"] == 1
    failed = outcome.outcome_of_record(
        record("failed", val_acc=None, reason="NumericalError: loss is nan"), ["val_acc"]
    )
    assert failed.state == "FAIL" and "nan" in failed.reason
    nan = outcome.outcome_of_record(record(val_acc=math.nan), ["val_acc"])
    assert nan.state == "FAIL" and "finite" in nan.reason


def test_missing_record_is_a_failure(tmp_path):
    result = outcome.read_outcome(tmp_path, ["val_acc"], number=3, study="s")
    assert result.state == "FAIL" and "no result.json" in result.reason


def test_test_metrics_are_never_objectives():
    with pytest.raises(ConfigError, match="test set"):
        outcome.check_objectives(["test_acc"], ["maximize"])
    with pytest.raises(ConfigError, match="one each"):
        outcome.check_objectives(["val_acc", "seconds"], ["maximize"])
    outcome.check_objectives(["val_acc", "seconds"], ["maximize", "minimize"])
