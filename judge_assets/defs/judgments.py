"""Assets of the ``items`` group: votes (``judgments``), the class set, and the items judged."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from judge_assets.core.judgments import build_items, build_judgments
from judge_assets.defs.metadata import table_metadata
from judge_assets.defs.resources import DB_POOL, PipelineConfig


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "judgments",
            deps=["raw_judgments", "mt_bench_questions"],
            group_name="items",
            kinds={"duckdb"},
            description="One row per (item, annotator) vote; pairs in canonical order, winners flipped to match, "
            "repeated votes resolved (the last one counts).",
        ),
        dg.AssetSpec(
            "label_set",
            deps=["raw_judgments"],
            group_name="items",
            kinds={"duckdb"},
            description="The class set and its integer codes (pairwise: A=0, B=1, tie=2).",
        ),
    ],
    pool=DB_POOL,
)
def judgments(context: dg.AssetExecutionContext, duckdb: DuckDBResource, pipeline: PipelineConfig):
    with duckdb.get_connection() as con:
        summary = build_judgments(con, tuple(pipeline.llm_annotators), tuple(pipeline.labels))
        context.log.info(
            f"{summary.n_votes} votes on {summary.n_items} items by {summary.n_annotators} annotators "
            f"({summary.duplicates_dropped} repeated votes dropped, {summary.flipped} flipped to canonical order)"
        )
        by_kind = con.execute(
            "SELECT annotator_kind, count(*), count(DISTINCT annotator), count(DISTINCT item_id) FROM judgments GROUP BY 1 ORDER BY 1"
        ).fetchall()
        yield dg.MaterializeResult(
            asset_key="judgments",
            metadata={
                **table_metadata(con, "judgments"),
                "raw_rows": summary.n_raw_rows,
                "votes": summary.n_votes,
                "items": summary.n_items,
                "annotators": summary.n_annotators,
                "duplicates_resolved": dg.MetadataValue.int(summary.duplicates_dropped),
                "flipped_to_canonical_order": summary.flipped,
                "tie_votes": summary.ties,
                "by_annotator_kind": dg.MetadataValue.md(
                    "| kind | votes | annotators | items |\n|---|---|---|---|\n"
                    + "\n".join(f"| {k} | {v} | {a} | {i} |" for k, v, a, i in by_kind)
                ),
            },
        )
        yield dg.MaterializeResult(asset_key="label_set", metadata={**table_metadata(con, "label_set"), "classes": ", ".join(summary.labels)})


@dg.asset(
    deps=["judgments"],
    group_name="items",
    kinds={"duckdb"},
    pool=DB_POOL,
    description="One row per item: question, turn, canonical model pair, category, and the texts a judge reads.",
)
def items(duckdb: DuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        n = build_items(con)
        human = con.execute("SELECT count(*) FILTER (WHERE n_human_votes > 0) FROM items").fetchone()[0]
        return dg.MaterializeResult(metadata={**table_metadata(con, "items", preview_rows=5), "items": n, "human_judged_items": human})
