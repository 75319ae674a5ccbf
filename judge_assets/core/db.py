"""DuckDB access: opening the project database and transactional table writes.

Every write of the pipeline replaces whole tables or partitions inside one transaction,
so a failure (bad input, a crash, a kill) leaves what was stored before untouched.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import numpy as np
import pandas as pd

LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")

#: Settings of every connection that may create the project database. The file is written in
#: the storage format of DuckDB 1.5, so the DuckDB CLI installed with the project (``duckdb-cli``
#: 1.5) and other 1.5+ clients can open it.
CONNECTION_CONFIG = {"storage_compatibility_version": "v1.5.0"}


def quote_ident(name: str) -> str:
    """Quote a SQL identifier for DuckDB (any name: quotes, spaces, SQL keywords)."""
    return '"' + str(name).replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """Quote a SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def read_frame(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    """``con.sql(sql).df()``, except that equal values of a text column share one Python string.

    The same frame (same columns, dtypes and values, ``None`` for NULL), in a fraction of the
    memory when values repeat: ``df()`` makes one string object per row, so 10M votes by 10K
    annotators cost 10M annotator strings (~0.6 GB per column); here 10K. Text columns go
    through Arrow's dictionary encoding; the others through DuckDB's own pandas conversion.
    """
    relation = con.sql(sql)
    table = relation.to_arrow_table()
    names = list(relation.columns)
    text = [name for name, kind in zip(names, relation.types) if str(kind) == "VARCHAR"]
    rest = table.drop_columns(text)
    frame = duckdb.from_arrow(rest).df() if rest.num_columns else pd.DataFrame(index=pd.RangeIndex(table.num_rows))
    for name in text:
        encoded = table.column(name).combine_chunks().dictionary_encode()
        shared = np.asarray(encoded.dictionary.to_pylist() + [None], dtype=object)  # NULL: the last entry
        frame[name] = shared[encoded.indices.fill_null(len(shared) - 1).to_numpy()]
    return frame[names]


def connect(path: str | Path, *, read_only: bool = False, wait_s: float = 30.0) -> duckdb.DuckDBPyConnection:
    """Open the database; waits up to ``wait_s`` while another process holds the write lock.

    DuckDB allows one writing process per file. Waiting (rather than failing at once)
    serializes concurrent writers; after ``wait_s`` the error says who to wait for.
    """
    path = Path(path)
    if read_only and not path.exists():
        raise FileNotFoundError(f"database {path} does not exist yet: run `judge-assets run` (or `make run`) first")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config={} if read_only else dict(CONNECTION_CONFIG))
        except duckdb.IOException as exc:
            if not any(m in str(exc) for m in LOCK_MARKERS) or time.monotonic() > deadline:
                if any(m in str(exc) for m in LOCK_MARKERS):
                    raise RuntimeError(
                        f"database {path} is locked by another process (a running materialization or "
                        f"`judge-assets ingest`); waited {wait_s:.0f} s. Try again when it finishes."
                    ) from exc
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """``BEGIN`` … ``COMMIT``, or ``ROLLBACK`` on any exception."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def replace_tables(con: duckdb.DuckDBPyConnection, frames: dict[str, pd.DataFrame]) -> None:
    """Replace each table ``name`` with its frame, all in one transaction (all or nothing)."""
    with transaction(con):
        for name, frame in frames.items():
            con.register("__replace_frame", frame)
            try:
                con.execute(f"CREATE OR REPLACE TABLE {quote_ident(name)} AS SELECT * FROM __replace_frame")
            finally:
                con.unregister("__replace_frame")


def replace_table(con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame) -> int:
    """Replace table ``name`` with ``frame`` atomically; returns the row count."""
    replace_tables(con, {name: frame})
    return len(frame)


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?",
            [name],
        ).fetchall()[0][0]
    )


def table_columns(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, str]:
    """Column name → DuckDB type of table or view ``name``, in table order."""
    return {row[0]: row[1] for row in con.execute(f"DESCRIBE {quote_ident(name)}").fetchall()}


def row_count(con: duckdb.DuckDBPyConnection, name: str) -> int:
    return con.execute(f"SELECT count(*) FROM {quote_ident(name)}").fetchall()[0][0]
