"""Running the asset graph from the command line: the Dagster instance, batch partitions, jobs.

``judge-assets run`` and ``ingest`` call these; they run the same Definitions as the web UI on
the same instance (``DAGSTER_HOME``), so their runs show up there.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from judge_assets.config import PACKAGE_DIR, settings

#: The instance settings shipped with the package (telemetry off, pool limit 1).
DAGSTER_YAML = PACKAGE_DIR / "dagster.yaml"


class UsageError(Exception):
    """A command-line mistake the user can fix (printed without a traceback)."""


def ensure_dagster_home() -> Path:
    """Create ``DAGSTER_HOME`` with the shipped dagster.yaml if missing; point this process at it."""
    home = settings().dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        shutil.copyfile(DAGSTER_YAML, config)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    return home


def add_partitions(batch_ids: list[str]) -> None:
    """Add the batches not yet known to the instance as ``annotation_batches`` partitions."""
    import dagster as dg

    from judge_assets.defs.sources import annotation_batches

    instance = dg.DagsterInstance.get()
    new = [b for b in batch_ids if not instance.has_dynamic_partition(annotation_batches.name, b)]
    if new:
        instance.add_dynamic_partitions(annotation_batches.name, new)


def _cli_logger():
    """A Dagster logger printing one line per asset message and step outcome (no run ids)."""
    import dagster as dg

    class StepFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            meta = record.__dict__.get("dagster_meta") or {}
            event = meta.get("dagster_event")
            step = meta.get("step_key") or ""
            if event is not None:
                kind = event.event_type_value
                if kind == "STEP_FAILURE":
                    error = event.step_failure_data.error
                    while error is not None and error.cause is not None and "Error occurred while" in error.message:
                        error = error.cause
                    detail = error.message.strip() if error is not None else meta.get("orig_message")
                    return f"  ✗ {step}: {detail}"
                if kind == "ASSET_CHECK_EVALUATION":
                    data = event.event_specific_data
                    mark = "✓" if data.passed else ("✗" if data.severity.value == "ERROR" else "!")
                    return f"    {mark} check {data.check_name} on {data.asset_key.to_user_string()}"
                return f"  ✓ {step}" if kind == "STEP_SUCCESS" else ""
            return f"    {step}: {meta.get('orig_message', record.getMessage())}"

    class SkipEmpty(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return bool(StepFormatter().format(record))

    @dg.logger
    def cli(_init_context):
        logger = logging.getLogger("judge_assets.cli.run")
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(StepFormatter())
        handler.addFilter(SkipEmpty())
        logger.handlers = [handler]
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        return logger

    return cli


def register_source_batches() -> list[str]:
    """Register the configured source's batches in the database and the Dagster instance."""
    from judge_assets.core.db import connect
    from judge_assets.core.sources.batches import record_batch, source_batches

    s = settings()
    batches = source_batches(s.source, s.source_split)
    con = connect(s.db_path)
    try:
        for batch in batches:
            record_batch(con, batch)
    finally:
        con.close()
    ids = [b.batch_id for b in batches]
    add_partitions(ids)
    return ids


def materialize(select: str | None = None, partitions: list[str] | None = None) -> bool:
    """Materialize the selected assets: each batch partition of ``raw_judgments``, then the rest.

    ``select`` uses Dagster's selection syntax (``judgments+``, ``group:consensus``,
    ``key:items``); default: everything. Returns True when every step succeeded.
    """
    import dagster as dg
    from tqdm import tqdm

    from judge_assets.definitions import defs

    graph_assets = defs.resolve_asset_graph()
    try:
        selection = dg.AssetSelection.from_string(select) if select else dg.AssetSelection.all()
        chosen = (selection | selection.required_multi_asset_neighbors()).resolve(graph_assets)
    except Exception as exc:  # noqa: BLE001 - Dagster raises several types for a bad selection
        raise UsageError(f"--select {select!r}: {exc}") from exc
    if not chosen:
        raise UsageError(f"--select {select!r} matches no asset; `judge-assets sql --list` shows the tables")
    raw_key = dg.AssetKey("raw_judgments")
    run_defs = dg.Definitions(
        assets=list(defs.assets or []),
        asset_checks=list(defs.asset_checks or []),
        resources=defs.resources,
        loggers={"cli": _cli_logger()},
        executor=dg.in_process_executor,
        jobs=[
            dg.define_asset_job("judge_assets_cli_batches", selection=dg.AssetSelection.assets(raw_key)),
            dg.define_asset_job("judge_assets_cli", selection=dg.AssetSelection.assets(*(chosen - {raw_key}))),
        ],
    )
    instance = dg.DagsterInstance.get()
    run_config = {"loggers": {"cli": {}}}
    ok = True
    if raw_key in chosen:
        job = run_defs.resolve_job_def("judge_assets_cli_batches")
        for batch_id in tqdm(partitions or [], desc="annotation batches", unit="batch", file=sys.stdout, disable=None):
            result = job.execute_in_process(instance=instance, partition_key=batch_id, run_config=run_config, raise_on_error=False)
            ok &= result.success
    if ok and chosen - {raw_key}:
        result = run_defs.resolve_job_def("judge_assets_cli").execute_in_process(
            instance=instance, run_config=run_config, raise_on_error=False
        )
        ok &= result.success
    return ok
