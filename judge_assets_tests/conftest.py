"""Shared fixtures: a real DuckDB file built from the bundled MT-Bench data, isolated env."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pytest

pytest_plugins = ["judge_assets_tests.fake_openai"]  # the `fake_openai` loopback server fixture

os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from judge_assets.config import BUNDLED_DATA_DIR, BUNDLED_SOURCE  # noqa: E402
from judge_assets.core.votes.judgments import build_items, build_judgments, load_questions  # noqa: E402
from judge_assets.core.votes.matrix import build_annotator_matrix  # noqa: E402
from judge_assets.core.sources.batches import load_batch, source_batches, validate_batch, write_batch  # noqa: E402


def build_foundation(con: duckdb.DuckDBPyConnection, source: str = BUNDLED_SOURCE) -> None:
    """raw_judgments → judgments → items → annotator_matrix, with the core functions only."""
    for batch in source_batches(source):
        table = load_batch(batch)
        write_batch(con, batch, table, validate_batch(table, batch.label, allow_duplicates=True))
    load_questions(con, BUNDLED_DATA_DIR / "question.jsonl")
    build_judgments(con, ("gpt4_pair",))
    build_items(con)
    build_annotator_matrix(con)


@pytest.fixture(scope="session")
def mt_bench_db_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mt_bench") / "judge.duckdb"
    con = duckdb.connect(str(path))
    build_foundation(con)
    con.close()
    return path


@pytest.fixture
def mt_bench_db(mt_bench_db_template, tmp_path) -> Path:
    """A private copy of a DuckDB file holding the foundation tables on bundled MT-Bench."""
    path = tmp_path / "judge.duckdb"
    shutil.copy(mt_bench_db_template, path)
    return path


@pytest.fixture
def project_env(tmp_path, monkeypatch) -> Path:
    """Point JUDGE_DB, DAGSTER_HOME and the inbox at a temp folder; returns that folder."""
    monkeypatch.setenv("JUDGE_DB", str(tmp_path / "judge.duckdb"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("JUDGE_INBOX_DIR", str(tmp_path / "inbox"))
    monkeypatch.delenv("JUDGE_SOURCE", raising=False)
    monkeypatch.delenv("JUDGE_LLM_BASE_URL", raising=False)
    return tmp_path
