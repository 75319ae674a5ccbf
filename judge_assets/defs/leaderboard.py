"""The ``model_leaderboard`` asset: Bradley-Terry ratings from consensus, human and LLM votes."""

from __future__ import annotations

import dagster as dg
from dagster_duckdb import DuckDBResource

from judge_assets.core.db import replace_table
from judge_assets.core.leaderboard import model_leaderboard as fit_leaderboard
from judge_assets.core.leaderboard import plot_leaderboard
from judge_assets.defs.metadata import frame_markdown, plot_metadata, table_metadata
from judge_assets.defs.resources import DB_POOL

PAIRWISE_FILTER = "model_a IS NOT NULL AND model_b IS NOT NULL"


@dg.asset(
    group_name="reports",
    deps=["consensus_labels", "judgments"],
    kinds={"duckdb", "python"},
    pool=DB_POOL,
)
def model_leaderboard(duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Bradley-Terry model ratings (Elo scale, mean 1000, ties = half a win) with 95%
    bootstrap intervals (1,000 resamples, seed 0), three ways side by side: from consensus
    labels (one comparison per item), raw human votes and LLM-judge votes (one per vote).
    Columns: source, model, rating, ci_low, ci_high, rank, n_comparisons."""
    with duckdb.get_connection() as con:
        consensus = con.execute(
            f"SELECT model_a, model_b, consensus_label FROM consensus_labels WHERE {PAIRWISE_FILTER}"
        ).df()
        judgments = con.execute(
            f"SELECT model_a, model_b, label, annotator_kind FROM judgments WHERE {PAIRWISE_FILTER}"
        ).df()
        board = fit_leaderboard(consensus, judgments)
        replace_table(con, "model_leaderboard", board)
        metadata = table_metadata(con, "model_leaderboard", preview_rows=30)
    if board.empty:
        metadata["note"] = dg.MetadataValue.text("no pairwise comparisons (model_a/model_b) in the data")
        return dg.MaterializeResult(metadata=metadata)
    wide = board.pivot(index="model", columns="source", values="rating").round(1)
    wide = wide.sort_values(wide.columns[0], ascending=False).reset_index()
    metadata["ratings_by_source"] = dg.MetadataValue.md(frame_markdown(wide, max_rows=50))
    metadata["plot"] = plot_metadata(plot_leaderboard(board))
    return dg.MaterializeResult(metadata=metadata)
