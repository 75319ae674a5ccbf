"""What to label next: items ranked by cleanlab's ActiveLab score (``label_next``).

The scores come from the sparse engine (:func:`judge_assets.core.consensus.crowdlab.active_learning_scores`,
equal to ``cleanlab.multiannotator.get_active_learning_scores``), and the votes reach it as integer
codes straight from DuckDB, so memory grows with the votes and items, never items × annotators.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from judge_assets.core.consensus.crowdlab import active_learning_scores
from judge_assets.core.consensus.votes import Votes
from judge_assets.core.db import quote_ident, table_columns, table_exists, transaction
from judge_assets.core.labels import stored_label_set

LABEL_NEXT_TABLE = "label_next"
#: item columns copied into ``label_next`` when ``items`` has them (text a labeller reads first)
ITEM_TEXT_COLUMNS = ("question_id", "turn", "model_a", "model_b", "category", "user_turns", "answers_a", "answers_b", "reference")


def active_learning_item_scores(votes: Votes, pred_probs: np.ndarray) -> np.ndarray:
    """ActiveLab score of every item, shape (n_items,), aligned with ``votes.item_ids``.

    Parameters
    ----------
    votes : all votes; ``votes.item_ids`` may include items nobody labelled yet.
    pred_probs : np.ndarray, shape (n_items, n_classes)
        Model class probabilities per item, rows aligned with ``votes.item_ids``, columns with
        ``votes.classes``.

    Scores lie in [0, 1]; low = least certain true label = label next. Labelled items are scored
    from their votes, unlabelled ones from their ``pred_probs`` alone (cleanlab's
    ``pred_probs_unlabeled``), on the same scale. Raises ``ValueError`` for misaligned or improper
    probabilities, or when no item has a vote.
    """
    pred_probs = np.asarray(pred_probs, dtype=float)
    if pred_probs.shape != (votes.n_items, votes.n_classes):
        raise ValueError(f"pred_probs has shape {pred_probs.shape}; expected (n_items, n_classes) = ({votes.n_items}, {votes.n_classes})")
    if not np.allclose(pred_probs.sum(axis=1), 1.0, atol=1e-6) or (pred_probs < 0).any():
        raise ValueError("pred_probs rows must be probabilities (non-negative, summing to 1)")
    labelled = votes.num_annotations() > 0
    if not labelled.any():
        raise ValueError("no item has a vote yet: ActiveLab needs at least one labelled item")
    voting = np.bincount(votes.annotator, minlength=votes.n_annotators) > 0
    item_index = np.cumsum(labelled) - 1
    annotator_index = np.cumsum(voting) - 1
    on_labelled = Votes(
        item=item_index[votes.item],
        annotator=annotator_index[votes.annotator],
        label=votes.label,
        item_ids=votes.item_ids[labelled],
        annotators=votes.annotators[voting],
        classes=votes.classes,
    )
    unlabelled = pred_probs[~labelled] if (~labelled).any() else None
    scores = np.empty(votes.n_items)
    scores[labelled], scores_unlabelled = active_learning_scores(on_labelled, pred_probs[labelled], unlabelled)
    if unlabelled is not None:
        scores[~labelled] = scores_unlabelled
    return scores


def stored_votes(con: duckdb.DuckDBPyConnection, classes: tuple[str, ...]) -> Votes:
    """``judgments`` as :class:`Votes` over every item of ``items`` (sorted by ``item_id``; items
    without a vote included) and the annotators who voted (sorted), read as integer codes by
    DuckDB. Raises ``ValueError`` for a vote on an item missing from ``items`` or a label outside
    ``classes``."""
    unknown = con.execute("SELECT item_id FROM judgments ANTI JOIN items USING (item_id) LIMIT 1").fetchone()
    if unknown:
        raise ValueError(f"judgments: item {unknown[0]!r} is not in items (rebuild items)")
    outside = con.execute("SELECT label FROM judgments WHERE list_position(?, label) IS NULL LIMIT 1", [list(classes)]).fetchone()
    if outside:
        raise ValueError(f"judgments: label {outside[0]!r} is not in the class set {list(classes)}")
    item_ids = con.execute("SELECT item_id FROM items ORDER BY item_id").fetchnumpy()["item_id"]
    annotators = con.execute("SELECT DISTINCT annotator FROM judgments ORDER BY annotator").fetchnumpy()["annotator"]
    codes = con.execute(
        """WITH i AS (SELECT item_id, row_number() OVER (ORDER BY item_id) - 1 AS idx FROM items),
                a AS (SELECT annotator, row_number() OVER (ORDER BY annotator) - 1 AS idx FROM (SELECT DISTINCT annotator FROM judgments))
           SELECT i.idx AS item, a.idx AS annotator, list_position(?, j.label) - 1 AS label
           FROM judgments j JOIN i USING (item_id) JOIN a USING (annotator)""",
        [list(classes)],
    ).fetchnumpy()
    return Votes(
        item=np.asarray(codes["item"], dtype=np.int64),
        annotator=np.asarray(codes["annotator"], dtype=np.int64),
        label=np.asarray(codes["label"], dtype=np.int64),
        item_ids=np.asarray(item_ids, dtype=object),
        annotators=np.asarray(annotators, dtype=object),
        classes=tuple(classes),
    )


def build_label_next(con: duckdb.DuckDBPyConnection) -> int:
    """(Re)build ``label_next``: the ActiveLab ranking of every item in ``items``; returns its row count.

    Votes come from ``judgments``, model probabilities from ``model_probs`` (columns ``p_<label>``).
    One row per item, ordered by ``label_next_rank`` (1 = label next; ties by ``item_id``):
    ``label_next_rank, item_id, active_learning_score, num_annotations, n_human_votes,
    n_llm_votes``, the item's text and metadata columns (:data:`ITEM_TEXT_COLUMNS` present in
    ``items``) and ``majority_label`` (NULL without ``majority_vote_labels``). Raises
    ``ValueError`` naming what is missing.
    """
    classes = stored_label_set(con).labels
    prob_cols = [f"p_{c}" for c in classes]
    present = table_columns(con, "model_probs")
    missing_cols = [c for c in prob_cols if c not in present]
    if missing_cols:
        raise ValueError(f"model_probs lacks column(s) {', '.join(missing_cols)} for the class set {', '.join(classes)}")
    votes = stored_votes(con, classes)
    probs = con.execute(
        f"SELECT i.item_id, p.item_id IS NULL AS absent, {', '.join('p.' + quote_ident(c) for c in prob_cols)} "
        "FROM items i LEFT JOIN model_probs p USING (item_id) ORDER BY i.item_id"
    ).fetchnumpy()
    absent = np.asarray(probs["absent"], dtype=bool)
    if absent.any():
        raise ValueError(f"model_probs has no row for {int(absent.sum())} item(s), e.g. {probs['item_id'][absent][0]!r}: rebuild model_probs")
    scores = active_learning_item_scores(votes, np.column_stack([np.asarray(probs[c], dtype=float) for c in prob_cols]))
    ranked = pa.table({"idx": np.arange(votes.n_items), "score": scores, "num_annotations": votes.num_annotations()})
    majority = table_exists(con, "majority_vote_labels")
    item_cols = table_columns(con, "items")
    extra = [c for c in ("n_human_votes", "n_llm_votes", *ITEM_TEXT_COLUMNS) if c in item_cols]
    con.register("__label_next_scores", ranked)
    try:
        with transaction(con):
            con.execute(
                f"""CREATE OR REPLACE TABLE {LABEL_NEXT_TABLE} AS
                WITH i AS (SELECT *, row_number() OVER (ORDER BY item_id) - 1 AS idx FROM items)
                SELECT (row_number() OVER (ORDER BY s.score, i.item_id))::INTEGER AS label_next_rank, i.item_id,
                       s.score AS active_learning_score, s.num_annotations::INTEGER AS num_annotations,
                       {''.join(f'i.{quote_ident(c)}, ' for c in extra)}
                       {'m.majority_label' if majority else 'NULL::VARCHAR AS majority_label'}
                FROM __label_next_scores s JOIN i USING (idx)
                {'LEFT JOIN majority_vote_labels m USING (item_id)' if majority else ''}
                ORDER BY label_next_rank"""
            )
    finally:
        con.unregister("__label_next_scores")
    return votes.n_items
