"""Majority vote per item: vote counts in DuckDB SQL, the label by cleanlab's rule.

Ties between classes are broken the way ``cleanlab.multiannotator.get_majority_vote_label``
does, never by class order: (1) the model prior ``pred_probs`` when given, (2) the class that
is rarer among all votes (so ties do not feed the majority class), (3) the tied class whose
voters agree more with the untied majority labels elsewhere, (4) a seeded random choice.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from judge_assets.core.consensus import crowdlab as crowdlab_engine
from judge_assets.core.db import quote_ident, read_frame
from judge_assets.core.consensus.votes import Votes


def majority_vote(votes: Votes, pred_probs: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Majority-vote class codes, shape (n_items,), by cleanlab's tie-break rule.

    ``pred_probs``: optional shape (n_items, K) model probabilities for tiebreak (1).
    ``seed`` fixes tiebreak (4). Every item needs at least one vote. Computed on the sparse votes by
    :func:`judge_assets.core.consensus.crowdlab.majority_vote`, identical to cleanlab's dense function.
    """
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return crowdlab_engine.majority_vote(votes, pred_probs, validate=False)
    finally:
        np.random.set_state(state)


def vote_counts(con: duckdb.DuckDBPyConnection, classes: tuple[str, ...], judgments: str = "judgments") -> pd.DataFrame:
    """Per item: ``votes_<label>`` for every class, ``num_votes``; one SQL aggregate."""
    counts = ", ".join(
        f"count(*) FILTER (WHERE label = ?) AS {quote_ident('votes_' + c)}" for c in classes
    )
    return con.execute(
        f"SELECT item_id, {counts}, count(*) AS num_votes FROM {quote_ident(judgments)} GROUP BY item_id ORDER BY item_id",
        list(classes),
    ).df()


def majority_vote_table(con: duckdb.DuckDBPyConnection, classes: tuple[str, ...], seed: int = 0) -> pd.DataFrame:
    """The ``majority_vote_labels`` table from ``judgments``.

    Columns: ``item_id``, ``majority_label``, ``votes_<label>`` per class, ``num_votes``,
    ``agreement`` (share of the item's votes equal to the majority label) and
    ``tie_broken`` (true when two or more classes shared the top count).
    """
    counts = vote_counts(con, classes)
    frame = read_frame(con, "SELECT item_id, annotator, label FROM judgments")
    votes = Votes.from_frame(frame, classes, item_ids=counts["item_id"].to_numpy())
    codes = majority_vote(votes, seed=seed)
    count_matrix = counts[[f"votes_{c}" for c in classes]].to_numpy()
    top = count_matrix.max(axis=1)
    out = counts[["item_id"]].copy()
    out["majority_label"] = np.asarray(classes, dtype=object)[codes]
    for c in classes:
        out[f"votes_{c}"] = counts[f"votes_{c}"]
    out["num_votes"] = counts["num_votes"]
    out["agreement"] = count_matrix[np.arange(len(codes)), codes] / counts["num_votes"].to_numpy()
    out["tie_broken"] = (count_matrix == top[:, None]).sum(axis=1) > 1
    return out
