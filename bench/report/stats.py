"""Statistics over seeds: mean, std, 95% confidence intervals, paired tests, Holm correction.

Cells of one dataset x split x seed share their backbone and data, so two methods are
compared *paired by seed*: the difference per seed, its mean, a Student t interval, a
paired t-test and, from 6 pairs on, a Wilcoxon signed-rank test. p-values of one table
are Holm-corrected together.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

LEVEL = 0.95
WILCOXON_MIN_N = 6  # below 6 pairs the exact two-sided Wilcoxon p cannot go under 0.05


@dataclass
class Summary:
    """mean, sample std (ddof 1), n and the half-width of the 95% Student t interval (nan for n < 2)."""

    mean: float
    std: float
    n: int
    ci95: float


def t_halfwidth(std: float, n: int, level: float = LEVEL) -> float:
    if n < 2 or not math.isfinite(std):
        return math.nan
    return float(sps.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))


def summarize(values) -> Summary | None:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return None
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return Summary(float(v.mean()), std, int(v.size), t_halfwidth(std, int(v.size)))


@dataclass
class Paired:
    """A method against the reference, paired by seed: mean difference (method - reference),
    its 95% CI half-width, n pairs, the paired t-test p-value and the Wilcoxon p (n >= 6)."""

    diff: float
    diff_ci95: float
    n: int
    p_value: float
    p_wilcoxon: float | None
    p_holm: float = math.nan

    @property
    def significant(self) -> bool:
        return math.isfinite(self.p_holm) and self.p_holm < 1 - LEVEL


def paired(method: dict[int, float], reference: dict[int, float]) -> Paired | None:
    """Paired comparison over the seeds both have (None when they share none)."""
    seeds = sorted(set(method) & set(reference))
    if not seeds:
        return None
    a = np.array([method[s] for s in seeds], dtype=float)
    b = np.array([reference[s] for s in seeds], dtype=float)
    d = a - b
    n = d.size
    std = float(d.std(ddof=1)) if n > 1 else 0.0
    p = math.nan
    if n > 1:
        if std == 0.0:
            p = 1.0 if d.mean() == 0 else 0.0  # every pair differs by the same amount: no noise at all
        else:
            p = float(sps.ttest_rel(a, b).pvalue)
    pw = None
    if n >= WILCOXON_MIN_N and np.any(d != 0):
        pw = float(sps.wilcoxon(a, b).pvalue)
    return Paired(float(d.mean()), t_halfwidth(std, n), n, p, pw)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (nan stays nan and is not counted)."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and math.isfinite(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    m = len(order)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out
