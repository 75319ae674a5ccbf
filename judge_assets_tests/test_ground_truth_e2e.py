"""Ground truth end to end: `judge-assets run` on LLMBar Natural ingested as data (the generic schema
with a ground_truth column) gives every one of the 65 judges the accuracy of the paper's
expected.csv, a gold-aware consensus, methods ranked on gold and the check on them."""

from __future__ import annotations

import os
import subprocess
import sys

import duckdb
import pandas as pd
import pytest

from judge_assets_tests.core.test_ground_truth import llmbar_natural_dir

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "judge_assets.cli"]


def test_llmbar_natural_through_the_cli_reproduces_expected_csv(tmp_path):
    folder = llmbar_natural_dir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUDGE_", "OPENAI_"))}
    env.update(
        JUDGE_DB=str(tmp_path / "judge.duckdb"), DAGSTER_HOME=str(tmp_path / "dagster_home"),
        JUDGE_INBOX_DIR=str(tmp_path / "inbox"), JUDGE_SOURCE=str(folder / "judgments.csv"), JUDGE_LLM_ANNOTATORS="",
    )
    result = subprocess.run(CLI + ["run"], env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    con = duckdb.connect(str(tmp_path / "judge.duckdb"), read_only=True)
    try:
        scores = con.execute("SELECT * FROM ground_truth_accuracy WHERE category = 'all'").df()
        labels = con.execute("SELECT source, count(*) AS n FROM consensus_labels GROUP BY 1").df()
        benchmark = con.execute("SELECT * FROM consensus_benchmark").df()
        gold = con.execute("SELECT count(*) FROM gold_labels").fetchone()[0]
    finally:
        con.close()
    expected = pd.read_csv(folder / "expected.csv").set_index("annotator")
    judges = scores[scores["kind"] == "annotator"].set_index("name")
    assert set(judges.index) == set(expected.index) and len(expected) == 65
    judges = judges.reindex(expected.index)
    assert (judges["n"] == expected["votes"]).all()
    assert (judges["accuracy"].round(4) == expected["accuracy"].round(4)).all()
    assert {"gold_mixture", "majority_vote", "dawid_skene", "crowdlab"} <= set(scores.loc[scores["kind"] == "method", "name"])
    assert gold == 100 and labels.set_index("source")["n"].to_dict() == {"ground_truth": 100}
    assert benchmark["gold_accuracy"].notna().any() and benchmark["gold_accuracy"].is_monotonic_decreasing
