"""The pivot: one column per annotator, safe for hostile names, long form above the limit."""

from __future__ import annotations

import duckdb
import pytest

from judge_assets.core.db import quote_ident
from judge_assets.core.votes.matrix import build_annotator_matrix, column_names

HOSTILE = ['x"; DROP TABLE judgments; --', "O'Brien", "a b", "item_id", "ITEM_ID", "Alice", "alice", "select", ""]


@pytest.fixture
def con(tmp_path):
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    con.execute("CREATE TABLE judgments (item_id VARCHAR, annotator VARCHAR, label_code INTEGER)")
    rows = [(f"i{k % 3}", name, k % 3) for k, name in enumerate(HOSTILE)]
    con.executemany("INSERT INTO judgments VALUES (?, ?, ?)", rows)
    return con


def test_hostile_annotator_names_pivot_safely(con):
    summary = build_annotator_matrix(con)
    assert summary.wide and summary.n_annotators == len(HOSTILE)
    assert con.execute("SELECT count(*) FROM judgments").fetchone()[0] == len(HOSTILE)  # no injection ran
    mapping = dict(con.execute("SELECT annotator, column_name FROM annotator_matrix_columns").fetchall())
    assert set(mapping) == set(HOSTILE)
    for k, name in enumerate(HOSTILE):
        value = con.execute(
            f"SELECT {quote_ident(mapping[name])} FROM annotator_matrix WHERE item_id = ?", [f"i{k % 3}"]
        ).fetchone()[0]
        assert value == k % 3, name
    columns = [r[0] for r in con.execute("DESCRIBE annotator_matrix").fetchall()]
    assert len({c.lower() for c in columns}) == len(columns) == len(HOSTILE) + 1
    # sorted order: "ITEM_ID" comes first and takes "ITEM_ID#2"; "item_id#2" is then taken case-insensitively
    assert summary.renamed == {"ITEM_ID": "ITEM_ID#2", "alice": "alice#2", "": "#empty", "item_id": "item_id#3"}


def test_column_names_are_unique_case_insensitively():
    assert column_names(["A", "a", "a#2", "item_id"]) == ["A", "a#2", "a#2#2", "item_id#2"]


def test_above_the_limit_the_matrix_stays_long(con):
    summary = build_annotator_matrix(con, max_annotators=3)
    assert not summary.wide
    assert [r[0] for r in con.execute("DESCRIBE annotator_matrix").fetchall()] == ["item_id", "annotator", "label_code"]
    assert con.execute("SELECT count(*) FROM annotator_matrix").fetchone()[0] == len(HOSTILE)


def test_mt_bench_matrix_has_one_column_per_annotator(mt_bench_db):
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    columns = [r[0] for r in con.execute("DESCRIBE annotator_matrix").fetchall()]
    assert len(columns) == 67 and "gpt4_pair" in columns
    assert con.execute("SELECT count(*) FROM annotator_matrix").fetchone()[0] == 2400
    non_null = sum(con.execute(f"SELECT count({quote_ident(c)}) FROM annotator_matrix").fetchone()[0] for c in columns[1:])
    assert non_null == 5754
