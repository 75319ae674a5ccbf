"""Read-only SQL over the project database, for the ``judge-assets sql`` command.

The database is opened with DuckDB's ``read_only`` flag, so ``INSERT``, ``DELETE``,
``CREATE`` and friends fail inside DuckDB and the stored tables stay as they are. Every
failure (missing database, lock, SQL error) is a :class:`QueryError` with a one-paragraph
message, meant to be printed instead of a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
from pathlib import Path
from typing import Any, Sequence

import duckdb

from judge_assets.core.db import connect, quote_ident

Rows = list[tuple[Any, ...]]


class QueryError(Exception):
    """A query that could not run; ``str(error)`` is the message for the user."""


def _open(db_path: str | Path) -> duckdb.DuckDBPyConnection:
    try:
        return connect(db_path, read_only=True)
    except (FileNotFoundError, RuntimeError, duckdb.Error) as err:
        raise QueryError(str(err)) from err


def run_query(db_path: str | Path, sql: str) -> tuple[list[str], Rows]:
    """Run ``sql`` on a read-only connection; returns (column names, rows as tuples).

    Several ``;``-separated statements run in order and the last one's result is returned.
    A statement that returns no result gives ``([], [])``.
    """
    if not sql or not sql.strip():
        raise QueryError("empty query: pass a SQL statement, e.g. \"SELECT * FROM consensus_labels LIMIT 5\"")
    con = _open(db_path)
    try:
        result = con.execute(sql)
        if result.description is None:
            return [], []
        columns = [d[0] for d in result.description]
        return columns, result.fetchall()
    except duckdb.Error as err:
        message = str(err)
        if "read-only" in message.lower():
            message += "\n(`judge-assets sql` opens the database read-only; tables change only through materializations)"
        raise QueryError(message) from err
    finally:
        con.close()


def list_relations(db_path: str | Path) -> list[tuple[str, str, int | None]]:
    """Every table and view of the database as (name, ``table`` | ``view``, row count).

    The row count is ``None`` for a view that cannot be evaluated (e.g. it reads a table
    that no longer exists).
    """
    con = _open(db_path)
    try:
        relations = con.execute(
            "SELECT table_name, CASE table_type WHEN 'VIEW' THEN 'view' ELSE 'table' END "
            "FROM information_schema.tables WHERE table_schema = 'main' ORDER BY table_name"
        ).fetchall()
        out = []
        for name, kind in relations:
            try:
                count = con.execute(f"SELECT count(*) FROM {quote_ident(name)}").fetchone()[0]
            except duckdb.Error:
                count = None
            out.append((name, kind, count))
        return out
    finally:
        con.close()


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, max_width: int = 60) -> str:
    """An aligned text table: header, a rule, one line per row and a ``(n rows)`` footer.

    Numbers are right-aligned, other cells left-aligned; ``None`` prints as ``NULL``, floats
    with 6 significant digits, and cells longer than ``max_width`` are cut with ``…``.
    Line breaks inside a cell print as ``\\n`` so every row stays on one line.
    """
    def clip(text: str) -> str:
        text = text.replace("\r", "\\r").replace("\n", "\\n")
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    header = [clip(str(c)) for c in columns]
    body = [[clip(_cell(v)) for v in row] for row in rows]
    numeric = [
        all(isinstance(row[i], numbers.Number) and not isinstance(row[i], bool) for row in rows if row[i] is not None)
        and any(row[i] is not None for row in rows)
        for i in range(len(columns))
    ]
    widths = [max([len(header[i])] + [len(r[i]) for r in body]) for i in range(len(columns))]

    def line(cells: list[str]) -> str:
        return " | ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)
        ).rstrip()

    lines = [line(header), "-+-".join("-" * w for w in widths)] + [line(r) for r in body]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def format_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """RFC 4180 CSV with a header row; ``None`` is an empty field."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buffer.getvalue()


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def format_json(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A JSON array of records ``{column: value}``; NaN/inf become ``null``, dates and
    decimals their string form."""
    records = [{c: _json_value(v) for c, v in zip(columns, row)} for row in rows]
    return json.dumps(records, ensure_ascii=False, indent=2)
