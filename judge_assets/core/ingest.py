"""Adding annotation batches after the first build: the gate, what changed, drift, what to label next.

The gate (:func:`check_file`) is strict: a new file must load, fit one input schema, hold one vote
per (item, annotator), use labels of the stored class set and values castable to the types already
stored in ``raw_judgments``. A refused file is moved aside by :func:`quarantine` (with a
``.error.txt`` naming file, row and column) and nothing stored changes. An accepted file is copied by
:func:`stage_file` to ``<batches_dir>/<batch_id><suffix>`` and registered under that path, so the
inbox can be cleaned and the batch re-materialized later.

:func:`snapshot` / :func:`changes` compare the database before and after an ingest (votes, items,
labels that changed, LLM requests sent). :func:`append_annotator_history` keeps one snapshot of
``annotator_stats`` per rebuild (drift across batches); :func:`active_learning_ranking` ranks items
by cleanlab's ActiveLab score (label the lowest first).

Nothing here imports Dagster.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from judge_assets.core.db import quote_ident, table_columns, table_exists, transaction
from judge_assets.core.labels import PAIRWISE_LABELS
from judge_assets.core.sources import (
    BATCH_TABLE,
    RAW_TABLE,
    Batch,
    JudgmentInputError,
    file_batch,
    load_batch,
    validate_batch,
)
from judge_assets.core.votes import Votes

HISTORY_TABLE = "annotator_stats_history"
LABEL_NEXT_TABLE = "label_next"
LLM_CACHE_TABLE = "llm_score_cache"
REJECTED_DIR = "rejected"
#: item columns copied into ``label_next`` when ``items`` has them (text a labeller reads first)
ITEM_TEXT_COLUMNS = ("question_id", "turn", "model_a", "model_b", "category", "user_turns", "answers_a", "answers_b", "reference")
#: columns of the generated ``raw_judgments`` rows, never part of an input file
GENERATED_COLUMNS = ("batch_id", "source", "source_row", "ingested_at")


# --------------------------------------------------------------------------------------------
# The gate
# --------------------------------------------------------------------------------------------


def stored_classes(con: duckdb.DuckDBPyConnection) -> tuple[str, ...] | None:
    """The class set in ``label_set`` (code order), or None before the first build."""
    if not table_exists(con, "label_set"):
        return None
    return tuple(r[0] for r in con.execute("SELECT label FROM label_set ORDER BY code").fetchall())


def stored_column_types(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """``raw_judgments`` column → DuckDB type (empty before the first batch), generated columns excluded."""
    if not table_exists(con, RAW_TABLE):
        return {}
    return {
        name: dtype
        for name, dtype in table_columns(con, RAW_TABLE).items()
        if name not in GENERATED_COLUMNS
    }


def check_file(
    path: str | Path,
    classes: tuple[str, ...] | None = None,
    column_types: dict[str, str] | None = None,
) -> tuple[Batch, str]:
    """Validate one annotation file strictly; returns its batch (id from the content hash) and schema.

    Parameters
    ----------
    path : a ``.parquet``, ``.jsonl``, ``.json`` or ``.csv`` file in either input schema.
    classes : the stored class set (``label_set``), or None before the first build. Generic labels
        must lie in it; a pairwise file needs it to be ``A, B, tie``.
    column_types : ``raw_judgments`` column → DuckDB type already stored (:func:`stored_column_types`);
        every non-NULL value of such a column must cast to that type.

    Raises :class:`JudgmentInputError` (file, row, column) for: unsupported or missing file, empty
    file, text that is not UTF-8, unparseable content, no rows, missing required column, empty
    value, wrong type, unknown winner or label, duplicate votes inside the file.
    """
    batch = file_batch(path)
    table = load_batch(batch)
    schema = validate_batch(table, batch.label, classes, allow_duplicates=False)
    if schema == "pairwise" and classes and tuple(classes) != PAIRWISE_LABELS:
        raise JudgmentInputError(
            batch.label,
            f"pairwise votes (A, B, tie) do not fit the stored class set {', '.join(classes)}",
            row=1,
            column="winner",
        )
    if column_types:
        _check_types(table, batch.label, column_types)
    return batch, schema


def _check_types(table, source: str, column_types: dict[str, str]) -> None:
    """Every non-NULL value of a column already stored must cast to the stored type."""
    con = duckdb.connect()
    try:
        con.register("batch_arrow", table)
        con.execute("CREATE TEMP TABLE b AS SELECT row_number() OVER () AS source_row, * FROM batch_arrow")
        for column in table.column_names:
            if column not in column_types:
                continue
            q, dtype = quote_ident(column), column_types[column]
            try:
                bad = con.execute(
                    f"SELECT source_row, CAST({q} AS VARCHAR) FROM b WHERE {q} IS NOT NULL "
                    f"AND TRY_CAST({q} AS {dtype}) IS NULL ORDER BY source_row LIMIT 1"
                ).fetchone()
            except duckdb.Error:
                bad = (1, None)
            if bad:
                found = table.schema.field(column).type
                shown = "" if bad[1] is None else f" (value {bad[1][:80]!r})"
                raise JudgmentInputError(
                    source, f"wrong type: stored as {dtype}, this file has {found}{shown}", row=bad[0], column=column
                )
    finally:
        con.close()


def quarantine(path: str | Path, error: BaseException | str, rejected_dir: str | Path) -> Path:
    """Move a refused file into ``rejected_dir`` with ``<name>.error.txt`` beside it; returns the new path.

    A file of the same name already there is kept: the new one gets a timestamp suffix.
    """
    path, rejected_dir = Path(path), Path(rejected_dir)
    rejected_dir.mkdir(parents=True, exist_ok=True)
    target = rejected_dir / path.name
    if target.exists():
        target = rejected_dir / f"{path.stem}.{time.strftime('%Y%m%dT%H%M%S')}-{time.monotonic_ns() % 10**6}{path.suffix}"
    shutil.move(str(path), target)
    Path(f"{target}.error.txt").write_text(f"{error}\n", encoding="utf-8")
    return target


def stage_file(path: str | Path, batches_dir: str | Path) -> Batch:
    """Copy an accepted file to ``<batches_dir>/<batch_id><suffix>`` and return the batch at that path.

    The batch id is the original file's (its stem + content hash), so the same bytes under any name
    map to one batch. The copy is atomic (temp file + rename); an existing copy is reused.
    """
    original = file_batch(path)
    batches_dir = Path(batches_dir)
    batches_dir.mkdir(parents=True, exist_ok=True)
    target = batches_dir / f"{original.batch_id}{Path(original.location).suffix.lower()}"
    if not target.exists():
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        shutil.copyfile(original.location, partial)
        os.replace(partial, target)
    return Batch(original.batch_id, "file", str(target.resolve()))


def content_key(batch_id: str) -> str:
    """The part of a file batch id (:func:`file_batch`: ``<stem>-<12 hex>``) that comes from the bytes."""
    return batch_id.rsplit("-", 1)[-1]


def ingested_batch(con: duckdb.DuckDBPyConnection, batch_id: str) -> str | None:
    """The id of a loaded file batch with the same content as ``batch_id`` (any file name), else None."""
    if not table_exists(con, BATCH_TABLE):
        return None
    row = con.execute(
        f"SELECT min(batch_id) FROM {BATCH_TABLE} WHERE kind = 'file' AND loaded_at IS NOT NULL AND batch_id LIKE ?",
        [f"%-{content_key(batch_id)}"],
    ).fetchone()
    return row[0]


# --------------------------------------------------------------------------------------------
# What changed
# --------------------------------------------------------------------------------------------


def snapshot(con: duckdb.DuckDBPyConnection) -> dict:
    """Counts and labels to compare before/after an ingest (missing tables count as empty).

    Keys: ``raw_rows``, ``batches``, ``votes``, ``items``, ``annotators``, ``labels`` (item_id →
    label of ``consensus_labels``, else ``majority_vote_labels``), ``label_table`` (which one),
    ``llm_cache_rows`` (rows of ``llm_score_cache``, one per LLM request sent and kept; None when
    the table does not exist).
    """

    def count(sql: str, table: str) -> int:
        return con.execute(sql).fetchone()[0] if table_exists(con, table) else 0

    snap = {
        "raw_rows": count(f"SELECT count(*) FROM {RAW_TABLE}", RAW_TABLE),
        "batches": count(f"SELECT count(*) FROM {BATCH_TABLE} WHERE loaded_at IS NOT NULL", BATCH_TABLE),
        "votes": count("SELECT count(*) FROM judgments", "judgments"),
        "items": count("SELECT count(DISTINCT item_id) FROM judgments", "judgments"),
        "annotators": count("SELECT count(DISTINCT annotator) FROM judgments", "judgments"),
        "labels": {},
        "label_table": None,
        "llm_cache_rows": count(f"SELECT count(*) FROM {LLM_CACHE_TABLE}", LLM_CACHE_TABLE)
        if table_exists(con, LLM_CACHE_TABLE)
        else None,
    }
    for table, column in (("consensus_labels", "consensus_label"), ("majority_vote_labels", "majority_label")):
        if table_exists(con, table):
            snap["labels"] = dict(con.execute(f"SELECT item_id, CAST({column} AS VARCHAR) FROM {table}").fetchall())
            snap["label_table"] = table
            break
    return snap


@dataclass(frozen=True)
class IngestReport:
    """Difference between two :func:`snapshot` results.

    ``changed_labels``: (item_id, label before, label after) of items present in both snapshots
    whose label differs; ``llm_requests``: new rows in ``llm_score_cache`` (requests sent to the LLM
    judge; None when no LLM scorer ran).
    """

    new_raw_rows: int
    new_batches: int
    new_votes: int
    new_items: int
    new_annotators: int
    label_table: str | None
    changed_labels: list[tuple[str, str, str]] = field(default_factory=list)
    llm_requests: int | None = None

    def lines(self, max_changes: int = 10) -> list[str]:
        """Human-readable summary lines."""
        out = [
            f"new batches: {self.new_batches}, new raw rows: {self.new_raw_rows:,}",
            f"new votes: {self.new_votes:,}, new items: {self.new_items:,}, new annotators: {self.new_annotators}",
        ]
        if self.label_table:
            out.append(f"items whose label changed ({self.label_table}): {len(self.changed_labels)}")
            out += [f"  {item}: {old} → {new}" for item, old, new in self.changed_labels[:max_changes]]
            if len(self.changed_labels) > max_changes:
                out.append(f"  … {len(self.changed_labels) - max_changes} more")
        out.append(
            "LLM requests: none (no LLM scorer configured)" if self.llm_requests is None else f"LLM requests sent: {self.llm_requests}"
        )
        return out


def changes(before: dict, after: dict) -> IngestReport:
    """What an ingest changed, from two :func:`snapshot` results."""
    same_table = before["label_table"] == after["label_table"]
    old, new = before["labels"] if same_table else {}, after["labels"]
    changed = sorted((item, old[item], label) for item, label in new.items() if item in old and old[item] != label)
    llm = None
    if after["llm_cache_rows"] is not None:
        llm = after["llm_cache_rows"] - (before["llm_cache_rows"] or 0)
    return IngestReport(
        new_raw_rows=after["raw_rows"] - before["raw_rows"],
        new_batches=after["batches"] - before["batches"],
        new_votes=after["votes"] - before["votes"],
        new_items=after["items"] - before["items"],
        new_annotators=after["annotators"] - before["annotators"],
        label_table=after["label_table"],
        changed_labels=changed,
        llm_requests=llm,
    )


# --------------------------------------------------------------------------------------------
# Annotator drift
# --------------------------------------------------------------------------------------------


def append_annotator_history(con: duckdb.DuckDBPyConnection) -> tuple[int, str | None]:
    """Append the current ``annotator_stats`` to ``annotator_stats_history`` as one snapshot.

    Each row: ``snapshot`` (1, 2, … per append), ``recorded_at``, ``latest_batch_id`` (the batch
    loaded last), ``n_batches``, ``n_votes`` (votes in ``judgments``), then ``annotator``,
    ``annotator_kind``, ``annotator_group``, ``annotator_quality``, ``agreement_with_consensus``,
    ``num_examples_labeled``. Returns (snapshot number, latest batch id).
    """
    if not table_exists(con, "annotator_stats"):
        raise ValueError("annotator_stats does not exist yet: materialize the consensus assets first")
    latest, n_batches = None, 0
    if table_exists(con, BATCH_TABLE):
        latest, n_batches = con.execute(
            f"SELECT arg_max(batch_id, loaded_at), count(*) FROM {BATCH_TABLE} WHERE loaded_at IS NOT NULL"
        ).fetchone()
    n_votes = con.execute("SELECT count(*) FROM judgments").fetchone()[0] if table_exists(con, "judgments") else 0
    with transaction(con):
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (snapshot INTEGER, recorded_at TIMESTAMP, latest_batch_id VARCHAR, "
            "n_batches INTEGER, n_votes BIGINT, annotator VARCHAR, annotator_kind VARCHAR, annotator_group VARCHAR, "
            "annotator_quality DOUBLE, agreement_with_consensus DOUBLE, num_examples_labeled BIGINT)"
        )
        number = con.execute(f"SELECT coalesce(max(snapshot), 0) + 1 FROM {HISTORY_TABLE}").fetchone()[0]
        con.execute(
            f"""INSERT INTO {HISTORY_TABLE}
            SELECT ?, now()::TIMESTAMP, ?, ?, ?, annotator, annotator_kind, annotator_group,
                   annotator_quality, agreement_with_consensus, num_examples_labeled
            FROM annotator_stats ORDER BY annotator""",
            [number, latest, n_batches, n_votes],
        )
    return number, latest


def plot_annotator_drift(history: pd.DataFrame, top: int = 8):
    """Line plot of annotator quality per snapshot for the ``top`` annotators with the most labels.

    ``history``: rows of ``annotator_stats_history``. Returns a matplotlib figure (Agg backend).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    if history.empty:
        ax.set_title("no annotator history yet")
        return fig
    last = history[history["snapshot"] == history["snapshot"].max()]
    chosen = last.nlargest(top, "num_examples_labeled")["annotator"]
    snaps = history[["snapshot", "latest_batch_id"]].drop_duplicates().sort_values("snapshot")
    for name in chosen:
        rows = history[history["annotator"] == name].sort_values("snapshot")
        ax.plot(rows["snapshot"], rows["annotator_quality"], marker="o", label=name)
    ax.set_xticks(snaps["snapshot"], [f"{s}\n{str(b)[:18]}" for s, b in zip(snaps["snapshot"], snaps["latest_batch_id"])], fontsize=7)
    ax.set_xlabel("snapshot (latest batch)")
    ax.set_ylabel("annotator quality (CROWDLAB)")
    ax.set_title(f"Annotator quality across batches (top {len(chosen)} by labels)")
    ax.legend(fontsize=7, loc="best")
    return fig


# --------------------------------------------------------------------------------------------
# What to label next (ActiveLab)
# --------------------------------------------------------------------------------------------


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
    classes = stored_classes(con)
    if classes is None:
        raise ValueError("label_set does not exist yet: materialize judgments first")
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
