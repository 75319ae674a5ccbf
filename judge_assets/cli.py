"""``judge-assets``: materialize the graph, query the database, start the web UI.

Every command works on the same DuckDB file (``JUDGE_DB``) and Dagster instance
(``DAGSTER_HOME``, default ``.dagster_home`` in the project) as ``make ui``, so runs started
here show up in the web UI.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from judge_assets.config import settings

DAGSTER_YAML = """\
# Written by judge-assets. The machine may have no internet: telemetry stays off.
telemetry:
  enabled: false
# DuckDB admits one writing process per file: assets in the judge_duckdb pool run one at a time.
concurrency:
  pools:
    default_limit: 1
"""


def ensure_dagster_home() -> Path:
    """Create ``DAGSTER_HOME`` with a dagster.yaml (telemetry off, pool limit 1) if missing."""
    home = settings().dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    return home


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
    import dagster as dg

    from judge_assets.core.db import connect
    from judge_assets.core.sources import record_batch, source_batches
    from judge_assets.defs.sources import annotation_batches

    s = settings()
    batches = source_batches(s.source, s.source_split)
    con = connect(s.db_path)
    try:
        for batch in batches:
            record_batch(con, batch)
    finally:
        con.close()
    instance = dg.DagsterInstance.get()
    ids = [b.batch_id for b in batches]
    new = [i for i in ids if not instance.has_dynamic_partition(annotation_batches.name, i)]
    if new:
        instance.add_dynamic_partitions(annotation_batches.name, new)
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


def print_summary() -> None:
    """Rows per table, items, annotators, the majority-vote label distribution, what to try next."""
    from judge_assets.core.db import connect, table_exists
    from judge_assets.core.query import list_relations

    s = settings()
    relations = list_relations(s.db_path)
    print(f"\nDatabase {s.db_path}")
    width = max((len(name) for name, _, _ in relations), default=10)
    for name, kind, n in relations:
        rows = "?" if n is None else f"{n:,}"
        print(f"  {name:<{width}}  {rows:>8} rows{' (view)' if kind == 'view' else ''}")
    con = connect(s.db_path, read_only=True)
    try:
        if table_exists(con, "judgments"):
            items, human_items, annotators, humans = con.execute(
                "SELECT count(DISTINCT item_id), count(DISTINCT item_id) FILTER (WHERE annotator_kind = 'human'), "
                "count(DISTINCT annotator), count(DISTINCT annotator) FILTER (WHERE annotator_kind = 'human') FROM judgments"
            ).fetchone()
            print(f"\n{items:,} items ({human_items:,} judged by humans), {annotators} annotators ({humans} human)")
        if table_exists(con, "majority_vote_labels"):
            dist = con.execute(
                "SELECT majority_label, count(*) FROM majority_vote_labels GROUP BY 1 ORDER BY 2 DESC"
            ).fetchall()
            print("majority-vote labels: " + ", ".join(f"{label} {n:,}" for label, n in dist))
    finally:
        con.close()
    print(
        "\nNext:\n"
        '  judge-assets sql "SELECT * FROM majority_vote_labels LIMIT 5"   (inside .venv, or .venv/bin/judge-assets)\n'
        "  judge-assets sql --list\n"
        "  make ui      # the Dagster web UI on http://127.0.0.1:3000\n"
        "  make test"
    )


def cmd_run(args: argparse.Namespace) -> int:
    ensure_dagster_home()
    batches = register_source_batches()
    print(f"source: {settings().source} → {len(batches)} annotation batch(es): {', '.join(batches)}")
    ok = materialize(args.select, batches)
    if ok:
        print_summary()
        return 0
    print("\nSome steps failed (see ✗ above). Fix the cause and run again; what was stored before is unchanged.", file=sys.stderr)
    return 1


def cmd_sql(args: argparse.Namespace) -> int:
    from judge_assets.core.query import QueryError, format_csv, format_json, format_table, list_relations, run_query

    db = settings().db_path
    try:
        if args.list:
            columns, rows = ["name", "type", "rows"], list_relations(db)
        elif args.query:
            columns, rows = run_query(db, args.query)
        else:
            print("give a query, or --list", file=sys.stderr)
            return 2
    except (QueryError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    formatter = format_csv if args.csv else format_json if args.json else format_table
    print(formatter(columns, rows))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    home = ensure_dagster_home()
    register_source_batches()
    root = Path(__file__).resolve().parent.parent
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "dev",
        "-w",
        str(root / "workspace.yaml"),
        "-h",
        args.host,
        "-p",
        str(args.port),
    ]
    print(f"Dagster UI on http://{args.host}:{args.port}  (DAGSTER_HOME={home}); Ctrl-C stops it.")
    return subprocess.call(command, cwd=root)


def cmd_ingest(args: argparse.Namespace) -> int:
    """Gate, register and materialize new annotation files, then print what changed.

    One ingest at a time per database (an exclusive ``fcntl`` lock on ``<JUDGE_DB>.ingest.lock``);
    a refused file is moved to ``<inbox>/rejected/`` with a ``.error.txt`` and makes the exit code 1.
    """
    import fcntl

    import dagster as dg

    from judge_assets.core.db import connect, table_exists
    from judge_assets.core.ingest import (
        REJECTED_DIR,
        changes,
        check_file,
        content_key,
        ingested_batch,
        quarantine,
        snapshot,
        stage_file,
        stored_classes,
        stored_column_types,
    )
    from judge_assets.core.sources import JudgmentInputError, file_batch, record_batch
    from judge_assets.defs.ingest import batches_dir
    from judge_assets.defs.sources import annotation_batches

    ensure_dagster_home()
    s = settings()
    s.db_path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = s.db_path.with_name(s.db_path.name + ".ingest.lock")
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"another `judge-assets ingest` is running on {s.db_path}; waiting for it to finish …", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        refused, new = 0, []
        con = connect(s.db_path, wait_s=600)
        try:
            before = snapshot(con)
            classes, types = stored_classes(con) or (s.labels or None), stored_column_types(con)
            has_questions = table_exists(con, "mt_bench_questions")
            keys: set[str] = set()
            for name in args.paths:
                path = Path(name)
                try:
                    batch_id = file_batch(path).batch_id
                    key = content_key(batch_id)
                    done = ingested_batch(con, batch_id)
                    if done or key in keys:
                        print(f"{path}: already ingested{f' as batch {done}' if done else ''} (same content); nothing to do")
                        continue
                    _, schema = check_file(path, classes, types)
                except JudgmentInputError as exc:
                    refused += 1
                    print(f"refused: {exc}", file=sys.stderr)
                    if path.is_file():
                        moved = quarantine(path, exc, s.inbox_dir / REJECTED_DIR)
                        print(f"  moved to {moved} (reason in {moved.name}.error.txt); nothing stored changed", file=sys.stderr)
                    continue
                batch = stage_file(path, batches_dir(s.db_path))
                record_batch(con, batch)
                keys.add(key)
                new.append(batch.batch_id)
                print(f"{path}: accepted as batch {batch.batch_id} ({schema} schema), kept at {batch.location}")
        finally:
            con.close()
        ok = True
        if new:
            instance = dg.DagsterInstance.get()
            fresh = [b for b in new if not instance.has_dynamic_partition(annotation_batches.name, b)]
            if fresh:
                instance.add_dynamic_partitions(annotation_batches.name, fresh)
            select = f"key:raw_judgments or ({args.select})" if args.select else "key:raw_judgments+"
            if not has_questions and not args.select:
                select += " or key:mt_bench_questions"
            ok = materialize(select, new)
            con = connect(s.db_path, read_only=True, wait_s=600)
            try:
                report = changes(before, snapshot(con))
            finally:
                con.close()
            print("\n" + "\n".join(report.lines()))
    if not ok:
        print("\nSome steps failed (see ✗ above); the batches are registered: re-run them with "
              "`judge-assets ingest` or from the UI's partition view.", file=sys.stderr)
    return 1 if refused or not ok else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="judge-assets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="register the configured source and materialize the asset graph")
    run.add_argument("--select", help="Dagster asset selection, e.g. 'judgments+' or 'group:consensus' (default: all)")
    run.set_defaults(func=cmd_run)

    sql = sub.add_parser("sql", help="query the database read-only")
    sql.add_argument("query", nargs="?", help="SQL to run")
    fmt = sql.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    fmt.add_argument("--json", action="store_true", help="print JSON records")
    sql.add_argument("--list", action="store_true", help="list tables and views with row counts")
    sql.set_defaults(func=cmd_sql)

    ui = sub.add_parser("ui", help="start the Dagster web UI (dagster dev)")
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)

    ingest = sub.add_parser("ingest", help="validate new annotation files, add each as a batch, rebuild downstream, print what changed")
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="annotation files (.parquet, .jsonl, .json, .csv; either schema)")
    ingest.add_argument("--select", help="assets to rebuild after loading, Dagster selection syntax (default: everything downstream)")
    ingest.set_defaults(func=cmd_ingest)
    return parser


class UsageError(Exception):
    """A command-line mistake the user can fix (printed without a traceback)."""


def main(argv: list[str] | None = None) -> int:
    from judge_assets.core.sources import JudgmentInputError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, JudgmentInputError, RuntimeError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
