"""Annotator drift: one snapshot of ``annotator_stats`` per rebuild, kept in ``annotator_stats_history``."""

from __future__ import annotations

import duckdb

from judge_assets.core.db import table_exists, transaction
from judge_assets.core.sources.batches import BATCH_TABLE

HISTORY_TABLE = "annotator_stats_history"


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
