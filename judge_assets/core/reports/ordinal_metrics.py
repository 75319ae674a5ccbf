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


#: Columns of the ``ordinal_agreement`` table.
AGREEMENT_COLUMNS = ("judge", "judge_kind", "score", "reference", "scope", "category", "metric", "value", "ci_low", "ci_high", "n")


def _scoped(pairs: pd.DataFrame, scale: OrdinalScale, head: dict, n_boot: int, seed: int) -> list[dict]:
    """Rows of every metric for ``pairs`` (``y_true, y_pred, category``) overall and per category."""
    rows = []
    scopes = [("all", None, pairs)] + [
        ("category", str(c), part) for c, part in pairs.dropna(subset=["category"]).groupby("category", sort=True)
    ]
    for scope, category, part in scopes:
        table = ordinal_agreement(part["y_true"].to_numpy(), part["y_pred"].to_numpy(), scale, n_boot=n_boot, seed=seed)
        for rec in table.to_dict("records"):
            rows.append({**head, "scope": scope, "category": category, **rec})
    return rows


def human_vote_pairs(judgments: pd.DataFrame, scale: OrdinalScale) -> pd.DataFrame:
    """Every pair of human votes on the same item (annotators in name order): ``item_id, category, y_true, y_pred``."""
    humans = judgments[judgments["annotator_kind"] == "human"].copy()
    humans["value"] = humans["label"].map(dict(zip(scale.labels, scale.values)))
    if "category" not in humans.columns:
        humans["category"] = None
    pairs = humans.merge(humans, on="item_id", suffixes=("_1", "_2"))
    pairs = pairs[pairs["annotator_1"] < pairs["annotator_2"]]
    return pd.DataFrame({"item_id": pairs["item_id"], "category": pairs["category_1"],
                         "y_true": pairs["value_1"], "y_pred": pairs["value_2"]}).reset_index(drop=True)


def ordinal_agreement_table(
    judgments: pd.DataFrame,
    human_consensus: pd.DataFrame,
    scale: OrdinalScale,
    llm_scores: pd.DataFrame | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """The ``ordinal_agreement`` table: agreement on the scale, with 95% bootstrap intervals.

    - every LLM judge against the humans-only ordinal consensus: annotators of kind ``llm`` in
      ``judgments`` with their vote (``score = 'vote'``), and LLM panel judges of
      ``llm_scores`` (``item_id, annotator, expected_score``, expected score on ranks 1..K of the
      scale) with their expected score (``score = 'expected_score'``);
    - ``human`` against ``human`` (``reference = 'human_votes'``): every pair of human votes on an item.

    ``human_consensus``: ``item_id, human_ordinal_consensus`` (items without human votes: NaN,
    left out); ``judgments``: ``item_id, annotator, annotator_kind, label[, category]``. One row
    per (judge, reference, scope, category, metric) with :data:`AGREEMENT_COLUMNS`; ``scope`` is
    ``all`` (``category`` NULL) or ``category``.
    """
    values = dict(zip(scale.labels, scale.values))
    truth = human_consensus.dropna(subset=["human_ordinal_consensus"]).set_index("item_id")["human_ordinal_consensus"]
    category = judgments.groupby("item_id")["category"].first() if "category" in judgments.columns else pd.Series(dtype=object)
    rows: list[dict] = []
    judged = []
    llm_votes = judgments[judgments["annotator_kind"] == "llm"]
    for annotator, part in llm_votes.groupby("annotator", sort=True):
        judged.append((annotator, "vote", part["item_id"], part["label"].map(values)))
    if llm_scores is not None and len(llm_scores):
        ranks = np.arange(1, len(scale.values) + 1, dtype=float)
        for annotator, part in llm_scores.dropna(subset=["expected_score"]).groupby("annotator", sort=True):
            judged.append((annotator, "expected_score", part["item_id"], pd.Series(np.interp(part["expected_score"], ranks, scale.value_array), index=part.index)))
    for annotator, score, item_ids, predicted in judged:
        pairs = pd.DataFrame({"item_id": item_ids.to_numpy(), "y_pred": predicted.to_numpy(dtype=float)})
        pairs["y_true"] = pairs["item_id"].map(truth)
        pairs["category"] = pairs["item_id"].map(category)
        pairs = pairs.dropna(subset=["y_true", "y_pred"])
        if len(pairs):
            head = {"judge": annotator, "judge_kind": "llm", "score": score, "reference": "human_consensus"}
            rows += _scoped(pairs, scale, head, n_boot, seed)
    pairs = human_vote_pairs(judgments, scale)
    if len(pairs):
        rows += _scoped(pairs, scale, {"judge": "human", "judge_kind": "human", "score": "vote", "reference": "human_votes"}, n_boot, seed)
    out = pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))
    out["n"] = out["n"].astype("int64")
    return out


def per_order_expected_scores(cache: pd.DataFrame, judges: dict) -> pd.DataFrame:
    """Expected score (ranks 1..K, canonical orientation) of every answered order of an ordinal judge.

    ``cache``: rows of ``llm_score_cache`` (``item_id, judge, model, swapped, status,
    top_logprobs_json``, the latest per order); ``judges``: name → :class:`JudgeSpec` of the ordinal
    judges. Returns ``annotator`` (``<judge>:<model>``), ``item_id``, ``swapped``, ``expected_score``."""
    import json

    from judge_assets.core.scoring.llm_judge.prompts import map_top_logprobs

    rows = []
    for rec in cache.to_dict("records"):
        spec = judges.get(rec["judge"])
        if spec is None or rec["status"] != "ok" or not rec["top_logprobs_json"]:
            continue
        mapped = map_top_logprobs(json.loads(rec["top_logprobs_json"]), spec, bool(rec["swapped"]))
        if mapped.probs is None:
            continue
        expected = float(np.dot(np.arange(1, len(spec.labels) + 1), mapped.probs))
        rows.append((f"{rec['judge']}:{rec['model']}", str(rec["item_id"]), bool(rec["swapped"]), expected))
    return pd.DataFrame(rows, columns=["annotator", "item_id", "swapped", "expected_score"])


def swap_shift(per_order: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean rating shift when the answer order is swapped, per LLM judge.

    ``per_order``: ``annotator, item_id, swapped, expected_score`` (canonical orientation: the
    score of the same comparison, whichever answer was shown first). For items scored in both
    orders, ``shift = score(swapped) − score(as stored)``: on a scale whose low end favours A, a
    judge that prefers the answer shown first scores lower when A is first and higher when B is
    first, so a positive mean shift is a first-position bias (0 = none). Columns ``judge,
    mean_shift, ci_low, ci_high`` (95% bootstrap over items), ``mean_score_ab, mean_score_ba, n``."""
    rows = []
    for annotator, part in per_order.groupby("annotator", sort=True):
        wide = part.pivot_table(index="item_id", columns="swapped", values="expected_score", aggfunc="last")
        if False not in wide.columns or True not in wide.columns:
            continue
        wide = wide.dropna(subset=[False, True])
        if wide.empty:
            continue
        shift = (wide[True] - wide[False]).to_numpy()
        rng = np.random.default_rng(seed)
        boots = shift[rng.integers(0, len(shift), (n_boot, len(shift)))].mean(axis=1) if len(shift) > 1 else np.array([np.nan])
        low, high = np.nanpercentile(boots, [2.5, 97.5]) if len(shift) > 1 else (np.nan, np.nan)
        rows.append({"judge": annotator, "mean_shift": float(shift.mean()), "ci_low": float(low), "ci_high": float(high),
                     "mean_score_ab": float(wide[False].mean()), "mean_score_ba": float(wide[True].mean()), "n": len(shift)})
    return pd.DataFrame(rows, columns=["judge", "mean_shift", "ci_low", "ci_high", "mean_score_ab", "mean_score_ba", "n"])
