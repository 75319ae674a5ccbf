"""``judge-assets``: materialize the graph, query the database, start the web UI.

Every command works on the same DuckDB file (``JUDGE_DB``) and Dagster instance
(``DAGSTER_HOME``, default ``.dagster_home`` in the project) as ``make ui``, so runs started
here show up in the web UI.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from judge_assets.config import ConfigError, settings
from judge_assets.runner import (
    UsageError,
    add_partitions,
    ensure_dagster_home,
    materialize,
    register_source_batches,
    stale_assets_of_project,
)


def print_summary() -> None:
    """Rows per table, items, annotators, the majority-vote label distribution, what to try next."""
    from judge_assets.core.db import connect, table_exists
    from judge_assets.core.sql.query import list_relations

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
    outcome = materialize(args.select, batches, {"model_probs": {"refit": True}} if args.refit_prior else None)
    if outcome.ok:
        print_summary()
        return 0
    print("\n" + outcome.closing_line(), file=sys.stderr)
    return 1


def cmd_sql(args: argparse.Namespace) -> int:
    from judge_assets.core.sql.query import QueryError, format_csv, format_json, format_table, list_relations, run_query

    s = settings()
    timeout = args.timeout if args.timeout is not None else s.sql_timeout
    try:
        if args.list:
            columns, rows = ["name", "type", "rows"], list_relations(s.db_path, memory_limit=s.sql_memory_limit)
        elif args.query:
            columns, rows = run_query(s.db_path, args.query, memory_limit=s.sql_memory_limit, timeout=timeout)
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
        sys.executable,
        "-W",  # `dagster dev` warns on every start that `dg dev` (dagster-dg-cli, not a dependency) supersedes it
        "ignore:Function `dev_command` is superseded",
        "-m",
        "dagster",
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
    import tempfile

    from judge_assets.core.db import connect, table_exists
    from judge_assets.core.reports.changes import changes, snapshot
    from judge_assets.core.sources.gate import REJECTED_DIR, admit_files, batches_dir
    from judge_assets.defs.automation import INGEST_SELECTION

    ensure_dagster_home()
    s = settings()
    s.db_path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = s.db_path.with_name(s.db_path.name + ".ingest.lock")
    with open(lock_path, "a") as lock, tempfile.TemporaryDirectory(prefix="judge-ingest-") as snapshots:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"another `judge-assets ingest` is running on {s.db_path}; waiting for it to finish …", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        con = connect(s.db_path, wait_s=600)
        try:
            before = snapshot(con, snapshots)
            has_questions = table_exists(con, "mt_bench_questions")
            admitted = admit_files(
                con, [Path(p) for p in args.paths], batches_dir(s.db_path), s.inbox_dir / REJECTED_DIR, declared_labels=s.labels
            )
        finally:
            con.close()
        for a in admitted:
            print(a.message, file=sys.stderr if a.status == "refused" else sys.stdout)
        refused = sum(a.status == "refused" for a in admitted)
        new = list(dict.fromkeys(a.batch.batch_id for a in admitted if a.status in ("accepted", "pending")))
        outcome = None
        if new:
            add_partitions(new)
            select = f"key:raw_judgments or ({args.select})" if args.select else f"({INGEST_SELECTION})"
            if not has_questions and not args.select:
                select += " or key:mt_bench_questions"
            outcome = materialize(select, new)
        elif not args.select:
            stale = stale_assets_of_project()
            if stale:
                print(f"resuming: {len(stale)} table(s) are older than the last loaded batch (an earlier ingest was "
                      f"interrupted), e.g. {', '.join(stale[:3])}; rebuilding them")
                outcome = materialize(" or ".join(f"key:{name}" for name in stale), [])
        if outcome is not None:
            con = connect(s.db_path, read_only=True, wait_s=600)
            try:
                report = changes(before, snapshot(con, snapshots))
            finally:
                con.close()
            print("\n" + "\n".join(report.lines()))
    if outcome is not None and not outcome.ok:
        print("\n" + outcome.closing_line(), file=sys.stderr)
    return 1 if refused or (outcome is not None and not outcome.ok) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="judge-assets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="register the configured source and materialize the asset graph")
    run.add_argument("--select", help="Dagster asset selection, e.g. 'judgments+' or 'group:consensus' (default: all)")
    run.add_argument("--refit-prior", action="store_true", help="refit the classifier prior on all items (model_probs); by default "
                     "a batch's new items are scored by the stored classifier until the data has grown 10%%")
    run.set_defaults(func=cmd_run)

    sql = sub.add_parser("sql", help="query the database read-only (nothing outside the database file is reachable)")
    sql.add_argument("query", nargs="?", help="SQL to run")
    fmt = sql.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    fmt.add_argument("--json", action="store_true", help="print JSON records")
    sql.add_argument("--list", action="store_true", help="list tables and views with row counts")
    sql.add_argument("--timeout", type=float, metavar="SECONDS",
                     help="stop the query after SECONDS (default: JUDGE_SQL_TIMEOUT, else no limit)")
    sql.set_defaults(func=cmd_sql)

    ui = sub.add_parser("ui", help="start the Dagster web UI (dagster dev)")
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=3000, help="port to serve the UI on (default 3000)")
    ui.set_defaults(func=cmd_ui)

    ingest = sub.add_parser("ingest", help="validate new annotation files, add each as a batch, rebuild downstream, print what changed")
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="annotation files (.parquet, .jsonl, .json, .csv; either schema)")
    ingest.add_argument("--select", help="assets to rebuild after loading, Dagster selection syntax (default: everything downstream "
                        "but the evaluation assets, tag:cadence=evaluation, which follow their own cadence)")
    ingest.set_defaults(func=cmd_ingest)
    return parser


#: Set in the worker process that :func:`run_shielded` starts.
WORKER_ENV = "JUDGE_ASSETS_WORKER"
INTERRUPTED = ("interrupted. Every table holds either its old or its new contents (writes are transactional); "
               "run the same command again to finish.")


def run_shielded(argv: list[str]) -> int:
    """Run this command in a worker process of its own session and pass it Ctrl-C / SIGTERM once.

    The terminal sends Ctrl-C to every process of its foreground group, including the helper
    processes Dagster starts to capture step output, which would each print a traceback. In its
    own session only the worker receives the signal (from here): Dagster stops the run cleanly, the
    tables keep their old or new contents, and the worker prints one line. A second Ctrl-C ends
    the worker at once; the next command recovers the interrupted run.
    """
    proc = subprocess.Popen([sys.executable, "-m", "judge_assets.cli", *argv], env={**os.environ, WORKER_ENV: str(os.getpid())},
                            start_new_session=True)
    forwarded = False

    def forward(signum, _frame):
        nonlocal forwarded
        if forwarded:
            os.killpg(proc.pid, signal.SIGKILL)
            return
        forwarded = True
        print("\nstopping the run (Ctrl-C again to stop at once) …", file=sys.stderr, flush=True)
        proc.send_signal(signal.SIGINT)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code < 0:
        print(f"\n{INTERRUPTED}", file=sys.stderr)
        return 130
    return code


def _die_with_parent() -> None:
    """In the worker: be killed when the command that started it dies (Linux ``PR_SET_PDEATHSIG``),
    so ``kill -9`` of the command stops its run too, as a user expects."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != os.environ.get(WORKER_ENV):  # the parent died before prctl took effect
        os._exit(137)


def main(argv: list[str] | None = None) -> int:
    from judge_assets.core.sources.batches import JudgmentInputError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        settings()  # a bad setting stops here, with the variable named
        if args.command in ("run", "ingest"):
            if not os.environ.get(WORKER_ENV):
                return run_shielded(argv)
            _die_with_parent()
        return args.func(args)
    except KeyboardInterrupt:
        print(f"\n{INTERRUPTED}", file=sys.stderr)
        return 130
    except (UsageError, ConfigError, JudgmentInputError, RuntimeError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
