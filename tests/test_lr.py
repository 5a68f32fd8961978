import math

import pytest

from harness.errors import ConfigError
from harness.plan.lr import LrSlice, parse_lr, spread


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_scalar_gives_every_group_the_same_rate(n):
    assert spread(parse_lr(3e-4), n) == [3e-4] * n


@pytest.mark.parametrize("n", [2, 3, 6])
def test_slice_hi_is_head_hi_and_the_rest_a_tenth(n):
    rates = spread(parse_lr({"hi": 1e-2}), n)
    assert rates[-1] == 1e-2
    assert rates[:-1] == [1e-3] * (n - 1)


@pytest.mark.parametrize("n", [2, 3, 4, 7])
def test_slice_lo_hi_is_fastais_geometric_spread(n):
    lo, hi = 1e-5, 1e-3
    rates = spread(parse_lr({"lo": lo, "hi": hi}), n)
    expected = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]
    assert rates == pytest.approx(expected, rel=1e-12)
    assert rates[0] == pytest.approx(lo) and rates[-1] == pytest.approx(hi)
    ratios = [b / a for a, b in zip(rates, rates[1:], strict=False)]
    assert all(math.isclose(r, ratios[0], rel_tol=1e-9) for r in ratios)


def test_slice_lo_hi_one_group_is_hi():
    assert spread(LrSlice(1e-3, 1e-5), 1) == [1e-3]


def test_list_is_taken_as_given_and_must_match_group_count():
    assert spread(parse_lr([1e-4, 1e-3]), 2) == [1e-4, 1e-3]
    with pytest.raises(ConfigError, match="lists 2 learning rates but the model has 3"):
        spread(parse_lr([1e-4, 1e-3]), 3)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"lo": 1e-2, "hi": 1e-3}, "lo=0.01 is greater than hi=0.001"),
        ({"lo": -1e-5, "hi": 1e-3}, "lr.lo=-1e-05 must be a number > 0"),
        ({"hi": 0}, "lr.hi=0 must be a number > 0"),
        (-1.0, "lr=-1.0 must be a number > 0"),
        ("fast", "lr='fast' must be a number"),
        ({"low": 1e-3}, "must be a number"),
    ],
)
def test_bad_lr_is_one_clear_error(bad, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_lr(bad)
