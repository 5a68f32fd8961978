import math

import pytest

from harness.errors import ConfigError
from harness.plan.schedules import (
    check,
    cos_between,
    lr_factor,
    momentum,
    one_cycle_lr,
    one_cycle_momentum,
    step_lr,
)


def test_cosine_endpoints_and_midpoint():
    assert cos_between(1.0, 3.0, 0.0) == pytest.approx(1.0)
    assert cos_between(1.0, 3.0, 1.0) == pytest.approx(3.0)
    assert cos_between(1.0, 3.0, 0.5) == pytest.approx(2.0)


@pytest.mark.parametrize("pct", [0.25, 0.3, 0.99])
def test_one_cycle_matches_fastai_formula(pct):
    div, div_final = 25.0, 1e5
    # start, peak at pct_start, end
    assert one_cycle_lr(0.0, pct_start=pct, div=div, div_final=div_final) == pytest.approx(1 / div)
    assert one_cycle_lr(pct, pct_start=pct, div=div, div_final=div_final) == pytest.approx(1.0)
    assert one_cycle_lr(1.0, pct_start=pct, div=div, div_final=div_final) == pytest.approx(1 / div_final)
    for pos in (0.1, 0.2, 0.5, 0.8):
        if pos < pct:
            p = pos / pct
            expected = 1 / div + (1 + math.cos(math.pi * (1 - p))) * (1 - 1 / div) / 2
        else:
            p = (pos - pct) / (1 - pct)
            expected = 1 + (1 + math.cos(math.pi * (1 - p))) * (1 / div_final - 1) / 2
        assert one_cycle_lr(pos, pct_start=pct, div=div, div_final=div_final) == pytest.approx(expected)


def test_one_cycle_momentum_goes_down_then_up():
    assert one_cycle_momentum(0.0) == pytest.approx(0.95)
    assert one_cycle_momentum(0.25) == pytest.approx(0.85)
    assert one_cycle_momentum(1.0) == pytest.approx(0.95)
    assert 0.85 < one_cycle_momentum(0.125) < 0.95


def test_lr_factor_per_step_and_defaults():
    sched = check(
        {"name": "one_cycle", "pct_start": 0.25, "div": 25.0, "div_final": 1e5, "moms": [0.95, 0.85, 0.95]}
    )
    total = 100
    assert lr_factor(sched, 0, total, 10) == pytest.approx(1 / 25)
    assert lr_factor(sched, 25, total, 10) == pytest.approx(1.0)
    assert momentum(sched, 25, total) == pytest.approx(0.85)
    assert lr_factor({"name": "constant"}, 37, total, 10) == 1.0
    assert momentum({"name": "constant"}, 3, total) is None


def test_step_decay_is_the_papers():
    sched = check({"name": "step", "step_size": 2, "gamma": 0.1})
    assert [step_lr(e, step_size=2, gamma=0.1) for e in range(5)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert lr_factor(sched, 25, 50, 10) == pytest.approx(0.1)  # step 25 is in epoch 2


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"name": "cosine"}, "schedule.name='cosine' is not a schedule"),
        ({"name": "one_cycle", "pct_start": 0}, "pct_start=0 must be a number > 0 and <= 1"),
        ({"name": "step", "step_size": 0, "gamma": 0.1}, "step_size=0 must be an integer >= 1"),
    ],
)
def test_bad_schedule(bad, message):
    with pytest.raises(ConfigError, match=message):
        check(bad)
