"""New annotation batches after the first build: the inbox sensor, automation, drift and label-next assets.

- ``annotation_inbox`` (sensor, every 30 s when on): each new file in ``JUDGE_INBOX_DIR`` passes the
  strict gate (:func:`judge_assets.core.ingest.check_file`); an accepted file is copied to
  ``<database folder>/batches/``, registered in ``annotation_batches`` and added as a partition of
  ``raw_judgments`` with a run request for that partition; a refused one goes to
  ``<inbox>/rejected/`` with a ``.error.txt``. The cursor holds the content hashes seen; the same bytes under another name are not ingested twice.
- Declarative automation: :func:`with_automation` gives every unpartitioned asset
  ``AutomationCondition.eager()`` (a failed batch does not block it: :func:`eager_over_batches`), and ``judge_assets_automation`` (an
  ``AutomationConditionSensorDefinition``) evaluates it, so a new ``raw_judgments`` partition
  rebuilds everything downstream once, over all batches. Old partitions are never touched.
  Both sensors start STOPPED; switch them on in the UI (Automation tab) or with
  ``dagster sensor start annotation_inbox judge_assets_automation -w workspace.yaml``.
- ``annotator_stats_history``: one appended snapshot of ``annotator_stats`` per rebuild (drift).
- ``label_next``: items ranked by cleanlab's ActiveLab score (label the lowest first).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from judge_assets.config import settings
from judge_assets.core.db import connect
from judge_assets.core.ingest import (
    HISTORY_TABLE,
    LABEL_NEXT_TABLE,
    REJECTED_DIR,
    append_annotator_history,
    build_label_next,
    check_file,
    content_key,
    ingested_batch,
    plot_annotator_drift,
    quarantine,
    stage_file,
    stored_classes,
    stored_column_types,
)
from judge_assets.core.sources import JudgmentInputError, file_batch, record_batch
from judge_assets.defs.metadata import plot_metadata, table_metadata
from judge_assets.defs.resources import DB_POOL
from judge_assets.defs.sources import annotation_batches, raw_judgments

#: a file modified less than this many seconds ago may still be being written: next tick
SETTLE_S = 2.0
#: how long the sensor waits for the database write lock before skipping the tick
SENSOR_DB_WAIT_S = 5.0
#: name endings of files still being copied (ignored, as are hidden files)
IN_PROGRESS_SUFFIXES = (".tmp", ".partial", ".crdownload", ".part")


def batches_dir(db_path: str | Path) -> Path:
    """Where accepted files are kept: ``batches/`` beside the database file (default ``data/batches``)."""
    return Path(db_path).resolve().parent / "batches"


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


@dg.sensor(
    name="annotation_inbox",
    target=[raw_judgments],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="New annotation files in JUDGE_INBOX_DIR become raw_judgments partitions (bad ones go to rejected/).",
)
def annotation_inbox(context: dg.SensorEvaluationContext, duckdb: DuckDBResource):
    inbox = settings().inbox_dir
    files = inbox_files(inbox)
    if not files:
        return dg.SkipReason(f"no new files in {inbox}")
    seen: set[str] = set(json.loads(context.cursor)) if context.cursor else set()
    pending: list[tuple[Path, str]] = []
    for path in files:
        try:
            batch_id = file_batch(path).batch_id
        except JudgmentInputError as exc:
            context.log.warning(f"refused: {exc} → moved to {quarantine(path, exc, inbox / REJECTED_DIR)}")
            continue
        if content_key(batch_id) not in seen:
            pending.append((path, batch_id))
    if not pending:
        context.update_cursor(json.dumps(sorted(seen)))
        return dg.SkipReason("no new annotation files")
    try:
        con = connect(duckdb.database, wait_s=SENSOR_DB_WAIT_S)
    except RuntimeError as exc:
        return dg.SkipReason(f"{exc} (the inbox is read again on the next tick)")
    new: list[str] = []
    try:
        classes, types = stored_classes(con), stored_column_types(con)
        for path, batch_id in pending:
            done = ingested_batch(con, batch_id)
            if done:
                context.log.info(f"{path.name}: already ingested as batch {done}; nothing to do")
            elif context.instance.has_dynamic_partition(annotation_batches.name, batch_id):
                context.log.info(f"{path.name}: batch {batch_id} is registered but not loaded: re-run its partition of raw_judgments")
            else:
                try:
                    check_file(path, classes, types)
                except JudgmentInputError as exc:  # a refused file leaves the inbox; its key stays unseen
                    context.log.warning(f"refused: {exc} → moved to {quarantine(path, exc, inbox / REJECTED_DIR)}")
                    continue
                batch = stage_file(path, batches_dir(duckdb.database))
                record_batch(con, batch)
                context.log.info(f"{path.name}: accepted as batch {batch.batch_id} ({batch.location})")
                new.append(batch.batch_id)
            seen.add(content_key(batch_id))
    finally:
        con.close()
    cursor = json.dumps(sorted(seen))
    if not new:
        context.update_cursor(cursor)
        return dg.SkipReason("no new valid annotation files")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=b, run_key=f"ingest-{b}") for b in new],
        dynamic_partitions_requests=[annotation_batches.build_add_request(new)],
        cursor=cursor,
    )


def eager_over_batches() -> dg.AutomationCondition:
    """``AutomationCondition.eager()``, except that a ``raw_judgments`` partition that is missing (its run
    failed, or it is registered but not loaded yet) does not hold back the downstream assets: they are
    rebuilt over the batches that did load. A batch still loading does hold them back (in progress)."""
    return dg.AutomationCondition.eager().replace(
        "any_deps_missing", dg.AutomationCondition.any_deps_missing().ignore(dg.AssetSelection.assets("raw_judgments"))
    )


def with_automation(
    assets: Sequence[dg.AssetsDefinition | dg.AssetSpec], condition: dg.AutomationCondition | None = None
) -> list:
    """``assets`` with ``condition`` (default :func:`eager_over_batches`) on every unpartitioned asset
    that has no condition yet. Partitioned assets (``raw_judgments``) are left to the inbox sensor and
    ``judge-assets ingest``; unpartitioned ones then rebuild once after any upstream partition lands.
    Apply in definitions.py: ``assets=with_automation(ASSETS)``, with :data:`automation_sensors`.
    """
    condition = condition or eager_over_batches()

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.partitions_def is not None or spec.automation_condition is not None:
            return spec
        return spec.replace_attributes(automation_condition=condition)

    return list(dg.map_asset_specs(apply, assets))


judge_assets_automation = dg.AutomationConditionSensorDefinition(
    "judge_assets_automation",
    target=dg.AssetSelection.all(),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Evaluates the assets' automation conditions (eager: rebuild after an upstream update).",
)

automation_sensors = [annotation_inbox, judge_assets_automation]


@dg.asset(
    deps=["annotator_stats"],
    group_name="reports",
    kinds={"duckdb"},
    pool=DB_POOL,
    description="annotator_stats after each rebuild (one snapshot per materialization, keyed by the latest batch): "
    "query drift of an annotator's quality across batches.",
)
def annotator_stats_history(duckdb: DuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        number, latest = append_annotator_history(con)
        history = con.execute(f"SELECT * FROM {HISTORY_TABLE}").df()
        return dg.MaterializeResult(
            metadata={
                **table_metadata(con, HISTORY_TABLE, order_by="snapshot DESC, num_examples_labeled DESC"),
                "snapshot": number,
                "latest_batch_id": latest or "",
                "quality_over_batches": plot_metadata(plot_annotator_drift(history)),
            }
        )


@dg.asset(
    deps=["judgments", "items", "model_probs", "majority_vote_labels"],
    group_name="reports",
    kinds={"duckdb", "python"},
    pool=DB_POOL,
    description="Items ranked by cleanlab's ActiveLab score (votes from judgments, prior from model_probs): "
    "label_next_rank 1 = the item whose next label helps most; with the item's text and vote count.",
)
def label_next(duckdb: DuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        n = build_label_next(con)
        unlabelled = con.execute(f"SELECT count(*) FILTER (WHERE num_annotations = 0) FROM {LABEL_NEXT_TABLE}").fetchone()[0]
        return dg.MaterializeResult(
            metadata={**table_metadata(con, LABEL_NEXT_TABLE, order_by="label_next_rank"), "items": n, "unlabelled_items": unlabelled}
        )


ingest_assets = [annotator_stats_history, label_next]
