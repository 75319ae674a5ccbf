"""Bradley-Terry model leaderboard with bootstrap intervals, from consensus labels and raw votes.

Each comparison is one judged item (or one vote) between ``model_a`` and ``model_b`` with
outcome ``A`` (model_a better), ``B`` (model_b better) or ``tie``. Bradley-Terry models
``P(a beats b) = 1 / (1 + exp(-(r_a - r_b)))``; a tie counts as half a win for each side.
The log-strengths ``r`` maximise the log-likelihood minus a very light L2 penalty
(``l2 / 2 * sum(r**2)``, in units of comparisons) that only keeps ratings finite when a model
wins or loses all its comparisons and fixes the free shift at mean zero.

Ratings are Elo-scaled: ``rating = 1000 + 400 * log10(e) * (r - mean(r))``, so the mean
rating of the models in a leaderboard is 1000 and 400 points are 10:1 odds. The 95% intervals
are percentile bootstrap intervals: the comparisons are resampled with replacement
``n_bootstrap`` times and every resample is refitted. Resampling n comparisons with replacement is
a multinomial draw of n over the distinct (pair, outcome) cells with their observed shares, so the
fit never sees single votes: DuckDB counts the comparisons per cell (:func:`comparison_counts`)
and the bootstrap draws the cell counts, which costs the same at 5K or 10M votes. All resamples
are fitted at once by Newton's method, each resample its own small M×M system per step
(:func:`fit_log_strengths`).

On a **pairwise ordinal scale** (``JUDGE_LABELS=1..8`` with ``JUDGE_SCALE_ENDS``) a rating is
mapped to an outcome by :meth:`judge_assets.core.scales.OrdinalScale.outcome`, twice: without
ties (1–4 → A, 5–8 → B) and with ties (4 and 5 → tie), so the leaderboard has both
(``ties`` = false / true). The consensus source then reads the ordinal consensus
(``ordinal_consensus_labels``) when it exists, and the llm source adds every LLM panel judge on
the scale by its expected score (a fractional score maps by the same cut points). Every row carries the bootstrap median beside the
2.5/97.5 percentiles, as the Hugging Face study of LLM judges on Likert scales reports them.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import scipy.sparse as sp

from judge_assets.core.db import table_columns, table_exists
from judge_assets.core.labels import stored_label_set

OUTCOME_SCORE = {"A": 1.0, "B": 0.0, "tie": 0.5}
ELO_BASE_RATING = 1000.0
ELO_SCALE = 400.0 / np.log(10.0)
SOURCES = ("consensus", "human", "llm")


def _objective(strengths: np.ndarray, n: np.ndarray, w: np.ndarray, design: np.ndarray, l2: float) -> np.ndarray:
    """Penalized negative log-likelihood of each fit, shape (B,), for ``strengths`` shape (B, M)."""
    diff = strengths @ design.T
    # -log sigmoid(d) = logaddexp(0, -d); -log(1 - sigmoid(d)) = logaddexp(0, d)
    return (w * np.logaddexp(0.0, -diff) + (n - w) * np.logaddexp(0.0, diff)).sum(axis=1) + 0.5 * l2 * np.square(strengths).sum(axis=1)


def fit_log_strengths(n: np.ndarray, w: np.ndarray, first: np.ndarray, second: np.ndarray, n_models: int, l2: float,
                      *, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """Bradley-Terry log-strengths for each row of ``n``/``w``: B independent fits by Newton's method.

    The penalized log-likelihood is strictly concave, so every fit has one optimum; each Newton
    step solves the fit's own M×M system (gradient and Hessian from the C cells), halving the step
    of a fit whose objective would rise. It stops when no strength moves by more than ``tol``
    (about 6 iterations on MT-Bench). Memory is O(B·(C + M²)).

    Parameters
    ----------
    n, w : np.ndarray, shape (B, C)
        Per fit ``b`` and cell ``c``: number of comparisons, and wins of model ``first[c]``
        over ``second[c]`` (ties add 0.5).
    first, second : np.ndarray, shape (C,), int
        Model indices of each cell.
    n_models : int
        M, the number of models.
    l2 : float
        Ridge penalty in comparison units (positive: it keeps the Hessian invertible).

    Returns
    -------
    np.ndarray, shape (B, M)
        Natural-log strengths, mean zero per row.
    """
    n_cells = len(first)
    cells = np.arange(n_cells)
    design = np.zeros((n_cells, n_models))
    design[cells, first] = 1.0
    design[cells, second] = -1.0
    # A cell's curvature h adds h·(e_first − e_second)(e_first − e_second)ᵀ to the Hessian: a
    # sparse (C, M²) scatter from per-cell curvatures to the flattened M×M matrix.
    scatter = sp.csr_matrix((
        np.tile([1.0, 1.0, -1.0, -1.0], n_cells),
        (np.repeat(cells, 4), np.column_stack([first * n_models + first, second * n_models + second,
                                               first * n_models + second, second * n_models + first]).ravel()),
    ), shape=(n_cells, n_models * n_models))
    ridge = l2 * np.eye(n_models)
    strengths = np.zeros((n.shape[0], n_models))
    current = _objective(strengths, n, w, design, l2)
    for _ in range(max_iter):
        p = 0.5 * (1.0 + np.tanh(0.5 * (strengths @ design.T)))  # sigmoid, without overflow
        grad = (n * p - w) @ design + l2 * strengths
        hess = (scatter.T @ (n * p * (1.0 - p)).T).T.reshape(-1, n_models, n_models) + ridge
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        scale = np.ones(len(step))
        for _ in range(50):
            trial = strengths - scale[:, None] * step
            value = _objective(trial, n, w, design, l2)
            worse = value > current + 1e-12 * np.abs(current)
            if not worse.any():
                break
            scale = np.where(worse, scale / 2.0, scale)
        strengths, current = trial, value
        if np.abs(scale[:, None] * step).max() <= tol:
            break
    return strengths - strengths.mean(axis=1, keepdims=True)


class BradleyTerry:
    """Bradley-Terry ratings (Elo scale) with percentile-bootstrap intervals.

    Parameters
    ----------
    n_bootstrap : int
        Number of bootstrap resamples of the comparisons (default 1000).
    confidence : float
        Interval coverage (default 0.95).
    l2 : float
        Ridge penalty on log-strengths, in comparison units (default 0.01: negligible
        against hundreds of comparisons).
    seed : int
        Seed of the resampling.

    Attributes (after :meth:`fit`)
    ------------------------------
    models_ : np.ndarray, shape (M,), object
        Model names, sorted.
    ratings_ : np.ndarray, shape (M,)
        Elo-scaled ratings (mean 1000).
    ci_low_, ci_high_ : np.ndarray, shape (M,)
        Bootstrap interval bounds of each rating.
    bootstrap_ratings_ : np.ndarray, shape (n_bootstrap, M)
        The refitted ratings of every resample.
    n_comparisons_ : np.ndarray, shape (M,), int
        Comparisons each model took part in.
    """

    def __init__(self, n_bootstrap: int = 1000, confidence: float = 0.95, l2: float = 0.01, seed: int = 0):
        if n_bootstrap < 1:
            raise ValueError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
        if l2 <= 0:
            raise ValueError(f"l2 must be positive (it keeps ratings finite), got {l2}")
        self.n_bootstrap = n_bootstrap
        self.confidence = confidence
        self.l2 = l2
        self.seed = seed

    def fit(self, model_a, model_b, outcome, count=None) -> "BradleyTerry":
        """Fit on comparisons.

        ``model_a``, ``model_b``: shape (n,) model names; ``outcome``: shape (n,) ``A`` (model_a
        better), ``B`` (model_b better) or ``tie``; ``count``: shape (n,) how many comparisons each
        row stands for (positive integers; default one each), so aggregated counts fit as cheaply
        as a few rows.
        """
        a = pd.Series(np.asarray(model_a, dtype=object))
        b = pd.Series(np.asarray(model_b, dtype=object))
        out = pd.Series(np.asarray(outcome, dtype=object))
        weight = np.ones(len(a), dtype=np.int64) if count is None else np.asarray(count, dtype=np.int64)
        if not len(a) == len(b) == len(out) == len(weight):
            raise ValueError(f"model_a, model_b, outcome and count differ in length: {len(a)}, {len(b)}, {len(out)}, {len(weight)}")
        if len(a) == 0:
            raise ValueError("no comparisons to fit")
        if (weight < 1).any():
            raise ValueError("count must be a positive integer for every row")
        if a.isna().any() or b.isna().any():
            raise ValueError("model_a and model_b must not be missing")
        bad = sorted(set(out.dropna().astype(str)) - set(OUTCOME_SCORE)) + (["<missing>"] if out.isna().any() else [])
        if bad:
            raise ValueError(f"outcomes must be one of {sorted(OUTCOME_SCORE)}; found {bad}")
        same = a == b
        if same.any():
            raise ValueError(f"a model cannot be compared with itself: {a[same].iloc[0]!r}")

        models = np.array(sorted(set(a) | set(b)), dtype=object)
        index = {m: k for k, m in enumerate(models)}
        ia, ib = a.map(index).to_numpy(), b.map(index).to_numpy()
        score = out.map(OUTCOME_SCORE).to_numpy(dtype=float)
        # Canonical cell (first < second, score from the first model's side), cells in sorted order.
        flip = ia > ib
        first, second = np.where(flip, ib, ia), np.where(flip, ia, ib)
        score = np.where(flip, 1.0 - score, score)
        cell_key = (first * len(models) + second) * 3 + (2 * score).astype(np.int64)
        keys, cell_of_row = np.unique(cell_key, return_inverse=True)
        counts = np.bincount(cell_of_row, weights=weight).astype(float)
        cell_first, cell_second = keys // 3 // len(models), keys // 3 % len(models)
        cell_score = (keys % 3) / 2.0
        n_total = int(counts.sum())

        rng = np.random.default_rng(self.seed)
        resampled = rng.multinomial(n_total, counts / n_total, size=self.n_bootstrap).astype(float)
        n = np.vstack([counts, resampled])
        strengths = fit_log_strengths(n, n * cell_score, cell_first, cell_second, len(models), self.l2)
        ratings = ELO_BASE_RATING + ELO_SCALE * strengths

        tail = (1.0 - self.confidence) / 2.0
        self.models_ = models
        self.ratings_ = ratings[0]
        self.bootstrap_ratings_ = ratings[1:]
        self.ci_low_ = np.quantile(ratings[1:], tail, axis=0)
        self.ci_high_ = np.quantile(ratings[1:], 1.0 - tail, axis=0)
        self.n_comparisons_ = np.bincount(np.concatenate([ia, ib]), weights=np.concatenate([weight, weight]), minlength=len(models)).astype(np.int64)
        return self

    def to_frame(self) -> pd.DataFrame:
        """``model, rating, median, ci_low, ci_high, rank, n_comparisons``, best first (rank 1);
        ``median``: the median of the bootstrap ratings."""
        frame = pd.DataFrame(
            {
                "model": self.models_,
                "rating": self.ratings_,
                "median": np.median(self.bootstrap_ratings_, axis=0),
                "ci_low": self.ci_low_,
                "ci_high": self.ci_high_,
                "n_comparisons": self.n_comparisons_,
            }
        )
        frame.insert(5, "rank", frame["rating"].rank(ascending=False, method="min").astype(int))
        return frame.sort_values(["rank", "model"]).reset_index(drop=True)


def _scale_outcome_sql(value: str, scale, ties: bool) -> str:
    """SQL mapping the numeric ``value`` to A / B / tie by :meth:`OrdinalScale.outcome` (the same cut points)."""
    k = len(scale.values)
    lo_mid, hi_mid = scale.values[(k - 1) // 2], scale.values[k // 2]
    low, high = scale.low_favours, "B" if scale.low_favours == "A" else "A"
    below, above = (lo_mid, hi_mid) if ties else ((lo_mid + hi_mid) / 2,) * 2
    return f"CASE WHEN {value} < {below!r} THEN '{low}' WHEN {value} > {above!r} THEN '{high}' ELSE 'tie' END"


def _scale_counts(con: duckdb.DuckDBPyConnection, scale) -> pd.DataFrame:
    """:func:`comparison_counts` on a pairwise scale: every rating mapped to an outcome with and without ties."""
    values = "(SELECT label, value FROM label_set)"
    if table_exists(con, "ordinal_consensus_labels") and {"model_a", "model_b"} <= set(table_columns(con, "ordinal_consensus_labels")):
        consensus = "SELECT model_a, model_b, ordinal_consensus AS value FROM ordinal_consensus_labels WHERE ordinal_consensus IS NOT NULL"
    else:
        consensus = f"SELECT c.model_a, c.model_b, v.value FROM consensus_labels c JOIN {values} v ON v.label = c.consensus_label"
    rated = (
        f"SELECT 'consensus' AS source, model_a, model_b, value FROM ({consensus}) UNION ALL "
        f"SELECT j.annotator_kind, j.model_a, j.model_b, v.value FROM judgments j JOIN {values} v ON v.label = j.label "
        "WHERE j.annotator_kind IN ('human', 'llm')"
    )
    if all(table_exists(con, t) for t in ("llm_judge_scores", "llm_judge_probs", "items")) and {"model_a", "model_b"} <= set(table_columns(con, "items")):
        # LLM panel judges on this scale (K labels, an expected score on ranks 1..K) count in the llm source by their expected score
        k, low, high = len(scale.values), scale.values[0], scale.values[-1]
        rated += (
            f" UNION ALL SELECT 'llm', i.model_a, i.model_b, {low!r} + (s.expected_score - 1) * {(high - low) / (k - 1)!r} "
            "FROM llm_judge_scores s JOIN items i USING (item_id) WHERE s.status = 'ok' AND s.expected_score IS NOT NULL "
            "AND s.annotator NOT IN (SELECT DISTINCT annotator FROM judgments) "
            f"AND (SELECT count(DISTINCT p.label) FROM llm_judge_probs p WHERE p.annotator = s.annotator) = {k}"
        )
    parts = [
        f"SELECT source, {str(ties).lower()} AS ties, model_a, model_b, {_scale_outcome_sql('value', scale, ties)} AS outcome, "
        f"count(*) AS n FROM ({rated}) WHERE model_a IS NOT NULL AND model_b IS NOT NULL GROUP BY ALL"
        for ties in (False, True)
    ]
    return con.execute(" UNION ALL ".join(parts) + " ORDER BY source, ties, model_a, model_b, outcome").df()


def comparison_counts(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Comparisons per leaderboard source, model pair (as recorded) and outcome, counted by DuckDB.

    Columns ``source, ties, model_a, model_b, outcome, n``; ``ties``: whether a tie is an
    outcome (always true for A/B/tie votes, which are counted as voted; a pairwise scale gives
    both, see the module docstring). ``consensus``: one comparison per item of
    ``consensus_labels`` (outcome ``consensus_label``); ``human`` / ``llm``: one per vote of
    ``judgments`` (``label``) by annotators of that ``annotator_kind``. Rows without both models
    (generic data) are left out, so such data gives no rows. The result has at most
    3 sources × pairs × outcomes rows, whatever the number of votes.
    """
    stored = stored_label_set(con, missing_ok=True)
    if stored is not None and stored.scale is not None and stored.scale.low_favours is not None:
        return _scale_counts(con, stored.scale)
    parts = []
    for table, outcome, source in (("consensus_labels", "consensus_label", "'consensus'"), ("judgments", "label", "annotator_kind")):
        present = table_columns(con, table)
        missing = sorted({"model_a", "model_b", outcome, *(["annotator_kind"] if table == "judgments" else [])} - set(present))
        if missing:
            raise ValueError(f"{table} lacks column(s) {missing} for the model leaderboard")
        keep = "" if table == "consensus_labels" else " AND annotator_kind IN ('human', 'llm')"
        parts.append(
            f"SELECT {source} AS source, true AS ties, model_a, model_b, {outcome} AS outcome, count(*) AS n FROM {table} "
            f"WHERE model_a IS NOT NULL AND model_b IS NOT NULL{keep} GROUP BY ALL"
        )
    return con.execute(" UNION ALL ".join(parts) + " ORDER BY source, model_a, model_b, outcome").df()


def model_leaderboard(counts: pd.DataFrame, *, n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Bradley-Terry leaderboards from consensus labels, human votes and LLM-judge votes.

    ``counts``: :func:`comparison_counts` (``source, [ties,] model_a, model_b, outcome, n``).
    Returns a long frame ``source, ties, model, rating, median, ci_low, ci_high, rank,
    n_comparisons`` with ``source`` in ``consensus | human | llm``, each (source, ties)'s rows
    best first (ties = false before true). Each (source, ties) is an independent fit (its own
    mean-1000 anchor); those without comparisons are left out, and no comparisons at all (e.g.
    a dataset without model pairs) give an empty frame.
    """
    if "ties" not in counts.columns:
        counts = counts.assign(ties=True)
    parts = []
    for source in SOURCES:
        for ties in (False, True):
            rows = counts[(counts["source"] == source) & (counts["ties"].astype(bool) == ties)]
            if rows.empty:
                continue
            fit = BradleyTerry(n_bootstrap=n_bootstrap, seed=seed).fit(rows["model_a"], rows["model_b"], rows["outcome"], rows["n"])
            frame = fit.to_frame()
            frame.insert(0, "source", source)
            frame.insert(1, "ties", ties)
            parts.append(frame)
    if not parts:
        return pd.DataFrame(
            {
                "source": pd.Series(dtype=object),
                "ties": pd.Series(dtype=bool),
                "model": pd.Series(dtype=object),
                "rating": pd.Series(dtype=float),
                "median": pd.Series(dtype=float),
                "ci_low": pd.Series(dtype=float),
                "ci_high": pd.Series(dtype=float),
                "rank": pd.Series(dtype="int64"),
                "n_comparisons": pd.Series(dtype="int64"),
            }
        )
    return pd.concat(parts, ignore_index=True)
