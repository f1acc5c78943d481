"""Statistics over runs (one value per seed), as rliable computes them for RL results.

A learning claim is a distribution over seeds: the unit of resampling is the run, never the
episode (episodes of one run are not independent draws of what a user gets from a new seed).
``bootstrap_interval`` resamples runs with replacement; the interquartile mean (IQM) is the mean
of the middle half of the runs, robust to one collapsed seed yet not blind to it like a median.
rliable's stratified bootstrap resamples runs within each task; with one task, that is this.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% of ``values`` (all of them below 4)."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    cut = len(ordered) // 4
    return float(ordered[cut : len(ordered) - cut].mean())


def bootstrap_interval(
    runs: Sequence,
    statistic: Callable[[Sequence], float],
    confidence: float = 0.95,
    resamples: int = 5000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """The percentile-bootstrap interval of ``statistic`` over ``runs``, resampled whole.

    None for fewer than two runs: one run has no spread to resample, and an interval of
    ``[x, x]`` would claim a certainty that one seed cannot give. Resamples where ``statistic``
    is NaN (undefined for them) are left out; None when it is NaN for all of them.
    """
    if len(runs) < 2:
        return None
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(runs), size=(resamples, len(runs)))
    values = np.array([statistic([runs[i] for i in pick]) for pick in picks], dtype=np.float64)
    values = values[~np.isnan(values)]
    if not len(values):  # e.g. a share of post-solve evaluations where no run solved
        return None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
