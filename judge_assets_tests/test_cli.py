"""The user's path: `judge-assets run` on a fresh project folder, then `judge-assets sql`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "judge_assets.cli"]


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUDGE_", "OPENAI_"))}
    env.update(JUDGE_DB=str(folder / "judge.duckdb"), DAGSTER_HOME=str(folder / "dagster_home"), JUDGE_INBOX_DIR=str(folder / "inbox"))
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("project")
    env = _env(folder)
    result = subprocess.run(CLI + ["run"], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return folder, env, result.stdout + result.stderr


def test_run_materializes_the_graph_and_prints_a_summary(built):
    folder, _, out = built
    assert "source: bundled:mt_bench → 2 annotation batch(es): mt_bench-human, mt_bench-gpt4_pair" in out
    assert "2,400 items (1,814 judged by humans), 66 annotators (65 human)" in out
    assert "majority-vote labels:" in out and "judge-assets sql" in out and "make ui" in out
    assert "  ✓ consensus" in out and "- dagster - " not in out  # the CLI's lines, not Dagster's console log
    con = duckdb.connect(str(folder / "judge.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM raw_judgments").fetchone()[0] == 5755
    assert con.execute("SELECT count(*) FROM majority_vote_labels").fetchone()[0] == 2400
    assert (folder / "dagster_home" / "dagster.yaml").read_text().count("enabled: false") == 1
    counts = {
        t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in ("consensus_labels", "human_consensus_labels", "annotator_stats", "label_quality_detail", "model_probs")
    }
    assert counts == {"consensus_labels": 2400, "human_consensus_labels": 1814, "annotator_stats": 66, "label_quality_detail": 5754, "model_probs": 2400}
    # offline: the prior is the out-of-fold classifier, and it says so
    assert con.execute("SELECT DISTINCT scorer FROM model_probs").fetchall() == [("oof_classifier",)]
    # the report card puts the paper's figures beside ours
    paper = con.execute(
        "SELECT metric, paper_value, value FROM judge_report_card WHERE judge = 'gpt4_pair' AND reference = 'human_votes' "
        "AND scope = 'turn=1' ORDER BY metric"
    ).fetchall()
    assert [(m, p) for m, p, _ in paper] == [("agreement_with_ties", 0.66), ("agreement_without_ties", 0.85)]
    assert all(abs(p - v) < 0.02 for _, p, v in paper)
    # the held-out benchmark ran, and the project's default consensus is its top row
    top = con.execute("SELECT method, is_default FROM consensus_benchmark ORDER BY mean_accuracy DESC LIMIT 1").fetchone()
    assert top == ("CROWDLAB, OOF classifier prior", True)
    assert con.execute("SELECT count(*) FROM judge_human_agreement WHERE category = 'overall'").fetchone()[0] == 1


def test_runs_are_recorded_in_the_project_dagster_instance(built):
    """CLI runs are runs of the code location's jobs, with its origin: the UI lists them under those
    jobs and re-executes them (test_ui.py does), with a run config that job accepts."""
    folder, env, _ = built
    code = (
        "import dagster as dg; from judge_assets.definitions import defs; i = dg.DagsterInstance.get(); "
        "print(sorted(i.get_dynamic_partitions('annotation_batches'))); "
        "print(i.get_latest_materialization_event(dg.AssetKey('majority_vote_labels')) is not None); "
        "runs = i.get_runs(); "
        "print(sorted({(r.job_name, r.remote_job_origin.location_name, r.remote_job_origin.repository_origin.repository_name) for r in runs})); "
        "[dg.validate_run_config(defs.get_job_def(r.job_name), r.run_config) for r in runs]; "
        "print(sorted(r.tags.get('dagster/partition', '-') for r in runs))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:4] == [
        "['mt_bench-gpt4_pair', 'mt_bench-human']",
        "True",
        "[('load_annotation_batch', 'judge_assets', '__repository__'), ('rebuild', 'judge_assets', '__repository__')]",
        "['-', 'mt_bench-gpt4_pair', 'mt_bench-human']",
    ]


def test_sql_answers_read_only(built):
    _, env, _ = built
    out = subprocess.run(
        CLI + ["sql", "SELECT majority_label, count(*) AS n FROM majority_vote_labels GROUP BY 1 ORDER BY 1", "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["majority_label"] for r in rows] == ["A", "B", "tie"] and sum(r["n"] for r in rows) == 2400
    denied = subprocess.run(CLI + ["sql", "DELETE FROM judgments"], env=env, capture_output=True, text=True, timeout=120)
    assert denied.returncode == 1 and "read-only" in denied.stderr.lower()
    listing = subprocess.run(CLI + ["sql", "--list"], env=env, capture_output=True, text=True, timeout=120).stdout
    assert "judgments" in listing and "5754" in listing.replace(",", "")


def test_a_selection_without_the_batches_on_an_empty_database_says_what_to_do(tmp_path):
    out = subprocess.run(CLI + ["run", "--select", "group:votes"], env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr and "CatalogException" not in out.stdout + out.stderr
    assert "error: --select 'group:votes' leaves out raw_judgments, and the database holds no annotation batch yet" in out.stderr
    assert "BetaWarning" not in out.stderr  # group: selections go through a beta Dagster parameter; not the user's concern


def test_sql_on_a_missing_database_says_what_to_do(tmp_path):
    out = subprocess.run(CLI + ["sql", "SELECT 1"], env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "judge-assets run" in out.stderr
    assert not (tmp_path / "judge.duckdb").exists()


def test_run_select_rebuilds_only_the_selection(built):
    import dagster as dg

    folder, env, _ = built
    con = duckdb.connect(str(folder / "judge.duckdb"), read_only=True)
    before = con.execute("SELECT max(ingested_at) FROM raw_judgments").fetchone()[0]
    con.close()  # DuckDB: an open connection in this process would lock the writer out
    select = "key:majority_vote_labels or key:model_probs"
    out = subprocess.run(CLI + ["run", "--select", select, "--refit-prior"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "✓ majority_vote_labels" in out.stdout and "✓ model_probs" in out.stdout
    assert "✓ judgments" not in out.stdout and "raw_judgments" not in out.stdout.split("Database")[0].split("batch(es)")[1]
    con = duckdb.connect(str(folder / "judge.duckdb"), read_only=True)
    assert con.execute("SELECT max(ingested_at) FROM raw_judgments").fetchone()[0] == before
    con.close()
    bad = subprocess.run(CLI + ["run", "--select", "key:no_such_asset"], env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and "error: --select 'key:no_such_asset'" in bad.stderr and "Traceback" not in bad.stderr
    # --refit-prior refitted the classifier prior (by default a second run would score only new items)
    instance = dg.DagsterInstance.from_config(str(folder / "dagster_home"))
    metadata = instance.get_latest_materialization_event(dg.AssetKey("model_probs")).asset_materialization.metadata
    assert (metadata["prior_mode"].value, metadata["prior_mode_reason"].value) == ("refit", "refit requested")
    outside = subprocess.run(CLI + ["run", "--select", "key:judgments", "--refit-prior"], env=env, capture_output=True, text=True, timeout=600)
    assert outside.returncode == 1 and "Traceback" not in outside.stderr
    assert "error: model_probs is not in the selection 'key:judgments'" in outside.stderr


def test_the_duckdb_cli_installed_with_the_project_opens_the_database(built):
    folder, _, _ = built
    duckdb_cli = Path(sys.executable).with_name("duckdb")
    out = subprocess.run(
        [str(duckdb_cli), "-readonly", "-csv", str(folder / "judge.duckdb"), "-c", "SELECT count(*) AS n FROM consensus_labels"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["n", "2400"]


@pytest.fixture
def small_project(tmp_path):
    """A project folder whose database holds one small table, with a Dagster config to protect."""
    env = _env(tmp_path)
    con = duckdb.connect(env["JUDGE_DB"])
    con.execute("CREATE TABLE judgments AS SELECT * FROM (VALUES ('q1', 'A'), ('q2', 'tie')) v(item_id, label)")
    con.close()
    home = Path(env["DAGSTER_HOME"])
    home.mkdir()
    (home / "dagster.yaml").write_bytes((Path(__file__).resolve().parents[1] / "judge_assets" / "dagster.yaml").read_bytes())
    return tmp_path, env


def _sql(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + ["sql", *args], env=env, capture_output=True, text=True, timeout=120)


def test_sql_refuses_to_overwrite_the_dagster_config(small_project):
    _, env = small_project
    config = Path(env["DAGSTER_HOME"]) / "dagster.yaml"
    before = config.read_bytes()
    copy = f"COPY (SELECT 'telemetry: {{enabled: true}}') TO '{config}' (HEADER false)"
    out = _sql(env, copy)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == (
        f"error: refused: this query would read or write files outside the database ({copy}); "
        "judge-assets sql only reads the database\n"
    )
    assert config.read_bytes() == before


def test_sql_does_not_show_a_file_outside_the_database(small_project):
    folder, env = small_project
    (folder / "secret.csv").write_text("token\nSECRET-5b1f\n")
    out = _sql(env, f"SELECT * FROM read_csv('{folder / 'secret.csv'}')", "--csv")
    assert out.returncode == 1 and out.stderr.startswith("error: refused: this query would reach outside the database")
    assert "SECRET" not in out.stdout + out.stderr and "Traceback" not in out.stderr


def test_sql_timeout_stops_a_long_query(small_project):
    _, env = small_project
    long_query = "SELECT count(*) FROM range(10000000000) r(i) WHERE i % 7 = 3"
    out = _sql(env, "--timeout", "0.5", long_query)
    assert out.returncode == 1 and out.stderr == "error: query stopped after 0.5 s (the --timeout / JUDGE_SQL_TIMEOUT limit)\n"
    # JUDGE_SQL_TIMEOUT applies without the flag, and the flag wins over it
    out = _sql({**env, "JUDGE_SQL_TIMEOUT": "0.5"}, long_query)
    assert out.returncode == 1 and "query stopped after 0.5 s" in out.stderr
    out = _sql({**env, "JUDGE_SQL_TIMEOUT": "0.5"}, "--timeout", "60", "SELECT item_id FROM judgments ORDER BY 1", "--csv")
    assert out.returncode == 0 and out.stdout == "item_id\nq1\nq2\n\n"


def test_sql_bad_limits_are_one_line_errors(small_project):
    _, env = small_project
    out = _sql({**env, "JUDGE_SQL_MEMORY_LIMIT": "lots"}, "SELECT 1")
    assert out.returncode == 1 and out.stderr.startswith("error: JUDGE_SQL_MEMORY_LIMIT='lots' is not a memory size DuckDB accepts")
    assert out.stderr.count("\n") == 1
    out = _sql(env, "--timeout", "0", "SELECT 1")
    assert out.returncode == 1 and out.stderr.startswith("error: timeout must be a positive number of seconds")
    out = _sql({**env, "JUDGE_SQL_TIMEOUT": "soon"}, "SELECT 1")
    assert out.returncode == 1 and out.stderr == "error: JUDGE_SQL_TIMEOUT='soon' is not a valid float\n"
