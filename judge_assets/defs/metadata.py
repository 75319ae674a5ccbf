"""Materialization metadata in one place: row counts, column schemas, Markdown previews, plots, numbers.

Every table an asset writes carries ``dagster/row_count``, ``dagster/column_schema`` (the columns
and types DuckDB reports, with the descriptions its declaration gives: ``columns=`` of
:func:`judge_assets.defs.tables.table_asset` / ``tables_asset``) and a Markdown preview. Floats
are shown to :data:`SIGNIFICANT_DIGITS` significant digits; preview cells are escaped so that
item ids (``81:1:alpaca-13b|gpt-4``), texts with line breaks and Markdown characters render as
written.
"""

from __future__ import annotations

import base64
import io
import math
import re
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from judge_assets.core.db import quote_ident, row_count, table_columns
from judge_assets.core.validation import ValidationResult
from judge_assets.defs.tables import COLUMN_DESCRIPTIONS

SIGNIFICANT_DIGITS = 4
#: longest text shown in a preview cell
CELL_CHARS = 60
#: characters Markdown would read as syntax inside a table cell (CommonMark lets any be escaped with ``\``)
_MARKDOWN_SYNTAX = re.compile(r"([\\`*_\[\]<>|~&])")


def significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (0.123456 → 0.1235, 1234.56 → 1235.0)."""
    if not math.isfinite(value) or value == 0:
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def number(value: float) -> dg.MetadataValue:
    """A float for metadata, to :data:`SIGNIFICANT_DIGITS` significant digits."""
    return dg.MetadataValue.float(significant(float(value)))


def markdown_text(text: str) -> str:
    """``text`` on one line with Markdown syntax escaped, so it renders as written."""
    return _MARKDOWN_SYNTAX.sub(r"\\\1", " ".join(text.split()))


def markdown_cell(value: Any) -> str:
    """One table cell as Markdown that renders as the value: floats to 4 significant digits,
    long text cut, line breaks as spaces, ``|`` and other Markdown syntax escaped."""
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{significant(float(value)):g}"
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    text = " ".join(str(value).split())
    return markdown_text(text[: CELL_CHARS - 3] + "..." if len(text) > CELL_CHARS else text)


def frame_markdown(frame: pd.DataFrame, max_rows: int = 10) -> str:
    """A Markdown table of the first ``max_rows`` rows, every cell through :func:`markdown_cell`."""
    head = frame.head(max_rows)
    header = "| " + " | ".join(markdown_cell(c) for c in head.columns) + " |"
    rule = "|" + "|".join("---" for _ in head.columns) + "|"
    rows = ["| " + " | ".join(markdown_cell(v) for v in row) + " |" for row in head.itertuples(index=False, name=None)]
    return "\n".join([header, rule, *rows])


def column_schema(con: duckdb.DuckDBPyConnection, table: str) -> dg.TableSchema:
    """The columns of ``table`` as DuckDB describes them, with the descriptions its declaration gives."""
    described = COLUMN_DESCRIPTIONS.get(table, {})
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=name, type=dtype.strip('"'), description=described.get(name))
            for name, dtype in table_columns(con, table).items()
        ]
    )


def table_metadata(con: duckdb.DuckDBPyConnection, table: str, *, preview_rows: int = 10, order_by: str | None = None) -> dict[str, Any]:
    """``dagster/row_count``, ``dagster/column_schema`` and a Markdown preview of ``table``."""
    order = f" ORDER BY {order_by}" if order_by else ""
    preview = con.execute(f"SELECT * FROM {quote_ident(table)}{order} LIMIT {int(preview_rows)}").df()
    return {
        "dagster/row_count": dg.MetadataValue.int(row_count(con, table)),
        "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(con, table)),
        "preview": dg.MetadataValue.md(frame_markdown(preview, preview_rows)),
    }


def plot_metadata(fig) -> dg.MetadataValue:
    """A matplotlib figure as an inline PNG in Markdown (rendered in the Dagster UI)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return dg.MetadataValue.md(f"![plot](data:image/png;base64,{encoded})")


def asset_check_result(result: ValidationResult, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    metadata: dict[str, dg.MetadataValue] = {
        "summary": dg.MetadataValue.text(result.summary()),
        "expectations": dg.MetadataValue.int(len(result.expectations)),
    }
    for key, value in result.stats.items():
        metadata[key] = number(value)
    for e in result.failures():
        metadata[f"failed: {e.frame}.{e.column} {e.name}"] = dg.MetadataValue.json(
            {"unexpected_count": e.unexpected_count, "element_count": e.element_count, "failing_rows": e.failing_rows}
        )
    return dg.AssetCheckResult(passed=result.passed, severity=severity, metadata=metadata)
