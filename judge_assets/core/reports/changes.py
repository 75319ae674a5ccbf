"""What an ingest changed: compare the database before and after (votes, items, labels, re-grades, LLM requests).

A **re-grade** is a newer vote by the same annotator on the same item that replaces the one that
counted (the last vote counts, :mod:`judge_assets.core.votes.judgments`): it is told apart from an
unchanged vote by the row it comes from (``batch_id``, ``source_row``), so a re-grade that repeats
the earlier label is counted too; ``label changed`` counts those whose label differs. Grades per
criterion (the ``grades`` table, keyed by output, criterion and grader) are compared the same way.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from judge_assets.core.db import quote_literal, table_exists
from judge_assets.core.scoring.llm_judge import CACHE_TABLE as LLM_CACHE_TABLE
from judge_assets.core.sources.batches import BATCH_TABLE, RAW_TABLE

#: Keyed state compared row by row, written to Parquet by :func:`snapshot`: name → (table, query).
#: ``votes``: the vote that counts per (item, annotator) with the row it comes from (panel verdicts,
#: which come from no batch, are left out); ``grades``: the same per (output, criterion, grader).
KEYED = {
    "votes": ("judgments", "SELECT item_id, annotator, CAST(label AS VARCHAR) AS label, batch_id, source_row "
                           "FROM judgments WHERE batch_id IS NOT NULL"),
    "grades": ("grades", "SELECT item_id, criterion AS annotator_key, grader AS annotator, grade AS label, batch_id, source_row "
                         "FROM grades"),
}
KEYS = {"votes": ("item_id", "annotator"), "grades": ("item_id", "annotator_key", "annotator")}


def snapshot(con: duckdb.DuckDBPyConnection, folder: Path) -> dict:
    """Counts and keyed state to compare before/after an ingest (missing tables count as empty).

    Returns ``raw_rows``, ``batches``, ``votes``, ``items``, ``annotators``, ``label_table`` (which
    table's labels: ``consensus_labels``, else ``majority_vote_labels``), ``llm_cache_rows`` (rows of
    ``llm_score_cache``, one per LLM request sent and kept; None without the table) and, for the
    row-by-row comparison, paths under ``folder`` (one new subfolder per call) of Parquet files:
    ``labels`` (item_id, label) and the :data:`KEYED` tables (None where the table does not exist).
    The keyed state stays in DuckDB and on disk, never in Python objects: 10M votes cost seconds.
    """

    def count(sql: str, table: str) -> int:
        return con.execute(sql).fetchone()[0] if table_exists(con, table) else 0

    Path(folder).mkdir(parents=True, exist_ok=True)
    here = Path(tempfile.mkdtemp(prefix="snapshot-", dir=folder))

    def export(name: str, sql: str) -> str:
        path = here / f"{name}.parquet"
        con.execute(f"COPY ({sql}) TO {quote_literal(str(path))} (FORMAT parquet)")
        return str(path)

    snap = {
        "raw_rows": count(f"SELECT count(*) FROM {RAW_TABLE}", RAW_TABLE),
        "batches": count(f"SELECT count(*) FROM {BATCH_TABLE} WHERE loaded_at IS NOT NULL", BATCH_TABLE),
        "votes": count("SELECT count(*) FROM judgments", "judgments"),
        "items": count("SELECT count(DISTINCT item_id) FROM judgments", "judgments"),
        "annotators": count("SELECT count(DISTINCT annotator) FROM judgments", "judgments"),
        "label_table": None,
        "labels": None,
        "llm_cache_rows": count(f"SELECT count(*) FROM {LLM_CACHE_TABLE}", LLM_CACHE_TABLE)
        if table_exists(con, LLM_CACHE_TABLE)
        else None,
    }
    for name, (table, sql) in KEYED.items():
        snap[name + "_by_key"] = export(name, sql) if table_exists(con, table) else None
    for table, column in (("consensus_labels", "consensus_label"), ("majority_vote_labels", "majority_label")):
        if table_exists(con, table):
            snap["labels"] = export("labels", f"SELECT item_id, CAST({column} AS VARCHAR) AS label FROM {table}")
            snap["label_table"] = table
            break
    return snap


@dataclass(frozen=True)
class IngestReport:
    """Difference between two :func:`snapshot` results.

    ``changed_labels``: (item_id, label before, label after) of the first items (by id) present in
    both snapshots whose label differs, ``n_changed_labels`` how many there are; ``llm_requests``: new rows in ``llm_score_cache`` (requests sent to the LLM
    judge; None when no LLM scorer ran); ``regraded`` / ``regrade_label_changed``: votes of an
    (item, annotator) present before whose counting vote now comes from another row / has another
    label; ``grades_regraded`` / ``grade_changed``: the same per (output, criterion, grader) in
    ``grades`` (None without that table).
    """

    new_raw_rows: int
    new_batches: int
    new_votes: int
    new_items: int
    new_annotators: int
    label_table: str | None
    changed_labels: list[tuple[str, str, str]] = field(default_factory=list)
    n_changed_labels: int = 0
    llm_requests: int | None = None
    regraded: int = 0
    regrade_label_changed: int = 0
    grades_regraded: int | None = None
    grade_changed: int | None = None

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        out = [
            f"new batches: {self.new_batches}, new raw rows: {self.new_raw_rows:,}",
            f"new votes: {self.new_votes:,}, new items: {self.new_items:,}, new annotators: {self.new_annotators}",
        ]
        out.append(f"re-graded {self.regraded:,} (a newer vote by the same annotator on the same item), label changed {self.regrade_label_changed:,}")
        if self.grades_regraded is not None:
            out.append(f"grades re-graded {self.grades_regraded:,} (same grader, output and criterion), grade changed {self.grade_changed:,}")
        if self.label_table:
            out.append(f"items whose label changed ({self.label_table}): {self.n_changed_labels:,}")
            out += [f"  {item}: {old} → {new}" for item, old, new in self.changed_labels]
            if self.n_changed_labels > len(self.changed_labels):
                out.append(f"  … {self.n_changed_labels - len(self.changed_labels):,} more")
        out.append(
            "LLM requests: none (no LLM scorer configured)" if self.llm_requests is None else f"LLM requests sent: {self.llm_requests}"
        )
        return out


def changes(before: dict, after: dict, max_changes: int = 10) -> IngestReport:
    """What an ingest changed, from two :func:`snapshot` results (compared in DuckDB, never row
    by row in Python); ``changed_labels`` lists the first ``max_changes`` by item id, ``n_changed_labels`` counts all."""
    con = duckdb.connect()
    try:
        changed, n_changed = [], 0
        if before["label_table"] == after["label_table"] and before["labels"] and after["labels"]:
            diff = (f"FROM read_parquet({quote_literal(after['labels'])}) AS a JOIN read_parquet({quote_literal(before['labels'])}) AS b "
                    "USING (item_id) WHERE a.label IS DISTINCT FROM b.label")
            n_changed = con.execute(f"SELECT count(*) {diff}").fetchone()[0]
            changed = [tuple(r) for r in con.execute(f"SELECT item_id, b.label, a.label {diff} ORDER BY item_id LIMIT {int(max_changes)}").fetchall()]
        regraded, relabelled = _replaced(con, "votes", before.get("votes_by_key"), after.get("votes_by_key"))
        grades_regraded = grade_changed = None
        if after.get("grades_by_key") is not None:
            grades_regraded, grade_changed = _replaced(con, "grades", before.get("grades_by_key"), after["grades_by_key"])
    finally:
        con.close()
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
        n_changed_labels=n_changed,
        llm_requests=llm,
        regraded=regraded,
        regrade_label_changed=relabelled,
        grades_regraded=grades_regraded,
        grade_changed=grade_changed,
    )


def _replaced(con: duckdb.DuckDBPyConnection, name: str, old: str | None, new: str | None) -> tuple[int, int]:
    """(keys in both snapshots whose counting row changed, of those whose label changed)."""
    if not old or not new:
        return 0, 0
    keys = ", ".join(KEYS[name])
    moved, relabelled = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE a.label IS DISTINCT FROM b.label) "
        f"FROM read_parquet({quote_literal(new)}) AS a JOIN read_parquet({quote_literal(old)}) AS b USING ({keys}) "
        "WHERE a.batch_id IS DISTINCT FROM b.batch_id OR a.source_row IS DISTINCT FROM b.source_row"
    ).fetchone()
    return int(moved), int(relabelled)
