"""Asset of the ``reports`` group: the held-out vote benchmark of the consensus methods.

Reads ``judgments`` and ``items`` (and ``llm_judge_scores`` when that table exists) with SQL,
runs :func:`judge_assets.core.consensus_benchmark.run_benchmark` and writes the per-seed runs and
the summary in one transaction, with the summary as a Markdown table and a bar chart.
"""

import dagster as dg
from dagster_duckdb import DuckDBResource

from judge_assets.core import consensus_benchmark as cb
from judge_assets.core.db import quote_ident, replace_tables, table_columns
from judge_assets.core.judgments import stored_label_set
from judge_assets.defs.metadata import plot_metadata
from judge_assets.defs.resources import DB_POOL

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


@dg.asset(
    deps=["judgments", "items", "llm_judge_scores"],
    group_name="reports",
    kinds={"duckdb", "python"},
    pool=DB_POOL,
    description=(
        "Held-out vote benchmark: hide one human vote per item with 3+ human votes, compute every consensus "
        "method from the rest, count agreement with the hidden vote; mean ± std over seeds. Writes "
        "consensus_benchmark (summary, default method marked) and consensus_benchmark_runs (per seed)."
    ),
)
def consensus_benchmark(context: dg.AssetExecutionContext, config: BenchmarkConfig, duckdb: DuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        classes = stored_label_set(con).labels
        judgments = con.execute("SELECT item_id, annotator, annotator_kind, label FROM judgments").df()
        present = table_columns(con, "items")
        columns = ", ".join(quote_ident(c) for c in ITEM_COLUMNS if c in present)
        items = con.execute(f"SELECT {columns} FROM items ORDER BY item_id").df()
        scores = con.execute("SELECT * FROM llm_judge_scores").df()
    methods = cb.default_methods(judgments, scores, include_glad=config.include_glad)
    context.log.info(f"benchmarking {len(methods)} methods on {len(config.seeds)} seeds: {', '.join(methods)}")
    runs = cb.run_benchmark(
        judgments, items, classes, methods, tuple(config.seeds), min_human_votes=config.min_human_votes, llm_scores=scores
    )
    summary = cb.summarize(runs)
    with duckdb.get_connection() as con:
        replace_tables(con, {"consensus_benchmark": summary, "consensus_benchmark_runs": runs})
    best = summary.iloc[0]
    default = summary.loc[summary["is_default"], "mean_accuracy"]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(summary),
            "summary": dg.MetadataValue.md(cb.markdown_table(summary)),
            "plot": plot_metadata(cb.plot_benchmark(summary)),
            "best_method": str(best["method"]),
            "default_method": cb.DEFAULT_METHOD,
            "default_accuracy": float(default.iloc[0]),
            "n_items": int(runs["n_items"].max()),
            "seeds": dg.MetadataValue.json(list(config.seeds)),
        }
    )
