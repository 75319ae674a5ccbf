"""Assets of the ``sources`` group: annotation batches as they were read, and MT-Bench questions."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from judge_assets.config import BUNDLED_DATA_DIR
from judge_assets.core.judgments import QUESTIONS_TABLE, load_questions
from judge_assets.core.sources import RAW_TABLE, load_batch, registered_batch, validate_batch, write_batch
from judge_assets.defs.metadata import frame_markdown, table_metadata
from judge_assets.defs.resources import DB_POOL

#: One partition per annotation batch; batches are added at run time (``judge-assets run``
#: registers the configured source, ``judge-assets ingest`` and the inbox sensor add files).
annotation_batches = dg.DynamicPartitionsDefinition(name="annotation_batches")


@dg.asset(
    partitions_def=annotation_batches,
    group_name="sources",
    kinds={"duckdb"},
    pool=DB_POOL,
    description="Rows exactly as read from each annotation batch, plus batch_id, source, source_row (1-based) and ingested_at.",
)
def raw_judgments(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    batch_id = context.partition_key
    with duckdb.get_connection() as con:
        batch = registered_batch(con, batch_id)
    context.log.info(f"loading batch {batch_id} from {batch.label}")
    table = load_batch(batch)
    schema = validate_batch(table, batch.label, allow_duplicates=True)
    with duckdb.get_connection() as con:
        n = write_batch(con, batch, table, schema)
        total = con.execute(f"SELECT count(*) FROM {RAW_TABLE}").fetchone()[0]
    context.log.info(f"batch {batch_id}: {n} rows ({schema} schema); {total} rows over all batches")
    return dg.MaterializeResult(
        metadata={
            "dagster/partition_row_count": n,
            "rows_all_batches": total,
            "schema": schema,
            "source": batch.label,
            "preview": dg.MetadataValue.md(frame_markdown(table.slice(0, 5).to_pandas())),
        }
    )


@dg.asset(
    group_name="sources",
    kinds={"duckdb"},
    pool=DB_POOL,
    description="MT-Bench questions (FastChat question.jsonl, bundled): category, turns and reference answers per question_id.",
)
def mt_bench_questions(duckdb: DuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        load_questions(con, BUNDLED_DATA_DIR / "question.jsonl")
        return dg.MaterializeResult(metadata=table_metadata(con, QUESTIONS_TABLE, preview_rows=5))
