"""Mean ± standard deviation over seeds, and the difference of two conditions with Welch's t-test.

The seeds of a condition are independent runs; two conditions may differ in their spread, so the
comparison is Welch's unequal-variance t-test (scipy), and the 95% confidence interval of the
difference of means is t-based with the Welch–Satterthwaite degrees of freedom (the interval scipy
reports for the same test).
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

__all__ = ["Spread", "Comparison", "Interval", "spread", "compare", "ALPHA", "LAST_K", "POWER", "SLOPE_K", "last_mean",
           "pooled_sd", "min_detectable_difference", "seeds_for_half_width", "sd_upper_bound", "verdict", "slope",
           "mean_interval", "end_slope"]

ALPHA = 0.05


@dataclass(frozen=True)
class Spread:
    n: int
    mean: Optional[float]
    sd: Optional[float]          # sample standard deviation (n - 1); None for fewer than two values


@dataclass(frozen=True)
class Comparison:
    """``a - b``: the difference of means, its 95% confidence interval, Welch's t, dof and p."""
    diff: float
    low: float
    high: float
    t: float
    dof: float
    p: float

    @property
    def significant(self) -> bool:
        return self.p < ALPHA


def spread(xs: Sequence[float]) -> Spread:
    xs = [float(x) for x in xs]
    if not xs:
        return Spread(0, None, None)
    return Spread(len(xs), statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None)


def compare(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Optional[Comparison]:
    """Welch's t-test of ``a`` against ``b``; None when it is undefined (fewer than two values in a group,
    or no spread in either)."""
    from scipy import stats
    if len(a) < 2 or len(b) < 2:
        return None
    with warnings.catch_warnings():   # identical values: scipy warns and returns NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(list(a), list(b), equal_var=False)
        ci = res.confidence_interval(confidence)
    if not math.isfinite(res.pvalue):
        return None
    return Comparison(statistics.fmean(a) - statistics.fmean(b), float(ci.low), float(ci.high),
                      float(res.statistic), float(res.df), float(res.pvalue))


# ------------------------------------------------------------------------ the primary metric, power

LAST_K = 5
POWER = 0.8


def last_mean(curve: Sequence[float], k: int = LAST_K) -> Optional[float]:
    """The mean of the last ``k`` values of a per-epoch curve (all of them when it is shorter); None when empty.

    Constant-lr Adam moves test accuracy by points from one epoch to the next, so one epoch is a noisy
    snapshot of where a run ended; the mean of its last epochs is the declared primary metric.
    """
    xs = [float(x) for x in curve][-k:]
    return statistics.fmean(xs) if xs else None


def pooled_sd(*groups: Sequence[float]) -> Optional[float]:
    """The pooled sample standard deviation of groups assumed to share one variance (None without any df)."""
    ss = sum(sum((x - statistics.fmean(g)) ** 2 for x in g) for g in groups if len(g) > 1)
    df = sum(len(g) - 1 for g in groups if len(g) > 1)
    return math.sqrt(ss / df) if df > 0 else None


def min_detectable_difference(sd: float, n_a: int, n_b: int, power: float = POWER, alpha: float = ALPHA) -> float:
    """The smallest true difference of means a two-sided two-sample t-test detects with probability ``power``.

    Exact for the pooled-variance t-test with ``n_a + n_b - 2`` degrees of freedom: the difference
    ``delta`` solves ``P(|T| > t_{1-alpha/2}) = power`` where ``T`` is noncentral t with noncentrality
    ``delta / (sd sqrt(1/n_a + 1/n_b))``. For large samples it tends to the textbook
    ``(z_{1-alpha/2} + z_power) sd sqrt(1/n_a + 1/n_b)``: 64 seeds per arm detect 0.5 sd (Cohen 1988).
    """
    from scipy import optimize, stats
    df = n_a + n_b - 2
    if df < 1 or sd <= 0:
        raise ValueError(f"needs n_a + n_b > 2 and sd > 0, got {n_a}, {n_b}, {sd}")
    crit = stats.t.ppf(1 - alpha / 2, df)
    scale = sd * math.sqrt(1 / n_a + 1 / n_b)

    def shortfall(delta):
        nc = delta / scale
        # P(T < -crit) written as the upper tail of -T: scipy's nct.cdf far in the tail returns NaN.
        return stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc) - power

    # At noncentrality crit + 8 the power is above 0.99 for any df >= 1: the root lies below it.
    return float(optimize.brentq(shortfall, 1e-9 * scale, (crit + 8) * scale, xtol=1e-12 * scale))


def seeds_for_half_width(sd: float, half_width: float, confidence: float = 0.95, most: int = 100) -> int:
    """Seeds per arm such that the t interval of a difference of two arms with standard deviation ``sd`` and
    equal seeds (df = 2n - 2, the Welch df at equal sd) is at most ``half_width`` on either side."""
    from scipy import stats
    for n in range(2, most + 1):
        if stats.t.ppf(0.5 + confidence / 2, 2 * n - 2) * sd * math.sqrt(2 / n) <= half_width:
            return n
    raise ValueError(f"more than {most} seeds per arm for a half-width of {half_width} at sd {sd}")


def sd_upper_bound(sd: float, df: int, level: float = 0.9) -> float:
    """One-sided upper confidence bound of a standard deviation estimated with ``df`` degrees of freedom
    (chi-square): three seeds say little about the spread, so a plan assumes the larger value."""
    from scipy import stats
    return sd * math.sqrt(df / stats.chi2.ppf(1 - level, df))


def verdict(c: Optional[Comparison], margin: float) -> str:
    """The generated word for a difference: ``helps`` / ``hurts`` (p < ALPHA), ``no effect larger than X``
    (the whole 95% CI inside ±``margin``), else ``inconclusive``; None (too few seeds): ``no answer yet``."""
    if c is None:
        return "no answer yet"
    if c.significant:
        return "helps" if c.diff > 0 else "hurts"
    if -margin <= c.low and c.high <= margin:
        return f"no effect larger than {100 * margin:g} points"
    return "inconclusive"


# ------------------------------------------------------------------- is a curve still rising at its end?

SLOPE_K = 10


@dataclass(frozen=True)
class Interval:
    """A mean over seeds and its t-based confidence interval (bounds None with fewer than two values)."""
    n: int
    mean: Optional[float]
    low: Optional[float]
    high: Optional[float]

    @property
    def rises(self) -> Optional[bool]:
        """True when the whole interval lies above 0; None when there is no interval."""
        return None if self.low is None else self.low > 0


def slope(points: Sequence[tuple]) -> Optional[float]:
    """The least-squares slope of ``(x, y)`` points; None with fewer than two distinct x."""
    xs, ys = [float(x) for x, _ in points], [float(y) for _, y in points]
    if len(set(xs)) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def mean_interval(xs: Sequence[float], confidence: float = 0.95) -> Interval:
    """The mean of ``xs`` with its t interval (n - 1 degrees of freedom)."""
    from scipy import stats
    s = spread(xs)
    if s.sd is None:
        return Interval(s.n, s.mean, None, None)
    half = float(stats.t.ppf(0.5 + confidence / 2, s.n - 1)) * s.sd / math.sqrt(s.n)
    return Interval(s.n, s.mean, s.mean - half, s.mean + half)


def end_slope(curves: Sequence[Sequence[tuple]], k: int = SLOPE_K) -> Interval:
    """Per seed, the least-squares slope of its last ``k`` (epoch, accuracy) points; over seeds, their mean and
    95% t interval. A curve whose interval lies above 0 is still rising when the run stops: a gap measured
    there may yet close, so it does not show that one arm ends lower."""
    return mean_interval([s for c in curves if (s := slope(list(c)[-k:])) is not None])
