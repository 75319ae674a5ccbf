"""Materialization metadata in one place: row counts, Markdown previews, plots."""

from __future__ import annotations

import base64
import io
from typing import Any

import dagster as dg
import duckdb
import pandas as pd

from judge_assets.core.db import quote_ident, row_count
from judge_assets.core.validation import ValidationResult


def frame_markdown(frame: pd.DataFrame, max_rows: int = 10) -> str:
    """A Markdown table of the first ``max_rows`` rows (long text cut to 60 characters)."""
    head = frame.head(max_rows).copy()
    for col in head.columns:
        if head[col].dtype == object:
            head[col] = head[col].map(lambda v: (str(v)[:57] + "...") if len(str(v)) > 60 else v)
    return head.to_markdown(index=False)


def table_metadata(con: duckdb.DuckDBPyConnection, table: str, *, preview_rows: int = 10, order_by: str | None = None) -> dict[str, Any]:
    """``dagster/row_count`` and a Markdown preview of ``table``."""
    order = f" ORDER BY {order_by}" if order_by else ""
    preview = con.execute(f"SELECT * FROM {quote_ident(table)}{order} LIMIT {int(preview_rows)}").df()
    return {
        "dagster/row_count": dg.MetadataValue.int(row_count(con, table)),
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
        metadata[key] = dg.MetadataValue.float(float(value))
    for e in result.failures():
        metadata[f"failed: {e.frame}.{e.column} {e.name}"] = dg.MetadataValue.json(
            {"unexpected_count": e.unexpected_count, "element_count": e.element_count, "failing_rows": e.failing_rows}
        )
    return dg.AssetCheckResult(passed=result.passed, severity=severity, metadata=metadata)
