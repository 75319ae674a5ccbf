"""The item × annotator matrix, pivoted in DuckDB.

Each annotator becomes one INTEGER column of label codes (NULL = no vote). Column names are
the annotator names themselves, quoted, so names with quotes, spaces or SQL in them pivot
safely. DuckDB identifiers are case-insensitive, so two annotators differing only in case (or
one called ``item_id``, or an empty name) would collide: those get a ``#2``, ``#3``… suffix.
``annotator_matrix_columns`` maps every annotator to its column.

Above ``max_annotators`` annotators no wide table is built (nothing should carry ten thousand
columns): ``annotator_matrix`` is then the long form ``(item_id, annotator, label_code)`` and the
summary says so. Consensus never needs the wide form; it reads ``judgments``.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from judge_assets.config import DEFAULT_MATRIX_MAX_ANNOTATORS
from judge_assets.core.db import quote_ident, quote_literal, transaction


def column_names(annotators: list[str]) -> list[str]:
    """Unique, case-insensitively distinct column names for ``annotators`` (in order)."""
    taken = {"item_id"}
    names = []
    for annotator in annotators:
        base = annotator if annotator.strip() else "#empty"
        name, n = base, 1
        while name.lower() in taken:
            n += 1
            name = f"{base}#{n}"
        taken.add(name.lower())
        names.append(name)
    return names


@dataclass(frozen=True)
class MatrixSummary:
    n_items: int
    n_annotators: int
    wide: bool
    renamed: dict[str, str]


def build_annotator_matrix(con: duckdb.DuckDBPyConnection, max_annotators: int = DEFAULT_MATRIX_MAX_ANNOTATORS) -> MatrixSummary:
    """(Re)build ``annotator_matrix`` and ``annotator_matrix_columns`` from ``judgments``."""
    annotators = [
        row[0] for row in con.execute("SELECT DISTINCT annotator FROM judgments ORDER BY annotator").fetchall()
    ]
    names = column_names(annotators)
    n_items = con.execute("SELECT count(DISTINCT item_id) FROM judgments").fetchone()[0]
    wide = len(annotators) <= max_annotators
    with transaction(con):
        con.execute("CREATE OR REPLACE TABLE annotator_matrix_columns (annotator VARCHAR, column_name VARCHAR)")
        con.executemany("INSERT INTO annotator_matrix_columns VALUES (?, ?)", list(zip(annotators, names)))
        if wide:
            in_list = ", ".join(f"{quote_literal(a)} AS {quote_ident(c)}" for a, c in zip(annotators, names))
            con.execute(
                f"""
                CREATE OR REPLACE TABLE annotator_matrix AS
                SELECT * FROM (
                    PIVOT (SELECT item_id, annotator, label_code FROM judgments)
                    ON annotator IN ({in_list})
                    USING first(label_code)
                    GROUP BY item_id)
                ORDER BY item_id"""
            )
        else:
            con.execute(
                "CREATE OR REPLACE TABLE annotator_matrix AS "
                "SELECT item_id, annotator, label_code FROM judgments ORDER BY item_id, annotator"
            )
    renamed = {a: c for a, c in zip(annotators, names) if a != c}
    return MatrixSummary(n_items, len(annotators), wide, renamed)
