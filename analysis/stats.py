"""Means, 95% confidence intervals and the yes/no/inconclusive rule of the findings check.

Intervals are Student-t intervals over independent replicates (seeds x splits): ``mean +- t(0.975, n-1) *
sd / sqrt(n)`` with the sample sd (ddof=1). One replicate has no interval: its bounds are NaN and the tables
say so. Differences between two independent sets of replicates use Welch's interval (unequal variances).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as st

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float  # NaN with fewer than two replicates
    hi: float
    sd: float
    n: int  # replicates

    @property
    def half(self) -> float:
        return (self.hi - self.lo) / 2

    @property
    def has_ci(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))

    def text(self, digits: int = 2, signed: bool = False) -> str:
        """``98.10 [97.60, 98.60] (3 replicates)``; without a CI ``98.10 (1 replicate, no CI)``.
        (Not "n=3": in a transferability table n is the number of copied layers.)"""
        if math.isnan(self.mean):
            return "n/a"
        fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
        if not self.has_ci:
            return f"{fmt.format(self.mean)} ({self.n} replicate{'s' * (self.n != 1)}, no CI)"
        return f"{fmt.format(self.mean)} [{fmt.format(self.lo)}, {fmt.format(self.hi)}] ({self.n} replicates)"


def t_interval(values, confidence: float = CONFIDENCE) -> Interval:
    """Mean and t-interval of independent replicates; NaNs are not allowed (callers drop and count them)."""
    x = np.asarray(values, dtype=float)
    if np.isnan(x).any():
        raise ValueError("t_interval got NaN values; drop them first and say how many were dropped")
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, math.nan, 1)
    sd = float(x.std(ddof=1))
    half = float(st.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, sd, n)


def welch_interval(a, b, confidence: float = CONFIDENCE) -> Interval:
    """Interval of ``mean(a) - mean(b)`` for two independent samples (Welch-Satterthwaite degrees of freedom).
    ``sd`` holds the standard error of the difference; ``n`` the smaller sample size."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return Interval(diff, math.nan, math.nan, math.nan, min(len(a), len(b)))
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(diff, diff, diff, 0.0, min(len(a), len(b)))
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(st.t.ppf(0.5 + confidence / 2, df)) * se
    return Interval(diff, diff - half, diff + half, se, min(len(a), len(b)))


def summarize(frame: pd.DataFrame, by: list[str], value: str, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per group of ``by``: ``replicates``, ``mean``, ``sd``, ``ci_lo``, ``ci_hi``, ``ci_half`` of column ``value``
    (one value per replicate; average runs within a replicate before calling this)."""
    rows = []
    for keys, part in frame.groupby(by, sort=True, dropna=False):
        ci = t_interval(part[value].to_numpy(), confidence)
        keys = keys if isinstance(keys, tuple) else (keys,)
        rows.append(
            {
                **dict(zip(by, keys, strict=True)),
                "replicates": ci.n,
                "mean": ci.mean,
                "sd": ci.sd,
                "ci_lo": ci.lo,
                "ci_hi": ci.hi,
                "ci_half": ci.half,
            }
        )
    columns = [*by, "replicates", "mean", "sd", "ci_lo", "ci_hi", "ci_half"]
    return pd.DataFrame(rows, columns=columns)


# --- the verdict rule of the findings check --------------------------------------------------------------------
# Each finding is a claim about a difference d (percentage points) with a 95% CI:
#   "d < 0" (or "d > 0"): yes when the whole CI is below (above) 0; no when the whole CI is on the other side;
#                         inconclusive when the CI contains 0.
#   "d ~ 0":              yes when the whole CI lies inside [-tolerance, +tolerance]; no when the whole CI lies
#                         outside it (a difference larger than the tolerance, for sure); inconclusive otherwise.
# Without a CI (one replicate) every claim is inconclusive; the point estimate is still shown.


def verdict(ci: Interval, claim: str, tolerance: float = 1.0) -> tuple[str, str]:
    """(``yes`` | ``no`` | ``inconclusive``, why) for ``claim`` in ``less`` | ``greater`` | ``equal``."""
    if math.isnan(ci.mean):
        return "not measured", "the runs needed for this comparison are missing"
    if not ci.has_ci:
        point = _point_says(ci.mean, claim, tolerance)
        return "inconclusive", f"{ci.n} replicate: no CI (the point estimate alone {point})"
    if claim == "less":
        if ci.hi < 0:
            return "yes", "the whole CI is below 0"
        if ci.lo > 0:
            return "no", "the whole CI is above 0"
        return "inconclusive", "the CI contains 0"
    if claim == "greater":
        if ci.lo > 0:
            return "yes", "the whole CI is above 0"
        if ci.hi < 0:
            return "no", "the whole CI is below 0"
        return "inconclusive", "the CI contains 0"
    if claim == "equal":
        if -tolerance <= ci.lo and ci.hi <= tolerance:
            return "yes", f"the whole CI is within +-{tolerance:g} pts"
        if ci.hi < -tolerance or ci.lo > tolerance:
            return "no", f"the whole CI is beyond +-{tolerance:g} pts"
        return "inconclusive", f"the CI crosses +-{tolerance:g} pts"
    raise ValueError(f"claim={claim!r}: use less, greater or equal")


def _point_says(mean: float, claim: str, tolerance: float) -> str:
    holds = {"less": mean < 0, "greater": mean > 0, "equal": abs(mean) <= tolerance}[claim]
    return "agrees" if holds else "disagrees"
