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
    assert fake_openai.count("chat") == 2 * N_ITEMS  # every item, both answer orders
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    assert con.execute("SELECT count(*), min(n_orders), count(*) FILTER (WHERE status = 'ok') FROM llm_judge_scores").fetchone() == (N_ITEMS, 2, N_ITEMS)
    assert con.execute("SELECT DISTINCT scorer FROM model_probs").fetchall() == [("llm_logprobs",)]
    assert con.execute("SELECT max(abs(p_A + p_B + p_tie - 1)) FROM model_probs").fetchone()[0] < 1e-9
    check = result.get_asset_check_evaluations()[0]
    assert check.passed
    con.close()

    rerun = _materialize(mt_bench_db, instance)
    assert rerun.success and fake_openai.count() == 2 * N_ITEMS + 1  # all cached: zero new calls (1 = the model check)
    metadata = rerun.asset_materializations_for_node("llm_judge_scores")[0].metadata
    assert metadata["calls_made"].value == 0 and metadata["cache_hits"].value == 2 * N_ITEMS

    # the key went out in the Authorization header only, and was stored nowhere
    assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in fake_openai.requests)
    events = instance.get_event_records(dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_MATERIALIZATION))
    assert KEY not in json.dumps([str(e.event_log_entry) for e in events])


def test_a_refused_key_fails_the_asset_and_the_prior_is_not_built(mt_bench_db, fake_openai, monkeypatch):
    fake_openai.settings.api_key = "sk-the-right-key-000"
    monkeypatch.setenv("JUDGE_LLM_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("JUDGE_LLM_MODEL", "judge-model")
    monkeypatch.setenv("JUDGE_LLM_API_KEY", KEY)
    instance = dg.DagsterInstance.ephemeral()

    result = dg.materialize(
        [llm_judge_scores, model_probs, llm_judge_scores_valid],
        instance=instance,
        resources={
            "duckdb": JudgeDuckDBResource(database=str(mt_bench_db)),
            "llm_judge": project_resources()["llm_judge"],
            "pipeline": PipelineResource(llm_annotators="gpt4_pair"),
        },
        raise_on_error=False,
    )
    assert not result.success and fake_openai.count() == 1 and fake_openai.count("chat") == 0
    failure = result.get_step_failure_events()[0]
    assert failure.step_key == "llm_judge_scores"
    host = fake_openai.base_url.split("/")[2]
    data = failure.step_failure_data
    assert data.user_failure_data.description == (
        f"LLM judge at {host} refused the API key (HTTP 401: Incorrect API key provided: ***. You can find your API key "
        "at https://platform.openai.com/account/api-keys.): check JUDGE_LLM_API_KEY (or OPENAI_API_KEY)"
    )
    assert data.user_failure_data.metadata["stopped_by"].value == "auth_error"
    assert result.asset_materializations_for_node("model_probs") == []  # no silent classifier prior
    # the resource's own config: DuckDBResource.get_connection leaves its connection open when the asset raises
    with duckdb.connect(str(mt_bench_db), config={"custom_user_agent": "dagster"}) as con:
        tables = {t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert "model_probs" not in tables and "llm_judge_scores" not in tables
    logs = instance.all_logs(result.run_id)
    assert logs and not any(KEY in str(e) or KEY[-4:] in str(e) for e in logs)


def test_a_batch_of_new_items_is_scored_by_the_stored_prior_and_refit_is_a_config(mt_bench_db, monkeypatch):
    monkeypatch.delenv("JUDGE_LLM_BASE_URL", raising=False)
    con = duckdb.connect(str(mt_bench_db))
    held = "item_id IN (SELECT item_id FROM items ORDER BY hash(item_id) LIMIT 100)"
    con.execute(f"CREATE TABLE held_judgments AS SELECT * FROM judgments WHERE {held}")
    con.execute(f"CREATE TABLE held_items AS SELECT * FROM items WHERE {held}")
    con.execute("DELETE FROM judgments WHERE item_id IN (SELECT item_id FROM held_items)")
    con.execute("DELETE FROM items WHERE item_id IN (SELECT item_id FROM held_items)")
    con.close()
    instance = dg.DagsterInstance.ephemeral()

    def prior_metadata(**config):
        result = dg.materialize(
            [llm_judge_scores, model_probs],
            instance=instance,
            resources={"duckdb": JudgeDuckDBResource(database=str(mt_bench_db)), "llm_judge": project_resources()["llm_judge"],
                       "pipeline": PipelineResource(llm_annotators="gpt4_pair")},
            run_config={"ops": {"model_probs": {"config": config}}} if config else None,
        )
        assert result.success
        return {k: v.value for k, v in result.asset_materializations_for_node("model_probs")[0].metadata.items()}

    first = prior_metadata()
    assert (first["prior_mode"], first["items_scored_by_classifier"]) == ("refit", 2300)
    con = duckdb.connect(str(mt_bench_db))
    before = con.execute("SELECT * FROM model_probs ORDER BY item_id").df()
    con.execute("INSERT INTO items SELECT * FROM held_items")  # the next batch: 100 items and their votes
    con.execute("INSERT INTO judgments SELECT * FROM held_judgments")
    con.close()

    second = prior_metadata()
    assert (second["prior_mode"], second["items_scored_by_classifier"], second["items_until_refit"]) == ("incremental", 100, 130)
    assert second["prior_mode_reason"].startswith("100 new or changed items scored by the classifier fitted on 2,300 items")
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    after = con.execute("SELECT * FROM model_probs ORDER BY item_id").df()
    con.close()
    assert len(after) == 2400 and (after["scorer"] == "oof_classifier").all()
    kept = after[after["item_id"].isin(before["item_id"])].reset_index(drop=True)
    assert kept.equals(before)  # the other 2,300 rows as they were

    third = prior_metadata(refit=True)
    assert (third["prior_mode"], third["prior_mode_reason"], third["items_scored_by_classifier"]) == ("refit", "refit requested", 2400)
