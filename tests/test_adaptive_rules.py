"""The decision rules of harness/plan/adaptive.py against their papers' formulas, on plain numbers."""

import math

import numpy as np
import pytest

from harness.plan import adaptive as rules
from harness.plan import schedules


@pytest.mark.parametrize("n, gamma", [(2, 0.75), (5, 0.75), (8, 0.5), (4, 1.0)])
def test_llrd_gives_group_i_lr_times_gamma_to_the_distance_from_the_head(n, gamma):
    rates = rules.llrd_rates(1e-3, n, gamma)
    assert rates[-1] == 1e-3
    for i in range(n):
        assert rates[i] == pytest.approx(1e-3 * gamma ** (n - 1 - i))
    if gamma < 1:
        assert rates == sorted(rates) and len(set(rates)) == n  # strictly growing towards the head


def test_freezeout_end_times_linear_and_cubic():
    assert rules.freezeout_ends(5, 0.5) == pytest.approx([0.5, 0.625, 0.75, 0.875, 1.0])
    # the paper's code cubes the linear time: its t0 is "pre-cubed"
    assert rules.freezeout_ends(5, 0.8, "cubic") == pytest.approx([0.8**3, 0.85**3, 0.9**3, 0.95**3, 1.0])
    assert rules.freezeout_ends(1, 0.3) == [1.0]
    assert rules.freezeout_ends(3, 0.0) == pytest.approx([0.0, 0.5, 1.0])


def test_freezeout_factor_is_a_cosine_to_zero_at_the_end_time():
    end = 0.4
    for pos in np.linspace(0, 0.39, 14):
        assert rules.freezeout_factor(pos, end) == pytest.approx(0.5 * (1 + math.cos(math.pi * pos / end)))
    assert rules.freezeout_factor(0.0, end) == 1.0
    assert rules.freezeout_factor(end, end) == 0.0 and rules.freezeout_factor(0.9, end) == 0.0
    assert rules.freezeout_factor(0.0, 0.0) == 0.0  # t0 = 0: the first group never trains
    # scaled: a group that trains for less of the run starts at 1/t_i times the rate
    assert rules.freezeout_factor(0.0, 0.25, scale_lr=True) == pytest.approx(4.0)
    assert rules.freezeout_factor(0.125, 0.25, scale_lr=True) == pytest.approx(2.0)


def test_the_freezeout_schedule_gives_every_group_its_own_factor():
    sched = schedules.check({"name": "freezeout", "ends": [0.5, 0.75, 1.0], "scale_lr": False})
    assert schedules.group_factors(sched, 0, 100, 10, 3) == [1.0, 1.0, 1.0]
    mid = schedules.group_factors(sched, 50, 100, 10, 3)
    assert mid[0] == 0.0 and mid[1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5 / 0.75)))
    assert mid[2] == pytest.approx(0.5)
    # any other schedule: one factor for every group
    one = schedules.check({"name": "one_cycle"})
    assert schedules.group_factors(one, 30, 100, 10, 3) == [schedules.lr_factor(one, 30, 100, 10)] * 3


def test_the_freezeout_schedule_cannot_be_picked_without_its_strategy():
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="made by strategy=freezeout itself"):
        schedules.check({"name": "freezeout"})


def test_gradient_change_is_the_relative_change_of_accumulated_norms():
    eta = rules.gradient_change([2.0, 4.0, 0.0, 0.0, 1.0], [1.0, 5.0, 0.0, 3.0, 1.0])
    assert eta == [0.5, 0.25, 0.0, math.inf, 0.0]


@pytest.mark.parametrize("p", [1, 10, 25, 50, 62.5, 90, 99])
def test_percentile_matches_numpy(p):
    values = [0.3, 0.01, 0.7, 0.2, 0.2, 1.5]
    assert rules.percentile(values, p) == pytest.approx(np.percentile(values, p))


def test_autofreeze_freezes_an_input_side_prefix_below_the_percentile():
    # groups: in1, in2, mid, top, head; median of all five etas is 0.3
    eta = [0.01, 0.02, 0.5, 0.03, 0.3]
    assert rules.autofreeze_prefix(eta, 0, 50) == 2  # 'top' is below too, but 'mid' above breaks the prefix
    # already frozen groups take no part in the threshold: of [0.5, 0.03, 0.3] the median is 0.3, and
    # the first active group, 0.5, is above it
    assert rules.autofreeze_prefix(eta, 2, 50) == 2
    # strictly below: a group at the threshold stays
    assert rules.autofreeze_prefix([0.1, 0.1, 0.1], 0, 50) == 0
    # the head never freezes, however still it is
    assert rules.autofreeze_prefix([0.0, 0.0, 0.0, 0.0, 0.0, 1.0], 0, 99) == 5
    assert rules.autofreeze_prefix([0.0, 0.0, 1.0, 0.0], 0, 99) == 2
    assert rules.autofreeze_prefix([0.0, 1.0], 1, 50) == 1  # only the head left: nothing to decide


def test_rgn_scales_are_relative_gradient_norms_over_the_largest():
    scales = rules.rgn_scales([1.0, 2.0, 0.5], [10.0, 4.0, 1.0])  # rgn 0.1, 0.5, 0.5
    assert scales == pytest.approx([0.2, 1.0, 1.0])
    assert rules.rgn_scales([0.0, 0.0], [1.0, 1.0]) == [1.0, 1.0]  # nothing to rank
    assert rules.rgn_scales([1.0, 1.0], [0.0, 2.0]) == [0.0, 1.0]  # a weightless group gets nothing
