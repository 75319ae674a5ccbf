"""Group ``sources``: annotation batches as they were read, the MT-Bench questions, and the inbox sensor.

- ``raw_judgments`` is partitioned by annotation batch (``annotation_batches``, dynamic): the CLI
  registers the configured source's batches; ``judge-assets ingest`` and the ``annotation_inbox``
  sensor add files through the same gate (:func:`judge_assets.core.sources.gate.admit_files`).
- ``annotation_inbox`` (every 30 s when on) admits each settled file of ``JUDGE_INBOX_DIR``: an
  accepted file is copied to ``<database folder>/batches/``, registered and added as a partition
  with a run request; a refused one goes to ``<inbox>/rejected/`` with a ``.error.txt``. Which
  bytes were ingested is read from the ``annotation_batches`` table, so the cursor only holds the
  files present in the inbox (name → size and mtime) and stays bounded.
"""


import json
import time
from pathlib import Path

import dagster as dg

from judge_assets.config import BUNDLED_DATA_DIR, settings
from judge_assets.core.db import connect
from judge_assets.core.sources.batches import RAW_TABLE, load_batch, registered_batch, validate_batch, write_batch
from judge_assets.core.sources.gate import REJECTED_DIR, admit_files, batches_dir
from judge_assets.core.votes.judgments import QUESTIONS_TABLE, load_questions
from judge_assets.defs.metadata import frame_markdown, table_metadata
from judge_assets.defs.resources import JudgeDuckDBResource
from judge_assets.defs.tables import table_asset

GROUP = "sources"

#: One partition per annotation batch; batches are added at run time (``judge-assets run``
#: registers the configured source, ``judge-assets ingest`` and the inbox sensor add files).
annotation_batches = dg.DynamicPartitionsDefinition(name="annotation_batches")

#: a file modified less than this many seconds ago may still be being written: next tick
SETTLE_S = 2.0
#: how long the sensor waits for the database write lock before skipping the tick
SENSOR_DB_WAIT_S = 5.0
#: name endings of files still being copied (ignored, as are hidden files)
IN_PROGRESS_SUFFIXES = (".tmp", ".partial", ".crdownload", ".part")


@table_asset(
    GROUP,
    partitions_def=annotation_batches,
    description="Rows exactly as read from each annotation batch, plus batch_id, source, source_row (1-based) and ingested_at.",
)
def raw_judgments(context: dg.AssetExecutionContext, duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
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


@table_asset(
    GROUP,
    description="MT-Bench questions (FastChat question.jsonl, bundled): category, turns and reference answers per question_id.",
)
def mt_bench_questions(duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        load_questions(con, BUNDLED_DATA_DIR / "question.jsonl")
        return dg.MaterializeResult(metadata=table_metadata(con, QUESTIONS_TABLE, preview_rows=5))


def inbox_files(inbox: Path, settle_s: float = SETTLE_S) -> list[Path]:
    """Files waiting in ``inbox`` (not in sub-folders), oldest first; skips hidden, partial and fresh files."""
    if not inbox.is_dir():
        return []
    now = time.time()
    found = [
        p
        for p in inbox.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and not p.name.lower().endswith(IN_PROGRESS_SUFFIXES)
        and now - p.stat().st_mtime >= settle_s
    ]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def _fingerprint(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


@dg.sensor(
    name="annotation_inbox",
    target=[raw_judgments],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="New annotation files in JUDGE_INBOX_DIR become raw_judgments partitions (bad ones go to rejected/).",
)
def annotation_inbox(context: dg.SensorEvaluationContext, duckdb: JudgeDuckDBResource):
    inbox = settings().inbox_dir
    files = inbox_files(inbox)
    known: dict[str, list[int]] = json.loads(context.cursor) if context.cursor else {}
    if not isinstance(known, dict):  # a cursor written by an older version
        known = {}
    pending = [p for p in files if known.get(p.name) != _fingerprint(p)]
    if not pending:
        return dg.SensorResult(skip_reason=f"no new files in {inbox}", cursor=json.dumps({p.name: _fingerprint(p) for p in files}))
    try:
        con = connect(duckdb.database, wait_s=SENSOR_DB_WAIT_S)
    except RuntimeError as exc:
        return dg.SkipReason(f"{exc} (the inbox is read again on the next tick)")
    try:
        admitted = admit_files(con, pending, batches_dir(duckdb.database), inbox / REJECTED_DIR)
    finally:
        con.close()
    new: list[str] = []
    for a in admitted:
        (context.log.warning if a.status == "refused" else context.log.info)(a.message)
        if a.status == "accepted":
            new.append(a.batch.batch_id)
    cursor = json.dumps({p.name: _fingerprint(p) for p in files if p.exists()})
    if not new:
        return dg.SensorResult(skip_reason="no new valid annotation files", cursor=cursor)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=b, run_key=f"ingest-{b}") for b in new],
        dynamic_partitions_requests=[annotation_batches.build_add_request(new)],
        cursor=cursor,
    )
