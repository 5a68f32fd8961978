"""Confidence intervals against scipy on known data, and the yes/no/inconclusive rule of the findings check."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from analysis.stats import Interval, summarize, t_interval, verdict, welch_interval

KNOWN = [97.2, 98.1, 97.6, 98.4, 97.9]


def test_t_interval_matches_scipy():
    ci = t_interval(KNOWN)
    lo, hi = st.t.interval(0.95, len(KNOWN) - 1, loc=np.mean(KNOWN), scale=st.sem(KNOWN))
    assert ci.mean == pytest.approx(97.84)
    assert (ci.lo, ci.hi) == pytest.approx((lo, hi), abs=1e-12)
    assert ci.sd == pytest.approx(np.std(KNOWN, ddof=1))
    assert ci.n == 5
    # and by hand: t(0.975, 4) = 2.7764451...
    assert ci.half == pytest.approx(2.7764451051977987 * np.std(KNOWN, ddof=1) / math.sqrt(5))


def test_t_interval_other_confidence_and_two_values():
    ci = t_interval([1.0, 3.0], confidence=0.9)
    lo, hi = st.t.interval(0.9, 1, loc=2.0, scale=st.sem([1.0, 3.0]))
    assert (ci.lo, ci.hi) == pytest.approx((lo, hi))


def test_one_replicate_has_no_interval_and_says_so():
    ci = t_interval([98.0])
    assert ci.mean == 98.0 and math.isnan(ci.lo) and math.isnan(ci.hi) and not ci.has_ci
    assert "no CI" in ci.text()
    assert t_interval([]).n == 0


def test_t_interval_refuses_nan():
    with pytest.raises(ValueError, match="NaN"):
        t_interval([1.0, float("nan")])


def test_welch_matches_scipy():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 5.0, 7.0, 8.0]
    ci = welch_interval(a, b)
    ref = st.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert ci.mean == pytest.approx(np.mean(a) - np.mean(b))
    assert (ci.lo, ci.hi) == pytest.approx((ref.low, ref.high))
    assert math.isnan(welch_interval([1.0], b).lo)


def test_summarize_groups_and_counts():
    frame = pd.DataFrame({"t": ["A"] * 3 + ["B"], "v": [1.0, 2.0, 3.0, 5.0]})
    out = summarize(frame, ["t"], "v").set_index("t")
    assert out.loc["A", "replicates"] == 3 and out.loc["A", "mean"] == 2.0
    assert out.loc["A", "ci_hi"] == pytest.approx(2.0 + st.t.ppf(0.975, 2) * 1.0 / math.sqrt(3))
    assert out.loc["B", "replicates"] == 1 and math.isnan(out.loc["B", "ci_lo"])


@pytest.mark.parametrize(
    ("lo", "hi", "claim", "expected"),
    [
        (-2.0, -0.5, "less", "yes"),
        (0.5, 2.0, "less", "no"),
        (-1.0, 1.0, "less", "inconclusive"),
        (0.2, 1.0, "greater", "yes"),
        (-1.0, -0.2, "greater", "no"),
        (-0.1, 1.0, "greater", "inconclusive"),
        (-0.4, 0.6, "equal", "yes"),
        (1.2, 3.0, "equal", "no"),
        (-3.0, -1.5, "equal", "no"),
        (0.5, 1.5, "equal", "inconclusive"),
    ],
)
def test_verdict_rule(lo, hi, claim, expected):
    ci = Interval((lo + hi) / 2, lo, hi, 1.0, 3)
    assert verdict(ci, claim, tolerance=1.0)[0] == expected


def test_verdict_without_ci_is_inconclusive_but_reports_the_point_estimate():
    holds, why = verdict(Interval(-3.0, math.nan, math.nan, math.nan, 1), "less")
    assert holds == "inconclusive" and "agrees" in why
    holds, why = verdict(Interval(3.0, math.nan, math.nan, math.nan, 1), "less")
    assert holds == "inconclusive" and "disagrees" in why
    assert verdict(Interval(math.nan, math.nan, math.nan, math.nan, 0), "less")[0] == "not measured"
