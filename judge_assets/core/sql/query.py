"""Read-only SQL over the project database, for the ``judge-assets sql`` command.

A query sees the database file and nothing else. The connection is opened with DuckDB's
``read_only`` flag (``INSERT``, ``DELETE``, ``CREATE`` and friends fail inside DuckDB), then,
before any user SQL runs, configured so that:

- nothing outside the file is read or written (``enable_external_access=false``: ``read_csv``,
  ``read_text``, ``COPY … TO``, ``EXPORT DATABASE``, ``ATTACH`` of a file, ``INSTALL`` all fail);
- no extension is autoloaded or autoinstalled;
- memory is capped (``memory_limit``, ``JUDGE_SQL_MEMORY_LIMIT``) and nothing spills to disk
  (``temp_directory=''``), so the cap holds;
- ``lock_configuration=true``: the query cannot undo any of this.

The statements are also checked before they run: ``ATTACH``, ``DETACH``, ``COPY``, ``EXPORT``,
``IMPORT``, ``INSTALL``, ``LOAD``, ``SET``/``RESET``/``USE`` and ``PRAGMA`` are refused by type,
so the user reads what was refused rather than a permission error. An optional timeout stops a
long query with ``con.interrupt()``.

Every failure (missing database, lock, refusal, SQL error, timeout) is a :class:`QueryError`
whose message is meant to be printed instead of a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import threading
from pathlib import Path
from typing import Any, Sequence

import duckdb

from judge_assets.config import Settings
from judge_assets.core.db import connect, quote_ident, quote_literal

Rows = list[tuple[Any, ...]]

#: Run in this order once the database is open: ``temp_directory`` can only change while
#: external access is on, and ``lock_configuration`` comes last so nothing can undo the rest.
_LOCKDOWN = (
    "SET temp_directory = ''",
    "SET enable_external_access = false",
    "SET autoload_known_extensions = false",
    "SET autoinstall_known_extensions = false",
    "SET lock_configuration = true",
)

_FILES = "read or write files outside the database"
#: Statement types refused before anything runs, with what they would do. ``IMPORT DATABASE``
#: and ``COPY FROM DATABASE`` parse as PRAGMA, ``INSTALL`` as LOAD, ``RESET``/``USE`` as SET.
_REFUSED = {
    duckdb.StatementType.COPY: _FILES,
    duckdb.StatementType.EXPORT: _FILES,
    duckdb.StatementType.PRAGMA: "run a PRAGMA, which can read files or change settings",
    duckdb.StatementType.ATTACH: "open another database",
    duckdb.StatementType.DETACH: "close a database",
    duckdb.StatementType.LOAD: "install or load a DuckDB extension",
    duckdb.StatementType.SET: "change a setting",
}


class QueryError(Exception):
    """A query that could not run; ``str(error)`` is the message for the user."""


def _refused(what: str, detail: str) -> QueryError:
    return QueryError(f"refused: this query would {what} ({detail}); judge-assets sql only reads the database")


def _first_line(err: duckdb.Error) -> str:
    return str(err).strip().splitlines()[0]


def _open(db_path: str | Path, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """A read-only connection that sees only the database file (see the module docstring)."""
    try:
        con = connect(db_path, read_only=True)
    except (FileNotFoundError, RuntimeError, duckdb.Error) as err:
        raise QueryError(str(err)) from err
    try:
        con.execute(f"SET memory_limit = {quote_literal(memory_limit)}")
    except duckdb.Error as err:
        con.close()
        raise QueryError(
            f"JUDGE_SQL_MEMORY_LIMIT={memory_limit!r} is not a memory size DuckDB accepts, e.g. 1GB or 512MB "
            f"({_first_line(err)})"
        ) from err
    for statement in _LOCKDOWN:
        con.execute(statement)
    return con


def _check(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Raise :class:`QueryError` for the first statement of ``sql`` that is refused (a syntax
    error raises DuckDB's ``ParserException``)."""
    for statement in con.extract_statements(sql):
        text = " ".join(statement.query.split()).rstrip(";")
        shown = text if len(text) <= 200 else text[:199] + "…"
        try:
            kind = statement.type
        except ValueError:  # a type DuckDB's Python enum does not know, e.g. UPDATE EXTENSIONS
            raise _refused("run a kind of statement judge-assets sql does not know", shown) from None
        if kind in _REFUSED:
            raise _refused(_REFUSED[kind], shown)


def run_query(
    db_path: str | Path,
    sql: str,
    *,
    memory_limit: str = Settings.sql_memory_limit,
    timeout: float | None = None,
) -> tuple[list[str], Rows]:
    """Run ``sql`` on a locked-down read-only connection; returns (column names, rows as tuples).

    Several ``;``-separated statements run in order and the last one's result is returned.
    A statement that returns no result gives ``([], [])``. ``timeout`` (seconds) stops the
    query with ``query stopped after N s``.
    """
    if not sql or not sql.strip():
        raise QueryError("empty query: pass a SQL statement, e.g. \"SELECT * FROM consensus_labels LIMIT 5\"")
    if timeout is not None and not 0 < timeout <= threading.TIMEOUT_MAX:
        raise QueryError(f"timeout must be a positive number of seconds (at most {threading.TIMEOUT_MAX:.0f}), got {timeout:g}")
    con = _open(db_path, memory_limit)
    # the timer is the only caller of interrupt() on this connection (Ctrl-C raises RuntimeError)
    timer = threading.Timer(timeout, con.interrupt) if timeout is not None else None
    try:
        _check(con, sql)
        if timer:
            timer.start()
        result = con.execute(sql)
        if result.description is None:
            return [], []
        columns = [d[0] for d in result.description]
        return columns, result.fetchall()
    except duckdb.InterruptException as err:
        raise QueryError(f"query stopped after {timeout:g} s (the --timeout / JUDGE_SQL_TIMEOUT limit)") from err
    except duckdb.PermissionException as err:
        raise _refused("reach outside the database", _first_line(err).removeprefix("Permission Error: ")) from err
    except duckdb.OutOfMemoryException as err:
        raise QueryError(
            f"the query needs more memory than its {memory_limit} limit ({_first_line(err)}); "
            "narrow it, or raise JUDGE_SQL_MEMORY_LIMIT"
        ) from err
    except duckdb.Error as err:
        message = str(err)
        if "read-only" in message.lower():
            message += "\n(`judge-assets sql` opens the database read-only; tables change only through materializations)"
        raise QueryError(message) from err
    finally:
        if timer:
            timer.cancel()
        con.close()


def list_relations(db_path: str | Path, *, memory_limit: str = Settings.sql_memory_limit) -> list[tuple[str, str, int | None]]:
    """Every table and view of the database as (name, ``table`` | ``view``, row count).

    The row count is ``None`` for a view that cannot be evaluated (e.g. it reads a table
    that no longer exists).
    """
    con = _open(db_path, memory_limit)
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
