"""Group ``reports``: the model leaderboard, the consensus benchmark, annotator drift and what to label next."""

import dagster as dg

from judge_assets.core.consensus.active_learning import LABEL_NEXT_TABLE, build_label_next
from judge_assets.core.db import quote_ident, replace_table, replace_tables, table_columns
from judge_assets.core.labels import stored_label_set
from judge_assets.core.plots import plot_annotator_drift, plot_benchmark, plot_leaderboard
from judge_assets.core.reports import consensus_benchmark as cb
from judge_assets.core.reports.history import HISTORY_TABLE, append_annotator_history
from judge_assets.core.reports.leaderboard import comparison_counts
from judge_assets.core.reports.leaderboard import model_leaderboard as fit_leaderboard
from judge_assets.defs.automation import EVALUATION_TAGS, evaluation_cadence, rows_seen_metadata
from judge_assets.defs.metadata import frame_markdown, number, plot_metadata, table_metadata
from judge_assets.defs.resources import JudgeDuckDBResource
from judge_assets.defs.tables import table_asset

GROUP = "reports"


@table_asset(
    GROUP,
    deps=["consensus_labels", "judgments"],
    kinds=("duckdb", "python"),
)
def model_leaderboard(duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    """Bradley-Terry model ratings (Elo scale, mean 1000, ties = half a win) with 95%
    bootstrap intervals (1,000 multinomial resamples of the per-pair outcome counts, seed 0), three
    ways side by side: from consensus labels (one comparison per item), raw human votes and
    LLM-judge votes (one per vote); DuckDB counts the comparisons, so the fit costs the same at any size.
    Columns: source, model, rating, ci_low, ci_high, rank, n_comparisons."""
    with duckdb.get_connection() as con:
        board = fit_leaderboard(comparison_counts(con))
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


#: ``items`` columns the benchmark's classifier prior reads (the rest are not needed).
ITEM_COLUMNS = ("item_id", "turn", "model_a", "model_b", "category", "answers_a", "answers_b", "user_turns")


class BenchmarkConfig(dg.Config):
    """Run options of the consensus benchmark (launchpad-editable)."""

    seeds: list[int] = list(cb.DEFAULT_SEEDS)
    """One held-out split per seed."""
    min_human_votes: int = 3
    """Items with at least this many human votes are evaluated (one of them is hidden)."""
    include_glad: bool = False
    """Also benchmark crowd-kit GLAD (the slowest method: about 5 s per seed on MT-Bench, which
    would double the asset's runtime; ``benchmarks/consensus_quality.py`` includes it)."""
    max_votes: int = 20_000
    """Every method is refitted once per seed, so the benchmark runs on a bounded sample: whole
    items in item-id hash order while their votes stay within this many (all items below it:
    MT-Bench has 5.8K votes), so its cost does not grow with the data (5 minutes at 1M votes
    without it). The metadata says what was sampled (``sample``)."""


#: The benchmark's items: whole items in item-id hash order (stable as data grows) while the votes stay within ``?``.
SAMPLE_ITEMS_SQL = (
    "SELECT item_id FROM (SELECT item_id, sum(count(*)) OVER (ORDER BY hash(item_id), item_id) AS votes_so_far "
    "FROM judgments GROUP BY item_id) WHERE votes_so_far <= ?"
)


@table_asset(
    GROUP,
    deps=["judgments", "items", "llm_judge_scores"],
    description="Held-out vote benchmark: hide one human vote per item with 3+ human votes, compute every consensus "
    "method from the rest, count agreement with the hidden vote; mean ± std over seeds. Writes "
    "consensus_benchmark (summary, default method marked) and consensus_benchmark_runs (per seed). Runs on the "
    "evaluation cadence (daily after new data, or when the votes grew 10%), never on every batch.",
    kinds=("duckdb", "python"),
    automation_condition=evaluation_cadence(),
    tags=EVALUATION_TAGS,
)
def consensus_benchmark(context: dg.AssetExecutionContext, config: BenchmarkConfig, duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        rows_seen = rows_seen_metadata(con)
        classes = stored_label_set(con).labels
        all_votes, all_items = con.execute("SELECT count(*), count(DISTINCT item_id) FROM judgments").fetchone()
        where, params = (f"WHERE item_id IN ({SAMPLE_ITEMS_SQL})", [config.max_votes]) if all_votes > config.max_votes else ("", [])
        judgments = con.execute(f"SELECT item_id, annotator, annotator_kind, label FROM judgments {where}", params).df()
        present = table_columns(con, "items")
        columns = ", ".join(quote_ident(c) for c in ITEM_COLUMNS if c in present)
        items = con.execute(f"SELECT {columns} FROM items {where} ORDER BY item_id", params).df()
        sample = (f"{len(judgments):,} of {all_votes:,} votes, on {len(items):,} of {all_items:,} items (whole items in item-id "
                  f"hash order up to max_votes {config.max_votes:,}; raise it in the launchpad to use more)" if where else f"all {all_votes:,} votes")
        scores = con.execute("SELECT * FROM llm_judge_scores").df()
    methods = cb.default_methods(judgments, scores, include_glad=config.include_glad)
    context.log.info(f"benchmarking {len(methods)} methods on {len(config.seeds)} seeds: {', '.join(methods)}")
    runs = cb.run_benchmark(
        judgments, items, classes, methods, tuple(config.seeds), min_human_votes=config.min_human_votes, llm_scores=scores
    )
    summary = cb.summarize(runs)
    with duckdb.get_connection() as con:
        replace_tables(con, {"consensus_benchmark": summary, "consensus_benchmark_runs": runs})
    if runs.empty:
        reason = cb.skip_reason(judgments, config.min_human_votes)
        context.log.warning(f"consensus benchmark: nothing to evaluate: {reason}")
        return dg.MaterializeResult(
            metadata={"dagster/row_count": 0, "skipped": reason, "n_items": 0, "seeds": dg.MetadataValue.json(list(config.seeds)),
                      **rows_seen, "sample": sample}
        )
    best = summary.iloc[0]
    default = summary.loc[summary["is_default"], "mean_accuracy"]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(summary),
            "summary": dg.MetadataValue.md(cb.markdown_table(summary)),
            "plot": plot_metadata(plot_benchmark(summary)),
            "best_method": str(best["method"]),
            "default_method": cb.DEFAULT_METHOD,
            "default_accuracy": number(default.iloc[0]),
            "n_items": int(runs["n_items"].max()),
            "seeds": dg.MetadataValue.json(list(config.seeds)),
            **rows_seen,
            "sample": sample,
        }
    )


@table_asset(
    GROUP,
    deps=["annotator_stats"],
    description="annotator_stats at each snapshot (one per materialization, keyed by the latest batch): query drift of "
    "an annotator's quality across batches. Snapshots follow the evaluation cadence (daily after new data, or when "
    "the votes grew 10%, or on demand), not every batch.",
    automation_condition=evaluation_cadence(),
    tags=EVALUATION_TAGS,
)
def annotator_stats_history(duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        rows_seen = rows_seen_metadata(con)
        number, latest = append_annotator_history(con)
        history = con.execute(f"SELECT * FROM {HISTORY_TABLE}").df()
        return dg.MaterializeResult(
            metadata={
                **table_metadata(con, HISTORY_TABLE, order_by="snapshot DESC, num_examples_labeled DESC"),
                "snapshot": number,
                "latest_batch_id": latest or "",
                "quality_over_batches": plot_metadata(plot_annotator_drift(history)),
                **rows_seen,
            }
        )


@table_asset(
    GROUP,
    deps=["judgments", "items", "model_probs", "majority_vote_labels"],
    description="Items ranked by cleanlab's ActiveLab score (votes from judgments, prior from model_probs): "
    "label_next_rank 1 = the item whose next label helps most; with the item's text and vote count.",
    kinds=("duckdb", "python"),
)
def label_next(duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        n = build_label_next(con)
        unlabelled = con.execute(f"SELECT count(*) FILTER (WHERE num_annotations = 0) FROM {LABEL_NEXT_TABLE}").fetchone()[0]
        return dg.MaterializeResult(
            metadata={**table_metadata(con, LABEL_NEXT_TABLE, order_by="label_next_rank"), "items": n, "unlabelled_items": unlabelled}
        )
