"""The read-only query core behind ``judge-assets sql``."""

from __future__ import annotations

import datetime
import json
import shutil
import time
from decimal import Decimal
from pathlib import Path

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


# --- a query sees the database file and nothing else -------------------------------------------

PACKAGE_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "judge_assets" / "dagster.yaml"
ROWS = [("i1", "A", 0.9), ("i2", "tie", 0.25)]


def _refusal(what: str, shown: str) -> str:
    return f"refused: this query would {what} ({shown}); judge-assets sql only reads the database"


def _stored_rows(path) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT * FROM consensus_labels ORDER BY 1").fetchall()
    finally:
        con.close()


def test_copy_to_a_file_is_refused_and_writes_nothing(db, tmp_path):
    target = tmp_path / "out.csv"
    sql = f"COPY (SELECT * FROM consensus_labels) TO '{target}'"
    with pytest.raises(QueryError) as refused:
        run_query(db, sql)
    assert str(refused.value) == _refusal("read or write files outside the database", sql)
    assert not target.exists()
    long_select = "SELECT " + ", ".join(f"{i} AS column_{i}" for i in range(40))
    with pytest.raises(QueryError) as refused:
        run_query(db, f"COPY ({long_select}) TO '{target}'")
    shown = str(refused.value).split(" (", 1)[1].rsplit("); ", 1)[0]
    assert len(shown) == 200 and shown.endswith("…") and shown.startswith("COPY (SELECT 0 AS column_0, 1 AS")


def test_copy_over_the_dagster_config_leaves_it_unchanged(db, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = home / "dagster.yaml"
    shutil.copy(PACKAGE_DAGSTER_YAML, config)
    before = config.read_bytes()
    with pytest.raises(QueryError, match=r"^refused: this query would read or write files outside the database \(COPY"):
        run_query(db, f"COPY (SELECT 'telemetry: {{enabled: true}}' AS x) TO '{config}' (HEADER false, QUOTE '')")
    assert config.read_bytes() == before


@pytest.mark.parametrize(
    "reader",
    ["SELECT * FROM read_csv('{path}')", "SELECT * FROM read_text('{path}')", "SELECT * FROM '{path}'", "SELECT * FROM glob('{folder}/*')"],
)
def test_reading_a_file_outside_the_database_is_refused_and_shows_nothing_of_it(db, tmp_path, reader):
    secret = tmp_path / "secret.csv"
    secret.write_text("token\nSECRET-5b1f\n")
    with pytest.raises(QueryError) as refused:
        run_query(db, reader.format(path=secret, folder=tmp_path))
    message = str(refused.value)
    assert message.startswith("refused: this query would reach outside the database (Cannot access file ")
    assert message.endswith("; judge-assets sql only reads the database") and "\n" not in message
    assert "SECRET" not in message and "token" not in message


def test_attach_with_write_access_is_refused_and_the_other_database_keeps_its_rows(db, tmp_path):
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE keep AS SELECT range AS n FROM range(3)")
    con.close()
    with pytest.raises(QueryError) as refused:
        run_query(db, f"ATTACH '{other}' AS other (READ_WRITE); DELETE FROM other.keep")
    assert str(refused.value) == _refusal("open another database", f"ATTACH '{other}' AS other (READ_WRITE)")
    con = duckdb.connect(str(other), read_only=True)
    assert con.execute("SELECT n FROM keep ORDER BY n").fetchall() == [(0,), (1,), (2,)]
    con.close()
    with pytest.raises(QueryError, match=r"^refused: this query would close a database \(DETACH judge\)"):
        run_query(db, "DETACH judge")


def test_export_and_import_database_are_refused(db, tmp_path):
    export_dir = tmp_path / "export"
    with pytest.raises(QueryError) as refused:
        run_query(db, f"EXPORT DATABASE '{export_dir}'")
    assert str(refused.value) == _refusal("read or write files outside the database", f"EXPORT DATABASE '{export_dir}'")
    assert not export_dir.exists()
    with pytest.raises(QueryError) as refused:
        run_query(db, f"IMPORT DATABASE '{tmp_path}'")
    assert str(refused.value) == _refusal("run a PRAGMA, which can read files or change settings", f"IMPORT DATABASE '{tmp_path}'")


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        ("LOAD httpfs", "install or load a DuckDB extension"),
        ("INSTALL httpfs", "install or load a DuckDB extension"),
        ("LOAD json", "install or load a DuckDB extension"),  # built in, still refused
        ("SET enable_external_access = true", "change a setting"),
        ("SET memory_limit = '100GB'", "change a setting"),
        ("RESET lock_configuration", "change a setting"),
        ("PRAGMA memory_limit = '100GB'", "change a setting"),
        ("PRAGMA enable_profiling", "run a PRAGMA, which can read files or change settings"),
        ("UPDATE EXTENSIONS", "run a kind of statement judge-assets sql does not know"),
    ],
)
def test_extensions_settings_and_pragmas_are_refused(db, sql, what):
    with pytest.raises(QueryError) as refused:
        run_query(db, sql)
    assert str(refused.value) == _refusal(what, sql)


def test_a_refused_statement_stops_the_whole_query_before_anything_runs(db, tmp_path):
    target = tmp_path / "first.csv"
    with pytest.raises(QueryError, match=r"^refused: .*\(COPY consensus_labels TO"):
        run_query(db, f"SELECT 1; COPY consensus_labels TO '{target}'; SELECT 2")
    assert not target.exists()


def test_duckdb_itself_refuses_what_the_statement_check_cannot_see(db, tmp_path):
    # a COPY hidden in a prepared statement passes the type check; DuckDB's configuration stops it
    target = tmp_path / "prepared.csv"
    with pytest.raises(QueryError) as refused:
        run_query(db, f"PREPARE p AS COPY consensus_labels TO '{target}'; EXECUTE p")
    assert str(refused.value) == _refusal(
        "reach outside the database", f'Cannot access file "{target}" - file system operations are disabled by configuration'
    )
    assert not target.exists()


def test_the_lockdown_does_not_outlive_the_query(db):
    run_query(db, "SELECT 1")
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT current_setting('enable_external_access'), current_setting('lock_configuration')").fetchone() == (True, False)
    con.close()
    assert _stored_rows(db) == ROWS


def test_a_query_longer_than_the_timeout_is_stopped(db):
    started = time.monotonic()
    with pytest.raises(QueryError) as stopped:
        run_query(db, "SELECT count(*) FROM range(10000000000) r(i) WHERE i % 7 = 3", timeout=0.5)
    assert str(stopped.value) == "query stopped after 0.5 s (the --timeout / JUDGE_SQL_TIMEOUT limit)"
    assert time.monotonic() - started < 30
    # a quick query with a timeout answers as usual
    assert run_query(db, "SELECT count(*) FROM consensus_labels", timeout=30) == (["count_star()"], [(2,)])


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan")])
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_refused(db, timeout):
    with pytest.raises(QueryError, match=r"^timeout must be a positive number of seconds"):
        run_query(db, "SELECT 1", timeout=timeout)


def test_memory_is_capped_and_nothing_spills_next_to_the_database(db):
    with pytest.raises(QueryError) as refused:
        run_query(db, "SELECT i, md5(i::VARCHAR) AS h FROM range(20000000) r(i) ORDER BY h", memory_limit="20MB")
    message = str(refused.value)
    assert message.startswith("the query needs more memory than its 20MB limit (Out of Memory Error:")
    assert message.endswith("narrow it, or raise JUDGE_SQL_MEMORY_LIMIT") and "\n" not in message
    assert sorted(p.name for p in db.parent.iterdir()) == ["judge.duckdb"]


def test_a_memory_limit_duckdb_does_not_understand_names_the_setting(db):
    with pytest.raises(QueryError, match=r"^JUDGE_SQL_MEMORY_LIMIT='lots' is not a memory size DuckDB accepts, e.g. 1GB or 512MB"):
        run_query(db, "SELECT 1", memory_limit="lots")


def test_reading_queries_keep_working_under_the_lockdown(db):
    assert run_query(
        db, "WITH s AS (SELECT consensus_label, score FROM consensus_labels) SELECT consensus_label FROM s WHERE score > 0.5"
    ) == (["consensus_label"], [("A",)])
    assert run_query(db, "SELECT item_id FROM ties") == (["item_id"], [("i2",)])
    assert run_query(db, "DESCRIBE consensus_labels")[1][0][:2] == ("item_id", "VARCHAR")
    assert run_query(db, "CREATE TEMP TABLE t AS SELECT 1 AS x; SELECT x FROM t") == (["x"], [(1,)])
    assert run_query(db, "SELECT * FROM ties", memory_limit="64MB", timeout=60) == (["item_id", "consensus_label", "score"], [("i2", "tie", 0.25)])
    assert list_relations(db, memory_limit="64MB") == [("consensus_labels", "table", 2), ("ties", "view", 1)]
