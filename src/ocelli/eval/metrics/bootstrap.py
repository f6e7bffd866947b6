"""Paired bootstrap confidence interval of a difference between two runs.

Both runs scored the same units (questions, images); resampling the units with
replacement, the same draw for both runs, keeps the pairing, so the interval reflects
how much the difference depends on which units happened to be in the set. Seeded, so
the same inputs always give the same interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def paired_bootstrap(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Mean of A, mean of B, their difference B - A, its confidence interval, and the
    share of resamples in which B is not better than A (a one-sided p-value)."""
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"paired scores must be two equally long lists, got {a.shape} and {b.shape}"
        )
    if a.size == 0:
        raise ValueError("no paired scores to compare")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie between 0 and 1, got {confidence}")
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, a.size, size=(num_resamples, a.size))
    diffs = b[indices].mean(axis=1) - a[indices].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return {
        "mean_a": float(a.mean()),
        "mean_b": float(b.mean()),
        "diff": float(b.mean() - a.mean()),
        "ci_low": float(low),
        "ci_high": float(high),
        "p_b_not_better": float((diffs <= 0).mean()),
        "num_units": int(a.size),
    }
