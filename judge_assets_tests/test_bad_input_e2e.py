"""Bad input end to end, through `judge-assets ingest` in a subprocess: a CSV row without
conversation texts (CSV cannot hold them) becomes an item with a prior, and the run is green.
It used to fail ``model_probs`` and ``consensus_benchmark`` with ``TypeError: 'NAType' object is
not iterable``, and every later ingest with them.

The database holds MT-Bench questions 81-84 (human and GPT-4 votes), built with the core functions
(:func:`judge_assets_tests.conftest.build_foundation`) to keep the run short. No LLM endpoint is
configured.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from judge_assets.config import BUNDLED_DATA_DIR
from judge_assets.core.keys import item_key
from judge_assets_tests.conftest import build_foundation

pytestmark = pytest.mark.slow

TEXTLESS_CSV = "question_id,model_a,model_b,winner,judge,turn\n81,gpt-4,newmodel-x,model_a,j,1\n"
NEW_ITEM = item_key(81, 1, "gpt-4", "newmodel-x")


def _built_database(folder: Path) -> Path:
    """``folder/judge.duckdb`` with the foundation tables of MT-Bench questions 81-84."""
    source = folder / "mt_bench_81_84.parquet"
    frames = [pd.read_parquet(BUNDLED_DATA_DIR / f"{name}.parquet") for name in ("human", "gpt4_pair")]
    pd.concat([f[f.question_id.between(81, 84)] for f in frames]).to_parquet(source, index=False)
    con = duckdb.connect(str(folder / "judge.duckdb"))
    build_foundation(con, str(source))
    con.close()
    return folder


def _cli(state: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUDGE_", "DAGSTER_", "OPENAI_"))}
    env.update(
        DAGSTER_DISABLE_TELEMETRY="1",
        GX_ANALYTICS_ENABLED="false",
        JUDGE_DB=str(state / "judge.duckdb"),
        DAGSTER_HOME=str(state / "dagster_home"),
        JUDGE_INBOX_DIR=str(state / "inbox"),
    )
    command = [sys.executable, "-m", "judge_assets.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)


def _query(state: Path, sql: str, params=()) -> list[tuple]:
    con = duckdb.connect(str(state / "judge.duckdb"), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def test_a_csv_row_without_texts_gets_a_prior_and_the_run_is_green(tmp_path):
    state = _built_database(tmp_path)
    upload = tmp_path / "newmodel.csv"
    upload.write_text(TEXTLESS_CSV)

    result = _cli(state, "ingest", str(upload))

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "accepted as batch" in result.stdout and "✗" not in result.stdout
    assert _query(state, "SELECT answers_a IS NULL, answers_b IS NULL FROM items WHERE item_id = ?", [NEW_ITEM]) == [(True, True)]
    [(p_a, p_b, p_tie, scorer)] = _query(state, "SELECT p_A, p_B, p_tie, scorer FROM model_probs WHERE item_id = ?", [NEW_ITEM])
    assert scorer == "oof_classifier" and abs(p_a + p_b + p_tie - 1) < 1e-9
    assert _query(state, "SELECT count(*) FROM consensus_labels WHERE item_id = ?", [NEW_ITEM]) == [(1,)]
    assert "consensus_benchmark" not in result.stdout  # an evaluation asset: its own cadence, not every batch
    on_demand = _cli(state, "run", "--select", "key:consensus_benchmark")
    assert on_demand.returncode == 0 and "✓ consensus_benchmark" in on_demand.stdout, on_demand.stdout[-3000:] + on_demand.stderr[-3000:]
    assert _query(state, "SELECT count(*) > 0 FROM consensus_benchmark") == [(True,)]  # it ran, over the new item's features too
    with dg.DagsterInstance.from_config(str(state / "dagster_home")) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("model_probs"))
    assert event.asset_materialization.metadata["items_without_text"].value == 1

