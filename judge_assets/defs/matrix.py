"""Assets of the ``matrix`` group: the item × annotator matrix."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from judge_assets.core.matrix import build_annotator_matrix
from judge_assets.defs.metadata import table_metadata
from judge_assets.defs.resources import DB_POOL, PipelineConfig


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "annotator_matrix",
            deps=["judgments"],
            group_name="matrix",
            kinds={"duckdb"},
            description="Item × annotator label codes (one column per annotator, NULL = no vote), pivoted with DuckDB PIVOT.",
        ),
        dg.AssetSpec(
            "annotator_matrix_columns",
            deps=["judgments"],
            group_name="matrix",
            kinds={"duckdb"},
            description="Which column of annotator_matrix holds which annotator.",
        ),
    ],
    pool=DB_POOL,
)
def annotator_matrix(context: dg.AssetExecutionContext, duckdb: DuckDBResource, pipeline: PipelineConfig):
    with duckdb.get_connection() as con:
        summary = build_annotator_matrix(con, pipeline.matrix_max_annotators)
        note = (
            f"wide: {summary.n_items} items × {summary.n_annotators} annotator columns"
            if summary.wide
            else f"long form kept: {summary.n_annotators} annotators exceed matrix_max_annotators="
            f"{pipeline.matrix_max_annotators}, so no wide table was built (columns item_id, annotator, label_code)"
        )
        context.log.info(note)
        yield dg.MaterializeResult(
            asset_key="annotator_matrix",
            metadata={
                **table_metadata(con, "annotator_matrix", preview_rows=5),
                "layout": note,
                "wide": summary.wide,
                "renamed_columns": dg.MetadataValue.json(summary.renamed),
            },
        )
        yield dg.MaterializeResult(asset_key="annotator_matrix_columns", metadata=table_metadata(con, "annotator_matrix_columns"))
