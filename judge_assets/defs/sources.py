"""Group ``sources``: annotation batches as they were read, the MT-Bench questions, and the inbox sensor.

- ``raw_judgments`` is partitioned by annotation batch (``annotation_batches``, dynamic): the CLI
  registers the configured source's batches; ``judge-assets ingest`` and the ``annotation_inbox``
  sensor add files through the same gate (:func:`judge_assets.core.sources.gate.admit_files`).
- ``raw_judgments`` loads one batch per partition, or every partition of a range in one run
  (``BackfillPolicy.single_run()``: the UI's *Materialize all* → *All* launches one run for all
  batches). A batch that cannot be loaded — a bad file, or a partition added by hand in the UI
  with no file behind it — fails the run with the gate's one-line message (``dg.Failure``) and
  nothing is written.
- ``annotation_inbox`` (every 30 s when on) admits each settled file of ``JUDGE_INBOX_DIR``: an
  accepted file is copied to ``<database folder>/batches/``, registered and added as a partition
  with a run request; a refused one goes to ``<inbox>/rejected/`` with a ``.error.txt`` and a row
  in ``rejected_files``, and the tick's skip reason names it. Which bytes were ingested is read
  from the ``annotation_batches`` table, so the cursor only holds the files present in the inbox
  and in ``rejected/`` (name → size and mtime) and stays bounded.
- ``no_unresolved_rejected_files`` (check on ``raw_judgments``) fails while a refused file waits
  in ``rejected/`` and no file of its name has passed the gate since; it runs with every load of
  a batch and the sensor reports it whenever the inbox or ``rejected/`` changes.
"""


import json
import time
from pathlib import Path

import dagster as dg
import pandas as pd

from judge_assets.config import BUNDLED_DATA_DIR, settings
from judge_assets.core.db import connect
from judge_assets.core.sources.batches import (
    RAW_TABLE,
    JudgmentInputError,
    load_batch,
    registered_batch,
    validate_batch,
    write_batch,
)
from judge_assets.core.sources.gate import REJECTED_DIR, REJECTED_TABLE, Rejection, admit_files, batches_dir, unresolved_rejections
from judge_assets.core.votes.judgments import QUESTIONS_TABLE, load_questions
from judge_assets.defs.metadata import column_schema, frame_markdown, markdown_text, table_metadata
from judge_assets.defs.resources import JudgeDuckDBResource
from judge_assets.defs.tables import table_asset, table_check

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


#: where to remove a partition that has no batch behind it (README: "The Dagster UI")
DELETE_PARTITION_HINT = "remove a partition added by mistake on the raw_judgments page: ▾ beside Materialize… → Delete partitions"


@table_asset(
    GROUP,
    partitions_def=annotation_batches,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="Rows exactly as read from each annotation batch, plus batch_id, source, source_row (1-based) and ingested_at.",
    columns={
        "batch_id": "The annotation batch (partition of annotation_batches) the row came from.",
        "source": "Where the batch was read: bundled:mt_bench/<file>, a file path, or <dataset id>[<split>].",
        "source_row": "1-based row of the vote in its batch, as error messages name it.",
        "ingested_at": "When the batch was written (UTC).",
    },
)
def raw_judgments(context: dg.AssetExecutionContext, duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        try:
            batches = [registered_batch(con, batch_id) for batch_id in context.partition_keys]
        except JudgmentInputError as exc:
            raise dg.Failure(description=f"{exc}; {DELETE_PARTITION_HINT}") from None
    try:
        loaded = []
        for batch in batches:  # every batch is read and checked before any is written
            context.log.info(f"loading batch {batch.batch_id} from {batch.label}")
            table = load_batch(batch)
            loaded.append((batch, table, validate_batch(table, batch.label, allow_duplicates=True)))
        with duckdb.get_connection() as con:
            rows = {batch.batch_id: write_batch(con, batch, table, schema) for batch, table, schema in loaded}
            total = con.execute(f"SELECT count(*) FROM {RAW_TABLE}").fetchone()[0]
            columns = column_schema(con, RAW_TABLE)
    except JudgmentInputError as exc:
        raise dg.Failure(description=str(exc)) from None
    for batch_id, n in rows.items():
        context.log.info(f"batch {batch_id}: {n} rows; {total} rows over all batches")
    first_batch, first_table, schema = loaded[0]
    metadata = {
        "rows_all_batches": total,
        "schema": schema,
        "dagster/column_schema": dg.MetadataValue.table_schema(columns),
        "preview": dg.MetadataValue.md(frame_markdown(first_table.slice(0, 5).to_pandas())),
    }
    if len(rows) == 1:
        metadata["dagster/partition_row_count"] = rows[first_batch.batch_id]
        metadata["source"] = first_batch.label
    else:
        metadata["rows_by_batch"] = dg.MetadataValue.md(
            frame_markdown(pd.DataFrame({"batch_id": list(rows), "rows": list(rows.values()),
                                         "source": [b.label for b, _, _ in loaded]}), max_rows=len(rows))
        )
    return dg.MaterializeResult(metadata=metadata)


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


def _folder_state(inbox: Path, files: list[Path]) -> dict[str, list[int]]:
    """The sensor's cursor: the inbox files and the files in ``rejected/`` (keyed ``rejected/<name>``)
    → size and mtime. A change in ``rejected/`` (a refused file fixed or deleted) is noticed too."""
    state = {p.name: _fingerprint(p) for p in files if p.exists()}
    rejected = inbox / REJECTED_DIR
    if rejected.is_dir():
        state |= {f"{REJECTED_DIR}/{p.name}": _fingerprint(p) for p in rejected.iterdir() if p.is_file()}
    return state


def _rejected_part(state: dict[str, list[int]]) -> dict[str, list[int]]:
    return {k: v for k, v in state.items() if k.startswith(f"{REJECTED_DIR}/")}


REJECTIONS_CHECK = "no_unresolved_rejected_files"


def rejections_summary(rejections: list[Rejection]) -> str:
    """One line on the refused files still waiting in ``rejected/``."""
    if not rejections:
        return f"no refused annotation file waits in {REJECTED_DIR}/"
    names = ", ".join(r.file for r in rejections)
    return (f"{len(rejections)} refused annotation file(s) wait in {REJECTED_DIR}/: {names} — fix each and drop it into "
            f"the inbox again, or delete it from {REJECTED_DIR}/ (reasons in {REJECTED_TABLE} and the .error.txt files)")


def rejections_metadata(rejections: list[Rejection]) -> dict[str, dg.MetadataValue]:
    listing = "\n".join(f"- **{markdown_text(r.file)}** (refused {r.rejected_at:%Y-%m-%d %H:%M:%S}): {markdown_text(r.reason)}"
                         for r in rejections)
    return {"unresolved": dg.MetadataValue.int(len(rejections)), "rejected_files": dg.MetadataValue.md(listing or "none")}


@table_check(
    asset=raw_judgments,
    name=REJECTIONS_CHECK,
    blocking=False,
    description=f"Fails while an annotation file refused by the ingest gate waits in the inbox's {REJECTED_DIR}/ folder and "
    f"no file of its name has passed the gate since (table {REJECTED_TABLE}); lists each with its reason.",
)
def no_unresolved_rejected_files(duckdb: JudgeDuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        rejections = unresolved_rejections(con)
    return dg.AssetCheckResult(
        passed=not rejections, severity=dg.AssetCheckSeverity.ERROR, description=rejections_summary(rejections),
        metadata=rejections_metadata(rejections),
    )


def _rejections_evaluation(rejections: list[Rejection]) -> dg.AssetCheckEvaluation:
    """What :func:`no_unresolved_rejected_files` would report, for the sensor to report without a run."""
    return dg.AssetCheckEvaluation(
        asset_key=raw_judgments.key, check_name=REJECTIONS_CHECK, passed=not rejections, severity=dg.AssetCheckSeverity.ERROR,
        description=rejections_summary(rejections), metadata=rejections_metadata(rejections),
    )


@dg.sensor(
    name="annotation_inbox",
    target=[raw_judgments],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="New annotation files in JUDGE_INBOX_DIR become raw_judgments partitions (bad ones go to rejected/, "
    "listed in rejected_files and by the no_unresolved_rejected_files check).",
)
def annotation_inbox(context: dg.SensorEvaluationContext, duckdb: JudgeDuckDBResource):
    inbox = settings().inbox_dir
    files = inbox_files(inbox)
    known: dict[str, list[int]] = json.loads(context.cursor) if context.cursor else {}
    if not isinstance(known, dict):  # a cursor written by an older version
        known = {}
    pending = [p for p in files if known.get(p.name) != _fingerprint(p)]
    state = _folder_state(inbox, files)
    if not pending and _rejected_part(known) == _rejected_part(state):
        return dg.SensorResult(skip_reason=f"no new files in {inbox}", cursor=json.dumps(state))
    try:
        con = connect(duckdb.database, wait_s=SENSOR_DB_WAIT_S)
    except RuntimeError as exc:
        return dg.SkipReason(f"{exc} (the inbox is read again on the next tick)")
    try:
        admitted = admit_files(con, pending, batches_dir(duckdb.database), inbox / REJECTED_DIR) if pending else []
        rejections = unresolved_rejections(con)
    finally:
        con.close()
    new: list[str] = []
    for a in admitted:
        (context.log.warning if a.status == "refused" else context.log.info)(a.message)
        if a.status == "accepted":
            new.append(a.batch.batch_id)
    cursor = json.dumps(_folder_state(inbox, files))
    events = [_rejections_evaluation(rejections)]
    if not new:
        said = [a.message for a in admitted] or [f"no new files in {inbox}"]
        return dg.SensorResult(skip_reason=". ".join([*said, rejections_summary(rejections)]), cursor=cursor, asset_events=events)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=b, run_key=f"ingest-{b}") for b in new],
        dynamic_partitions_requests=[annotation_batches.build_add_request(new)],
        cursor=cursor,
        asset_events=events,
    )
