"""Agreement on an ordinal scale, with percentile bootstrap intervals.

For paired scores (a judge against the human consensus, one human against another) on a scale
(:class:`judge_assets.core.scales.OrdinalScale`):

=====================  ======================================================================
metric                 meaning
=====================  ======================================================================
``weighted_kappa``     Cohen's kappa with quadratic weights (scikit-learn), on the class codes
``spearman``           Spearman rank correlation (scipy)
``pearson``            Pearson correlation (scipy)
``mae``                mean absolute difference, in scale units
``exact_agreement``    share of pairs with the same score
``within_one``         share of pairs at most one scale step apart
=====================  ======================================================================

Fractional scores (an LLM's expected score) are allowed in every metric but kappa and exact
agreement, which use the scores rounded to the nearest class. Intervals: ``n_boot`` resamples of
the pairs (seeded), 2.5th and 97.5th percentiles; NaN where a resample is degenerate (constant).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from judge_assets.core.scales import OrdinalScale

METRICS = ("weighted_kappa", "spearman", "pearson", "mae", "exact_agreement", "within_one")


def _nearest_code(scores: np.ndarray, scale: OrdinalScale) -> np.ndarray:
    values = scale.value_array
    return np.abs(scores[:, None] - values[None, :]).argmin(axis=1)


def quadratic_kappa(codes_a: np.ndarray, codes_b: np.ndarray, k: int) -> float:
    """Cohen's kappa with quadratic weights on class codes in ``[0, k)`` (equals scikit-learn's
    ``cohen_kappa_score(..., weights="quadratic")``; NaN when the expected disagreement is 0)."""
    observed = np.zeros((k, k))
    np.add.at(observed, (codes_a, codes_b), 1.0)
    observed /= observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    grid = np.arange(k)
    weights = (grid[:, None] - grid[None, :]) ** 2
    denominator = float((weights * expected).sum())
    return 1.0 - float((weights * observed).sum()) / denominator if denominator > 0 else float("nan")


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    da, db = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((da * da).sum() * (db * db).sum()))
    return float((da * db).sum()) / denominator if denominator > 0 else float("nan")


def ordinal_metrics(y_true: np.ndarray, y_pred: np.ndarray, scale: OrdinalScale) -> dict[str, float]:
    """The metrics of the module docstring for paired scores ``y_true``, ``y_pred`` (shape (N,), scale values).

    Computed with numpy so the bootstrap stays fast; the tests check each against scikit-learn
    (kappa) and scipy (Spearman, Pearson)."""
    from scipy.stats import rankdata

    a, b = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if len(a) != len(b):
        raise ValueError("y_true and y_pred must have the same length")
    out = dict.fromkeys(METRICS, np.nan)
    if len(a) == 0:
        return out
    step = float(np.min(np.diff(scale.value_array)))
    out["mae"] = float(np.mean(np.abs(a - b)))
    out["within_one"] = float(np.mean(np.abs(a - b) <= step + 1e-9))
    ca, cb = _nearest_code(a, scale), _nearest_code(b, scale)
    out["exact_agreement"] = float(np.mean(ca == cb))
    out["weighted_kappa"] = quadratic_kappa(ca, cb, len(scale.values))
    out["pearson"] = _pearson(a, b)
    out["spearman"] = _pearson(rankdata(a), rankdata(b))
    return out


def ordinal_agreement(
    y_true: np.ndarray, y_pred: np.ndarray, scale: OrdinalScale, *, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """One row per metric: ``metric``, ``value``, ``ci_low``, ``ci_high`` (95% percentile bootstrap), ``n``."""
    a, b = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    point = ordinal_metrics(a, b, scale)
    rng = np.random.default_rng(seed)
    draws = {m: [] for m in METRICS}
    if len(a) > 1:
        for _ in range(n_boot):
            idx = rng.integers(0, len(a), len(a))
            for metric, value in ordinal_metrics(a[idx], b[idx], scale).items():
                draws[metric].append(value)
    rows = []
    for metric in METRICS:
        sample = np.asarray(draws[metric], dtype=float)
        sample = sample[~np.isnan(sample)]
        low, high = (np.percentile(sample, [2.5, 97.5]) if len(sample) else (np.nan, np.nan))
        rows.append({"metric": metric, "value": point[metric], "ci_low": float(low), "ci_high": float(high), "n": len(a)})
    return pd.DataFrame(rows)
