"""What to label next: items ranked by cleanlab's ActiveLab score (``label_next``)."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from judge_assets.core.consensus.votes import Votes
from judge_assets.core.db import quote_ident, table_columns, table_exists, transaction
from judge_assets.core.labels import stored_label_set

LABEL_NEXT_TABLE = "label_next"
#: item columns copied into ``label_next`` when ``items`` has them (text a labeller reads first)
ITEM_TEXT_COLUMNS = ("question_id", "turn", "model_a", "model_b", "category", "user_turns", "answers_a", "answers_b", "reference")


def active_learning_ranking(votes: Votes, pred_probs: np.ndarray) -> pd.DataFrame:
    """Rank items by cleanlab's ActiveLab score; the lowest score (rank 1) is the item to label next.

    Parameters
    ----------
    votes : all votes; ``votes.item_ids`` may include items nobody labelled yet.
    pred_probs : np.ndarray, shape (n_items, n_classes)
        Model class probabilities per item, rows aligned with ``votes.item_ids``, columns with
        ``votes.classes``.

    Returns a frame sorted by rank with ``item_id``, ``active_learning_score`` (in [0, 1]; low =
    least certain true label), ``num_annotations`` and ``label_next_rank`` (1 = label next).
    Labelled items are scored from ``votes.to_matrix()``; unlabelled ones from their
    ``pred_probs`` alone (``pred_probs_unlabeled``), on the same scale.
    """
    from cleanlab.multiannotator import get_active_learning_scores

    pred_probs = np.asarray(pred_probs, dtype=float)
    if pred_probs.shape != (votes.n_items, votes.n_classes):
        raise ValueError(f"pred_probs has shape {pred_probs.shape}; expected (n_items, n_classes) = ({votes.n_items}, {votes.n_classes})")
    if not np.allclose(pred_probs.sum(axis=1), 1.0, atol=1e-6) or (pred_probs < 0).any():
        raise ValueError("pred_probs rows must be probabilities (non-negative, summing to 1)")
    counts = votes.num_annotations()
    labelled = counts > 0
    if not labelled.any():
        raise ValueError("no item has a vote yet: ActiveLab needs at least one labelled item")
    matrix = votes.to_matrix()[labelled]
    matrix = matrix.loc[:, matrix.notna().any(axis=0)]
    scores = np.empty(votes.n_items)
    unlabeled = pred_probs[~labelled] if (~labelled).any() else None
    scores_labelled, scores_unlabelled = get_active_learning_scores(matrix, pred_probs[labelled], unlabeled)
    scores[labelled] = scores_labelled
    if unlabeled is not None:
        scores[~labelled] = scores_unlabelled
    frame = pd.DataFrame({"item_id": votes.item_ids, "active_learning_score": scores, "num_annotations": counts})
    frame = frame.sort_values(["active_learning_score", "item_id"], kind="stable").reset_index(drop=True)
    frame["label_next_rank"] = np.arange(1, len(frame) + 1)
    return frame


def build_label_next(con: duckdb.DuckDBPyConnection) -> int:
    """(Re)build ``label_next``: the ActiveLab ranking of every item in ``items``; returns its row count.

    Votes come from ``judgments``, model probabilities from ``model_probs`` (columns ``p_<label>``).
    One row per item, ordered by ``label_next_rank`` (1 = label next): ``label_next_rank, item_id,
    active_learning_score, num_annotations, n_human_votes, n_llm_votes``, the item's text and
    metadata columns (:data:`ITEM_TEXT_COLUMNS` present in ``items``) and ``majority_label`` (NULL
    without ``majority_vote_labels``). Raises ``ValueError`` naming what is missing.
    """
    classes = stored_label_set(con).labels
    item_ids = [r[0] for r in con.execute("SELECT item_id FROM items ORDER BY item_id").fetchall()]
    judgments = con.execute("SELECT item_id, annotator, label FROM judgments").df()
    votes = Votes.from_frame(judgments, classes, item_ids=item_ids)
    prob_cols = [f"p_{c}" for c in classes]
    present = table_columns(con, "model_probs")
    missing_cols = [c for c in prob_cols if c not in present]
    if missing_cols:
        raise ValueError(f"model_probs lacks column(s) {', '.join(missing_cols)} for the class set {', '.join(classes)}")
    probs = con.execute(f"SELECT item_id, {', '.join(quote_ident(c) for c in prob_cols)} FROM model_probs").df().set_index("item_id")
    absent = [i for i in item_ids if i not in probs.index]
    if absent:
        raise ValueError(f"model_probs has no row for {len(absent)} item(s), e.g. {absent[0]!r}: rebuild model_probs")
    ranking = active_learning_ranking(votes, probs.loc[item_ids, prob_cols].to_numpy())
    majority = table_exists(con, "majority_vote_labels")
    item_cols = table_columns(con, "items")
    extra = [c for c in ("n_human_votes", "n_llm_votes", *ITEM_TEXT_COLUMNS) if c in item_cols]
    con.register("__label_next_rank", ranking)
    try:
        with transaction(con):
            con.execute(
                f"""CREATE OR REPLACE TABLE {LABEL_NEXT_TABLE} AS
                SELECT r.label_next_rank::INTEGER AS label_next_rank, r.item_id, r.active_learning_score,
                       r.num_annotations::INTEGER AS num_annotations,
                       {''.join(f'i.{quote_ident(c)}, ' for c in extra)}
                       {'m.majority_label' if majority else 'NULL::VARCHAR AS majority_label'}
                FROM __label_next_rank r JOIN items i USING (item_id)
                {'LEFT JOIN majority_vote_labels m USING (item_id)' if majority else ''}
                ORDER BY r.label_next_rank"""
            )
    finally:
        con.unregister("__label_next_rank")
    return len(ranking)
