"""Running the asset graph from the command line: the Dagster instance, batch partitions, jobs.

``judge-assets run`` and ``ingest`` call these; they run the same Definitions as the web UI on
the same instance (``DAGSTER_HOME``), so their runs show up there.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
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


class EventPrinter:
    """Prints a run's events as the CLI's lines: one per asset message and step outcome (no run ids).

    Subscribed to the run with ``instance.add_event_listener``, so it sees exactly what the event
    log (and the UI) records, and adds nothing to the run's config."""

    def __init__(self):
        self.check_steps: set[str] = set()  # steps whose check line stands for their success line

    def __call__(self, entry) -> None:
        line = self.line(entry)
        if line:
            print(line, flush=True)

    def line(self, entry) -> str:
        event, step = entry.dagster_event, entry.step_key or ""
        if event is None:
            return f"    {step}: {entry.user_message}" if step else ""
        kind = event.event_type_value
        if kind == "STEP_FAILURE":
            error = event.step_failure_data.error
            while error is not None and error.cause is not None and "Error occurred while" in error.message:
                error = error.cause
            detail = error.message.strip() if error is not None else entry.user_message
            user = event.step_failure_data.user_failure_data
            if user is not None and user.description:  # a dg.Failure: its one line, not the class name
                detail = user.description
            if error is not None and error.cls_name == INTERRUPTED_ERROR:
                detail = "interrupted"
            return f"  ✗ {step}: {detail}"
        if kind == "ASSET_CHECK_EVALUATION":
            self.check_steps.add(step)
            data = event.event_specific_data
            mark = "✓" if data.passed else ("✗" if data.severity.value == "ERROR" else "!")
            return f"    {mark} check {data.check_name} on {data.asset_key.to_user_string()}"
        return f"  ✓ {step}" if kind == "STEP_SUCCESS" and step not in self.check_steps else ""


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


#: Tags the CLI puts on its runs, so a later command can tell whether the process still lives.
PROCESS_TAG = "judge_assets/process"
#: Jobs of the code location the CLI runs (``judge_assets.defs.automation``; re-executable from the UI).
BATCH_JOB = "load_annotation_batch"
REBUILD_JOB = "rebuild"
#: The code location the web UI loads (``workspace.yaml``'s ``location_name``, pyproject's
#: ``[tool.dagster]``): CLI runs carry its origin, through which the UI re-executes them.
LOCATION_NAME = "judge_assets"
DEFINITIONS_MODULE = "judge_assets.definitions"
#: The config of CLI runs: the CLI prints their events itself (:class:`EventPrinter`), so Dagster's
#: console logger only shows what is critical. A re-execution from the UI inherits it, valid there.
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
#: seconds between two looks at a busy DuckDB write slot
SLOT_POLL_S = 2.0
#: the error class of a step stopped by Ctrl-C / SIGTERM
INTERRUPTED_ERROR = "DagsterExecutionInterruptedError"


def _process_token(pid: int) -> str | None:
    """``host:pid:start-time`` of a live process (start time guards against a reused pid), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return f"{socket.gethostname()}:{pid}:{fields[19]}"


def recover_interrupted_runs(instance) -> list[str]:
    """Fail the runs whose CLI process died (``kill -9``, OOM, a closed laptop) and free their slots.

    A run started by this CLI carries :data:`PROCESS_TAG`; when that process is gone but the run is
    still "started", the run is marked failed and its ``judge_duckdb`` pool slot is released, so
    the next command does not wait forever. Slots held by runs that already finished are released
    too. Returns one line per run recovered.
    """
    from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES, RunsFilter

    storage = instance.event_log_storage
    lines = []
    holders = set(storage.get_concurrency_run_ids())
    candidates = {r.run_id: r for r in instance.get_runs(RunsFilter(statuses=NOT_FINISHED_STATUSES))}
    for run_id in holders - set(candidates):
        run = instance.get_run_by_id(run_id)
        if run is None or run.status not in NOT_FINISHED_STATUSES:
            storage.free_concurrency_slots_for_run(run_id)
    for run in candidates.values():
        token = run.tags.get(PROCESS_TAG)
        if not token:
            continue
        host, pid, _ = token.split(":", 2)
        if host != socket.gethostname() or _process_token(int(pid)) == token:
            continue
        instance.report_run_failed(run, "the judge-assets process running it ended without finishing (killed?); "
                                        "marked failed by the next judge-assets command, which freed its DuckDB write slot")
        storage.free_concurrency_slots_for_run(run.run_id)
        lines.append(f"recovered: run {run.run_id[:8]} ({run.job_name}) was interrupted (its process {pid} is gone); "
                     "marked it failed and freed the DuckDB write slot")
    return lines


def wait_for_write_slot(instance, *, poll_s: float = SLOT_POLL_S) -> None:
    """Wait (Ctrl-C works) while a live run holds the ``judge_duckdb`` slot, saying once which run it is."""
    from judge_assets.defs.resources import DB_POOL

    told = False
    while True:
        recover_interrupted_runs(instance)
        info = instance.event_log_storage.get_concurrency_info(DB_POOL)
        if info.slot_count and info.active_slot_count < info.slot_count:
            return
        holder = next(iter(info.claimed_slots), None)
        if holder is None:
            return
        if not told:
            run = instance.get_run_by_id(holder.run_id)
            where = run.tags.get(PROCESS_TAG, "the web UI or a sensor") if run else "an unknown run"
            print(f"waiting: run {holder.run_id[:8]} ({run.job_name if run else '?'}, step {holder.step_key}, from {where}) "
                  "holds the DuckDB write slot. If it is stuck, terminate it in the UI (Runs → Terminate). Ctrl-C stops waiting.",
                  flush=True)
            told = True
        time.sleep(poll_s)


def stale_assets(instance, graph) -> list[str]:
    """Assets an ingest rebuilds (``INGEST_SELECTION``: downstream of ``raw_judgments``, the
    evaluation assets aside, which follow their own cadence) last materialized before its newest
    batch (or never).

    After an interrupted ingest the new votes are in ``raw_judgments`` while consensus still
    describes the old ones; these are the assets to rebuild.
    """
    import dagster as dg

    from judge_assets.defs.automation import INGEST_SELECTION, RAW_KEY

    newest = instance.get_latest_materialization_event(RAW_KEY)
    if newest is None:
        return []
    stale = []
    for key in sorted(dg.AssetSelection.from_string(INGEST_SELECTION).resolve(graph) - {RAW_KEY}):
        event = instance.get_latest_materialization_event(key)
        if event is None or event.timestamp < newest.timestamp:
            stale.append(key.to_user_string())
    return stale


def stale_assets_of_project() -> list[str]:
    """:func:`stale_assets` of the project's graph on the project's instance."""
    import dagster as dg

    from judge_assets.definitions import defs

    return stale_assets(dg.DagsterInstance.get(), defs.resolve_asset_graph())


@dataclass
class RunOutcome:
    """What a :func:`materialize` call did: ``ok`` when every step succeeded, the assets it
    rebuilt, and the steps that failed (their tables keep what they held before)."""

    ok: bool = True
    materialized: set[str] = field(default_factory=set)
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False

    def add(self, result) -> None:
        self.ok &= result.success
        self.materialized |= {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        for event in result.get_step_failure_events():
            self.failed.append(event.step_key)
            error = event.step_failure_data.error
            self.interrupted |= error is not None and error.cls_name == INTERRUPTED_ERROR

    def closing_line(self) -> str:
        """One true sentence about what changed, for a failed command."""
        rebuilt = f"{len(self.materialized)} table(s) were rebuilt" if self.materialized else "no table was rebuilt"
        what = "The run was interrupted" if self.interrupted else f"Some steps failed (see ✗ above: {', '.join(self.failed)})"
        todo = "run the same command again to finish" if self.interrupted else "fix the cause and run the same command again"
        return f"{what}; {rebuilt}, the others keep what they held before (every write is one transaction): {todo}."


def code_location_job(job_name: str):
    """``(reconstructable job, remote origin)`` of ``job_name`` in the code location the UI loads."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
    from dagster._core.remote_origin import RemoteRepositoryOrigin
    from dagster._core.workspace.load import location_origin_from_module_name

    root = str(PACKAGE_DIR.parent)
    location = location_origin_from_module_name(DEFINITIONS_MODULE, None, root, location_name=LOCATION_NAME)
    job = ReconstructableRepository.for_module(DEFINITIONS_MODULE, "defs", root).get_reconstructable_job(job_name)
    return job, RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME).get_job_origin(job_name)


def execute_job_run(
    instance, job_name: str, *, tags: dict[str, str], partition_key: str | None = None, asset_selection=None, op_config: dict | None = None
):
    """Run ``job_name`` of the code location in this process, as a run the UI lists under that job
    and can re-execute (it carries the location's origin), printing its events (:class:`EventPrinter`).
    ``op_config``: asset name → its run config (the launchpad's ``ops: {name: {config: …}}``)."""
    from dagster._core.execution.api import execute_run

    job, origin = code_location_job(job_name)
    job_def = job.get_definition()
    run_config = {**RUN_CONFIG, "ops": {name: {"config": config} for name, config in op_config.items()}} if op_config else RUN_CONFIG
    if partition_key is not None:
        tags = {**tags, **job_def.get_tags_for_partition_key(partition_key, selected_asset_keys=None)}
    run = instance.create_run_for_job(
        job_def=job_def, run_config=run_config, tags=tags, asset_selection=set(asset_selection) if asset_selection else None,
        remote_job_origin=origin, job_code_origin=job.get_python_origin(),
    )
    instance.add_event_listener(run.run_id, EventPrinter())
    return execute_run(job, run, instance)


def _has_batches() -> bool:
    """Whether the database holds ``raw_judgments`` rows (True when it cannot tell: locked by a writer)."""
    import duckdb

    from judge_assets.core.db import connect, table_exists

    path = settings().db_path
    if not path.exists():
        return False
    try:
        con = connect(path, read_only=True, wait_s=0)
    except RuntimeError:  # another process is writing: it has batches, or is loading them
        return True
    try:
        return table_exists(con, "raw_judgments") and con.execute("SELECT count(*) FROM raw_judgments").fetchall()[0][0] > 0
    except duckdb.Error:
        return True
    finally:
        con.close()


def materialize(select: str | None = None, partitions: list[str] | None = None, op_config: dict[str, dict] | None = None) -> RunOutcome:
    """Materialize the selected assets: each batch partition of ``raw_judgments``, then the rest.

    ``select`` uses Dagster's selection syntax (``judgments+``, ``group:consensus``,
    ``key:items``); default: everything. Runs the code location's jobs (:data:`BATCH_JOB`,
    :data:`REBUILD_JOB`) on the project's instance, after recovering interrupted runs and
    waiting for the DuckDB write slot. ``op_config``: asset name → run config of that asset (e.g.
    ``{"model_probs": {"refit": True}}``); each named asset must be in the selection.
    """
    import dagster as dg
    from tqdm import tqdm

    from judge_assets.definitions import defs

    graph_assets = defs.resolve_asset_graph()
    try:
        with warnings.catch_warnings():  # `group:` goes through a beta parameter of Dagster 1.13 (include_sources)
            warnings.filterwarnings("ignore", category=dg.BetaWarning)
            selection = dg.AssetSelection.from_string(select) if select else dg.AssetSelection.all()
            chosen = (selection | selection.required_multi_asset_neighbors()).resolve(graph_assets)
    except Exception as exc:  # noqa: BLE001 - Dagster raises several types for a bad selection
        raise UsageError(f"--select {select!r}: {exc}") from exc
    if not chosen:
        raise UsageError(f"--select {select!r} matches no asset; `judge-assets sql --list` shows the tables")
    for name in op_config or {}:
        if dg.AssetKey(name) not in chosen:
            raise UsageError(f"{name} is not in the selection {select!r}: its options apply only when it is rebuilt")
    raw_key = dg.AssetKey("raw_judgments")
    if raw_key not in chosen and not _has_batches():
        raise UsageError(
            f"--select {select!r} leaves out raw_judgments, and the database holds no annotation batch yet: "
            "run `judge-assets run` once (or add raw_judgments to the selection)"
        )
    instance = dg.DagsterInstance.get()
    for line in recover_interrupted_runs(instance):
        print(line, flush=True)
    token = _process_token(os.getpid())
    tags = {PROCESS_TAG: token} if token else {}
    outcome = RunOutcome()
    if raw_key in chosen:
        for batch_id in tqdm(partitions or [], desc="annotation batches", unit="batch", file=sys.stdout, disable=None):
            wait_for_write_slot(instance)
            outcome.add(execute_job_run(instance, BATCH_JOB, tags=tags, partition_key=batch_id))
    rest = chosen - {raw_key}
    if outcome.ok and rest:
        wait_for_write_slot(instance)
        outcome.add(execute_job_run(instance, REBUILD_JOB, tags=tags, asset_selection=rest, op_config=op_config))
    return outcome
