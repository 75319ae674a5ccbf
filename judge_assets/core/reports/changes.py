"""What an ingest changed: compare the database before and after (votes, items, labels, re-grades, LLM requests).

A **re-grade** is a newer vote by the same annotator on the same item that replaces the one that
counted (the last vote counts, :mod:`judge_assets.core.votes.judgments`): it is told apart from an
unchanged vote by the row it comes from (``batch_id``, ``source_row``), so a re-grade that repeats
the earlier label is counted too; ``label changed`` counts those whose label differs. Grades per
criterion (the ``grades`` table, keyed by output, criterion and grader) are compared the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from judge_assets.core.db import table_exists
from judge_assets.core.scoring.llm_judge import CACHE_TABLE as LLM_CACHE_TABLE
from judge_assets.core.sources.batches import BATCH_TABLE, RAW_TABLE


def snapshot(con: duckdb.DuckDBPyConnection) -> dict:
    """Counts and labels to compare before/after an ingest (missing tables count as empty).

    Keys: ``raw_rows``, ``batches``, ``votes``, ``items``, ``annotators``, ``labels`` (item_id →
    label of ``consensus_labels``, else ``majority_vote_labels``), ``label_table`` (which one),
    ``llm_cache_rows`` (rows of ``llm_score_cache``, one per LLM request sent and kept; None when
    the table does not exist), ``votes_by_key`` ((item_id, annotator) → (label, batch_id,
    source_row) of the vote that counts; panel verdicts, which come from no batch, are left out),
    ``grades_by_key`` ((item_id, criterion, grader) → (grade, batch_id, source_row) of ``grades``;
    None when the table does not exist).
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
    snap["votes_by_key"] = (
        {(i, a): (label, b, r) for i, a, label, b, r in con.execute(
            "SELECT item_id, annotator, CAST(label AS VARCHAR), batch_id, source_row FROM judgments WHERE batch_id IS NOT NULL"
        ).fetchall()}
        if table_exists(con, "judgments")
        else {}
    )
    snap["grades_by_key"] = (
        {(i, c, g): (grade, b, r) for i, c, g, grade, b, r in con.execute(
            "SELECT item_id, criterion, grader, grade, batch_id, source_row FROM grades"
        ).fetchall()}
        if table_exists(con, "grades")
        else None
    )
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
    llm_requests: int | None = None
    regraded: int = 0
    regrade_label_changed: int = 0
    grades_regraded: int | None = None
    grade_changed: int | None = None

    def lines(self, max_changes: int = 10) -> list[str]:
        """Human-readable summary lines."""
        out = [
            f"new batches: {self.new_batches}, new raw rows: {self.new_raw_rows:,}",
            f"new votes: {self.new_votes:,}, new items: {self.new_items:,}, new annotators: {self.new_annotators}",
        ]
        out.append(f"re-graded {self.regraded:,} (a newer vote by the same annotator on the same item), label changed {self.regrade_label_changed:,}")
        if self.grades_regraded is not None:
            out.append(f"grades re-graded {self.grades_regraded:,} (same grader, output and criterion), grade changed {self.grade_changed:,}")
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
    regraded, relabelled = _replaced(before.get("votes_by_key") or {}, after.get("votes_by_key") or {})
    grades_regraded = grade_changed = None
    if after.get("grades_by_key") is not None:
        grades_regraded, grade_changed = _replaced(before.get("grades_by_key") or {}, after["grades_by_key"])
    return IngestReport(
        new_raw_rows=after["raw_rows"] - before["raw_rows"],
        new_batches=after["batches"] - before["batches"],
        new_votes=after["votes"] - before["votes"],
        new_items=after["items"] - before["items"],
        new_annotators=after["annotators"] - before["annotators"],
        label_table=after["label_table"],
        changed_labels=changed,
        llm_requests=llm,
        regraded=regraded,
        regrade_label_changed=relabelled,
        grades_regraded=grades_regraded,
        grade_changed=grade_changed,
    )


def _replaced(old: dict, new: dict) -> tuple[int, int]:
    """(keys of both whose counting row changed, of those whose label changed); values are (label, batch_id, source_row)."""
    moved = [key for key, value in new.items() if key in old and old[key][1:] != value[1:]]
    return len(moved), sum(old[key][0] != new[key][0] for key in moved)
