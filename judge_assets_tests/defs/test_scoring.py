"""The scoring assets through Dagster: the LLM judge against a loopback OpenAI-compatible server."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
from judge_assets.defs.resources import JudgeDuckDBResource

from judge_assets.defs.resources import PipelineResource, project_resources
from judge_assets.defs.scoring import llm_judge_scores, llm_judge_scores_valid, model_probs

KEY = "sk-test-scoring-SECRET-0451"
N_ITEMS = 40


def _materialize(db, instance):
    return dg.materialize(
        [llm_judge_scores, model_probs, llm_judge_scores_valid],
        instance=instance,
        resources={
            "duckdb": JudgeDuckDBResource(database=str(db)),
            "llm_judge": project_resources()["llm_judge"],
            "pipeline": PipelineResource(llm_annotators="gpt4_pair"),
        },
    )


def test_llm_scores_feed_the_prior_and_a_rerun_costs_nothing(mt_bench_db, fake_openai, monkeypatch):
    con = duckdb.connect(str(mt_bench_db))
    con.execute(f"DELETE FROM items WHERE item_id NOT IN (SELECT item_id FROM items ORDER BY item_id LIMIT {N_ITEMS})")
    con.close()
    monkeypatch.setenv("JUDGE_LLM_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("JUDGE_LLM_MODEL", "judge-model")
    monkeypatch.setenv("JUDGE_LLM_API_KEY", KEY)
    instance = dg.DagsterInstance.ephemeral()

    result = _materialize(mt_bench_db, instance)
    assert result.success
    assert fake_openai.count() == 2 * N_ITEMS  # every item, both answer orders
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    assert con.execute("SELECT count(*), min(n_orders), count(*) FILTER (WHERE status = 'ok') FROM llm_judge_scores").fetchone() == (N_ITEMS, 2, N_ITEMS)
    assert con.execute("SELECT DISTINCT scorer FROM model_probs").fetchall() == [("llm_logprobs",)]
    assert con.execute("SELECT max(abs(p_A + p_B + p_tie - 1)) FROM model_probs").fetchone()[0] < 1e-9
    check = result.get_asset_check_evaluations()[0]
    assert check.passed
    con.close()

    rerun = _materialize(mt_bench_db, instance)
    assert rerun.success and fake_openai.count() == 2 * N_ITEMS  # all cached: zero new calls
    metadata = rerun.asset_materializations_for_node("llm_judge_scores")[0].metadata
    assert metadata["calls_made"].value == 0 and metadata["cache_hits"].value == 2 * N_ITEMS

    # the key went out in the Authorization header only, and was stored nowhere
    assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in fake_openai.requests)
    events = instance.get_event_records(dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_MATERIALIZATION))
    assert KEY not in json.dumps([str(e.event_log_entry) for e in events])
