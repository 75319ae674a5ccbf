"""The read-only query core behind ``judge-assets sql``."""

from __future__ import annotations

import datetime
import json
from decimal import Decimal

import duckdb
import pytest

from judge_assets.core.sql.query import QueryError, format_csv, format_json, format_table, list_relations, run_query


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "judge.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE consensus_labels AS SELECT * FROM (VALUES ('i1', 'A', 0.9::DOUBLE), ('i2', 'tie', 0.25::DOUBLE)) v(item_id, consensus_label, score)")
    con.execute("CREATE VIEW ties AS SELECT * FROM consensus_labels WHERE consensus_label = 'tie'")
    con.close()
    return path


def test_run_query_returns_columns_and_rows(db):
    columns, rows = run_query(db, "SELECT item_id, score FROM consensus_labels ORDER BY item_id")
    assert columns == ["item_id", "score"]
    assert rows == [("i1", 0.9), ("i2", 0.25)]


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM consensus_labels",
        "CREATE TABLE scratch AS SELECT 1 AS x",
        "DROP VIEW ties",
        "UPDATE consensus_labels SET score = 0",
    ],
)
def test_writes_fail_and_leave_the_data_unchanged(db, statement):
    with pytest.raises(QueryError, match="read-only"):
        run_query(db, statement)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT item_id, consensus_label, score FROM consensus_labels ORDER BY item_id").fetchall() == [
        ("i1", "A", 0.9),
        ("i2", "tie", 0.25),
    ]
    assert sorted(r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()) == [
        "consensus_labels",
        "ties",
    ]
    con.close()


def test_missing_database_is_a_clear_message(tmp_path):
    missing = tmp_path / "nope.duckdb"
    with pytest.raises(QueryError, match=r"nope\.duckdb does not exist yet: run `judge-assets run`"):
        run_query(missing, "SELECT 1")
    assert not missing.exists()


def test_sql_error_carries_the_duckdb_message(db):
    with pytest.raises(QueryError, match="Table with name consensus_lables does not exist"):
        run_query(db, "SELECT * FROM consensus_lables")
    with pytest.raises(QueryError, match="empty query"):
        run_query(db, "  ")


def test_list_relations_reports_kind_and_rows_and_survives_a_broken_view(db):
    assert list_relations(db) == [("consensus_labels", "table", 2), ("ties", "view", 1)]
    con = duckdb.connect(str(db))
    con.execute("CREATE VIEW broken AS SELECT * FROM consensus_labels")
    con.execute("ALTER TABLE consensus_labels RENAME TO renamed")
    con.close()
    assert list_relations(db) == [("broken", "view", None), ("renamed", "table", 2), ("ties", "view", None)]


def test_format_table_aligns_numbers_right_and_text_left():
    text = format_table(["model", "rating", "n"], [("gpt-4", 1177.3796, 1029), ("a\nb", None, 7)])
    assert text.splitlines() == [
        "model |  rating |    n",
        "------+---------+-----",
        "gpt-4 | 1177.38 | 1029",
        "a\\nb  |    NULL |    7",
        "(2 rows)",
    ]
    assert format_table(["x"], [("y" * 100,)], max_width=10).splitlines()[2] == "yyyyyyyyy…"
    # DECIMAL columns are numbers too
    assert format_table(["d"], [(Decimal("1.50"),), (Decimal("10.25"),)]).splitlines()[2:4] == [" 1.50", "10.25"]


def test_format_csv_quotes_and_writes_null_as_empty():
    assert format_csv(["a", "b"], [("x, y", None), ('say "hi"', 2)]) == 'a,b\n"x, y",\n"say ""hi""",2\n'


def test_format_json_records_with_null_nan_and_dates():
    records = json.loads(
        format_json(["d", "v", "l"], [(datetime.date(2024, 1, 2), float("nan"), ["A", "B"]), (None, 1.5, [])])
    )
    assert records == [{"d": "2024-01-02", "v": None, "l": ["A", "B"]}, {"d": None, "v": 1.5, "l": []}]
