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

__all__ = ["Spread", "Comparison", "spread", "compare", "ALPHA"]

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
