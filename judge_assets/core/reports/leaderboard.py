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
``n_bootstrap`` times (a multinomial draw over distinct (pair, outcome) cells, which is the
same distribution) and every resample is refitted; all resamples are fitted together as one
separable problem with ``scipy.optimize.minimize`` (L-BFGS-B, analytic gradient).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize

OUTCOME_SCORE = {"A": 1.0, "B": 0.0, "tie": 0.5}
ELO_BASE_RATING = 1000.0
ELO_SCALE = 400.0 / np.log(10.0)
SOURCES = ("consensus", "human", "llm")


def _neg_log_likelihood(flat: np.ndarray, n: np.ndarray, w: np.ndarray, design: np.ndarray, l2: float, norm: float):
    """Objective and gradient for ``B`` independent fits at once.

    ``flat``: shape (B * M,) log-strengths; ``n``, ``w``: shape (B, C) comparisons and wins of
    the cell's first model; ``design``: shape (C, M), +1 at the first and -1 at the second
    model of each cell. Divided by ``norm`` (comparisons per fit) to keep it well scaled.
    """
    strengths = flat.reshape(n.shape[0], design.shape[1])
    diff = strengths @ design.T
    # -log sigmoid(d) = logaddexp(0, -d); -log(1 - sigmoid(d)) = logaddexp(0, d)
    loss = (w * np.logaddexp(0.0, -diff) + (n - w) * np.logaddexp(0.0, diff)).sum()
    loss += 0.5 * l2 * np.square(strengths).sum()
    grad_diff = n / (1.0 + np.exp(-diff)) - w
    grad = grad_diff @ design + l2 * strengths
    return loss / norm, grad.ravel() / norm


def fit_log_strengths(n: np.ndarray, w: np.ndarray, first: np.ndarray, second: np.ndarray, n_models: int, l2: float) -> np.ndarray:
    """Bradley-Terry log-strengths for each row of ``n``/``w``.

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
        Ridge penalty in comparison units.

    Returns
    -------
    np.ndarray, shape (B, M)
        Natural-log strengths, mean zero per row.
    """
    design = np.zeros((len(first), n_models))
    design[np.arange(len(first)), first] = 1.0
    design[np.arange(len(first)), second] = -1.0
    norm = max(float(n.sum(axis=1).max()), 1.0)
    result = minimize(
        _neg_log_likelihood,
        np.zeros(n.shape[0] * n_models),
        args=(n, w, design, l2, norm),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 10_000, "ftol": 1e-14, "gtol": 1e-9},
    )
    strengths = result.x.reshape(n.shape[0], n_models)
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

    def fit(self, model_a, model_b, outcome) -> "BradleyTerry":
        """Fit on comparisons.

        ``model_a``, ``model_b``: shape (n_comparisons,) model names; ``outcome``: shape
        (n_comparisons,) ``A`` (model_a better), ``B`` (model_b better) or ``tie``.
        """
        a = pd.Series(np.asarray(model_a, dtype=object))
        b = pd.Series(np.asarray(model_b, dtype=object))
        out = pd.Series(np.asarray(outcome, dtype=object))
        if not len(a) == len(b) == len(out):
            raise ValueError(f"model_a, model_b and outcome differ in length: {len(a)}, {len(b)}, {len(out)}")
        if len(a) == 0:
            raise ValueError("no comparisons to fit")
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
        # Canonical cell: first < second, score from the first model's side.
        flip = ia > ib
        first, second = np.where(flip, ib, ia), np.where(flip, ia, ib)
        score = np.where(flip, 1.0 - score, score)
        cells = pd.DataFrame({"first": first, "second": second, "score": score}).value_counts().reset_index()
        counts = cells["count"].to_numpy(dtype=float)
        cell_first, cell_second = cells["first"].to_numpy(), cells["second"].to_numpy()
        cell_score = cells["score"].to_numpy()
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
        self.n_comparisons_ = np.bincount(np.concatenate([ia, ib]), minlength=len(models))
        return self

    def to_frame(self) -> pd.DataFrame:
        """``model, rating, ci_low, ci_high, rank, n_comparisons``, best first (rank 1)."""
        frame = pd.DataFrame(
            {
                "model": self.models_,
                "rating": self.ratings_,
                "ci_low": self.ci_low_,
                "ci_high": self.ci_high_,
                "n_comparisons": self.n_comparisons_,
            }
        )
        frame.insert(4, "rank", frame["rating"].rank(ascending=False, method="min").astype(int))
        return frame.sort_values(["rank", "model"]).reset_index(drop=True)


def comparisons_by_source(consensus_labels: pd.DataFrame, judgments: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The comparisons (``model_a, model_b, outcome``) of each leaderboard source.

    ``consensus``: one per item of ``consensus_labels`` (columns ``model_a, model_b,
    consensus_label``); ``human`` / ``llm``: one per vote of ``judgments`` (columns
    ``model_a, model_b, label, annotator_kind``) by annotators of that kind. Sources without
    comparisons are left out.
    """
    missing = {"model_a", "model_b", "consensus_label"} - set(consensus_labels.columns)
    missing_j = {"model_a", "model_b", "label", "annotator_kind"} - set(judgments.columns)
    if missing or missing_j:
        raise ValueError(
            f"missing columns: consensus_labels {sorted(missing)}, judgments {sorted(missing_j)}"
        )
    sources = {
        "consensus": consensus_labels.rename(columns={"consensus_label": "outcome"}),
        "human": judgments[judgments["annotator_kind"] == "human"].rename(columns={"label": "outcome"}),
        "llm": judgments[judgments["annotator_kind"] == "llm"].rename(columns={"label": "outcome"}),
    }
    return {
        name: frame[["model_a", "model_b", "outcome"]].reset_index(drop=True)
        for name, frame in sources.items()
        if len(frame)
    }


def model_leaderboard(
    consensus_labels: pd.DataFrame,
    judgments: pd.DataFrame,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Bradley-Terry leaderboards from consensus labels, human votes and LLM-judge votes.

    Returns a long frame ``source, model, rating, ci_low, ci_high, rank, n_comparisons``
    with ``source`` in ``consensus | human | llm`` (see :func:`comparisons_by_source`), each
    source's rows best first. Each source is an independent fit (its own mean-1000 anchor).
    No comparisons at all (e.g. a dataset without model pairs) give an empty frame.
    """
    parts = []
    for source, comparisons in comparisons_by_source(consensus_labels, judgments).items():
        fit = BradleyTerry(n_bootstrap=n_bootstrap, seed=seed).fit(
            comparisons["model_a"], comparisons["model_b"], comparisons["outcome"]
        )
        frame = fit.to_frame()
        frame.insert(0, "source", source)
        parts.append(frame)
    if not parts:
        return pd.DataFrame(
            {
                "source": pd.Series(dtype=object),
                "model": pd.Series(dtype=object),
                "rating": pd.Series(dtype=float),
                "ci_low": pd.Series(dtype=float),
                "ci_high": pd.Series(dtype=float),
                "rank": pd.Series(dtype="int64"),
                "n_comparisons": pd.Series(dtype="int64"),
            }
        )
    return pd.concat(parts, ignore_index=True)
