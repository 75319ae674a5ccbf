"""LLM judge scoring against a real OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import math
import time

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from judge_assets.core.scoring.llm_judge import (
    CACHE_TABLE,
    OPEN_BATCHES_TABLE,
    SCORE_COLUMNS,
    EndpointError,
    JudgeConfig,
    combine_orders,
    default_judge,
    first_position_preference,
    map_top_logprobs,
    render_messages,
    score_items,
)
from judge_assets.defs.resources import LLMJudgeResource, project_resources
from judge_assets_tests.fake_openai import NO_LABEL_MARKER, unused_base_url

KEY = "sk-test-Zq81tSECRETkeyVALUE"
REASONS = {"rate_limited", "server_error", "malformed_response", "timeout"}


def make_items(n: int, prefix: str = "q") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": [f"{prefix}{i}:1:m1|m2" for i in range(n)],
            "question_id": list(range(n)),
            "turn": [1] * n,
            "model_a": ["m1"] * n,
            "model_b": ["m2"] * n,
            "category": ["writing"] * n,
            "user_turns": [[f"Question {prefix}{i}?"] for i in range(n)],
            "answers_a": [[f"Answer one to {prefix}{i}."] for i in range(n)],
            "answers_b": [[f"Answer two to {prefix}{i}, longer."] for i in range(n)],
        }
    )


def config(server, **kw) -> JudgeConfig:
    kw = {"api_key": KEY, "backoff_base_s": 0.01, "poll_interval": 0.01, **kw}
    return JudgeConfig(base_url=server.base_url, model="judge-1", **kw)


def cache(db) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"SELECT * FROM {CACHE_TABLE}").df()


def chat_requests(server) -> list:
    return [r for r in server.requests if r.path.endswith("/chat/completions")]


# ---------------------------------------------------------------------------- prompt


def test_render_messages_shows_context_and_swaps_answers():
    item = {
        "item_id": "7:2:x|y",
        "user_turns": ["Write a poem.", "Now make it rhyme."],
        "answers_a": ["x-poem", "x-rhyme"],
        "answers_b": ["y-poem", "y-rhyme"],
        "reference": ["ref-1", "ref-2"],
    }
    system, user = render_messages(item, swapped=False)
    assert system["role"] == "system" and "exactly one character" in system["content"]
    text = user["content"]
    assert text.index("Write a poem.") < text.index("x-poem") < text.index("y-poem") < text.index("Now make it rhyme.")
    assert text.index("[Final answer of Assistant A]\nx-rhyme") < text.index("[Final answer of Assistant B]\ny-rhyme")
    assert "ref-2" in text and "ref-1" not in text
    swapped = render_messages(item, swapped=True)[1]["content"]
    assert "[Final answer of Assistant A]\ny-rhyme" in swapped and "### Assistant A (turn 1)\ny-poem" in swapped

    single = render_messages({"item_id": "1", "user_turns": ["Q"], "answers_a": ["a"], "answers_b": ["b"]}, False)
    assert "### Assistant A (turn" not in single[1]["content"] and "Reference" not in single[1]["content"]


def test_render_messages_rejects_mismatched_turns():
    with pytest.raises(ValueError, match="'bad'.*equally long"):
        render_messages({"item_id": "bad", "user_turns": ["q1", "q2"], "answers_a": ["a"], "answers_b": ["b", "c"]}, False)


def test_render_messages_on_real_items_rows(mt_bench_db_template):
    with duckdb.connect(str(mt_bench_db_template), read_only=True) as con:
        rows = con.execute("SELECT * FROM items WHERE turn = 2 ORDER BY item_id LIMIT 3").df()
    for row in rows.to_dict("records"):
        text = render_messages(row, swapped=False)[1]["content"]
        assert row["user_turns"][1] in text and row["answers_a"][0] in text and row["answers_b"][1] in text


# ---------------------------------------------------------------------------- token mapping


@pytest.mark.parametrize(
    "tokens, swapped, expected",
    [
        ([("A", 0.6), (" B", 0.3), ("C", 0.1)], False, (0.6, 0.3, 0.1)),
        ([(" A", 0.3), ("a", 0.2), ("A", 0.1), ("b", 0.4)], False, (0.6, 0.4, 0.0)),
        ([("A", 0.6), (" B", 0.3), ("c", 0.1)], True, (0.3, 0.6, 0.1)),
        ([(" tie", 0.5), ("B\n", 0.5)], False, (0.0, 0.5, 0.5)),
    ],
)
def test_map_top_logprobs_sums_label_tokens(tokens, swapped, expected):
    score = map_top_logprobs([{"token": t, "logprob": math.log(p)} for t, p in tokens], default_judge(), swapped)
    assert score.status == "ok"
    assert score.probs == pytest.approx(expected)  # A, B, tie
    assert score.label_mass == pytest.approx(1.0)


def test_map_top_logprobs_normalizes_and_reports_label_mass():
    score = map_top_logprobs(
        [{"token": "A", "logprob": math.log(0.3)}, {"token": "The", "logprob": math.log(0.5)},
         {"token": "B", "logprob": math.log(0.1)}],
        default_judge(),
    )
    assert score.label_mass == pytest.approx(0.4)
    assert score.probs == pytest.approx((0.75, 0.25, 0.0))


def test_map_top_logprobs_without_label_token_is_not_a_uniform_guess():
    score = map_top_logprobs([{"token": "The", "logprob": -0.1}, {"token": "Answer", "logprob": -2.0}], default_judge())
    assert score.status == "no_label_token" and score.label_mass == 0.0 and score.probs is None


# ---------------------------------------------------------------------------- order combination


def test_combine_orders_averages_and_measures_consistency():
    per_order = pd.DataFrame(
        {
            "item_id": ["i1", "i1", "i2", "i2", "i3", "i3"],
            "swapped": [False, True] * 3,
            "status": ["ok", "ok", "ok", "error", "no_label_token", "no_label_token"],
            "error": [None, None, None, "timeout", None, None],
            "probs": [(0.8, 0.2, 0.0), (0.4, 0.4, 0.2), (0.5, 0.5, 0.0), None, None, None],
            "label_mass": [1.0, 0.8, 0.9, None, 0.0, 0.0],
        }
    )
    out = combine_orders(per_order, default_judge()).set_index("item_id")
    assert out.loc["i1", ["p_a", "p_b", "p_tie"]].tolist() == pytest.approx([0.6, 0.3, 0.1])
    assert out.loc["i1", "position_consistency"] == pytest.approx(0.6)  # 1 - TV distance 0.4
    assert out.loc["i1", "label_mass"] == pytest.approx(0.9)
    assert out["n_orders"].tolist() == [2, 1, 0]
    assert out["status"].tolist() == ["ok", "error:timeout", "no_label_token"]
    assert np.isnan(out.loc["i2", "position_consistency"])


def test_first_position_preference_counts_decisive_verdicts():
    scores = pd.DataFrame(
        {   # item 1: A first both times → picks the first-shown answer twice; item 2: tie, then A (second-shown)
            "p_a_ab": [0.9, 0.1], "p_b_ab": [0.1, 0.1], "p_tie_ab": [0.0, 0.8],
            "p_a_ba": [0.2, 0.7], "p_b_ba": [0.8, 0.3], "p_tie_ba": [0.0, 0.0],
        }
    )
    assert first_position_preference(scores) == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------- online scoring


def test_every_item_scored_in_both_orders_then_fully_cached(fake_openai, tmp_path):
    db, items = tmp_path / "j.duckdb", make_items(12)
    seen = []
    scores, stats = score_items(db, items, config(fake_openai), progress=lambda d, t: seen.append((d, t)))

    assert fake_openai.count("chat") == 24 and stats.calls_made == 24 and stats.cache_hits == 0
    assert list(scores.columns) == [*SCORE_COLUMNS, "label_probs"]
    assert scores["item_id"].tolist() == items["item_id"].tolist()
    assert (scores["status"] == "ok").all() and (scores["n_orders"] == 2).all()
    assert np.allclose(scores[["p_a", "p_b", "p_tie"]].sum(axis=1), 1.0)
    # The fake judge has no position bias: mapped back, both orders agree exactly.
    assert np.allclose(scores["p_a_ab"], scores["p_a_ba"]) and np.allclose(scores["position_consistency"], 1.0)
    assert (scores["judge"] == "mt-bench-pairwise").all() and (scores["model"] == "judge-1").all()
    assert (scores["annotator"] == "mt-bench-pairwise:judge-1").all() and (scores["n_requests"] == 2).all()
    assert seen[-1] == (24, 24) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    rows = cache(db)
    assert len(rows) == 24 and set(rows["swapped"]) == {False, True} and (rows["status"] == "ok").all()
    assert rows["top_logprobs_json"].map(lambda s: len(json.loads(s))).eq(5).all()
    first_shown = {json.loads(r.body)["messages"][1]["content"].split("[Final answer of Assistant A]\n")[1][:10]
                   for r in chat_requests(fake_openai)}
    assert first_shown == {"Answer one", "Answer two"}

    fake_openai.reset_counts()
    again, stats2 = score_items(db, items, config(fake_openai))
    assert fake_openai.count() == 0 and stats2.calls_made == 0 and stats2.cache_hits == 24
    pd.testing.assert_frame_equal(again, scores)


def test_crash_mid_run_keeps_finished_results(fake_openai, tmp_path):
    db, items = tmp_path / "j.duckdb", make_items(12)

    def crash(done: int, total: int) -> None:
        if done == 10:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        score_items(db, items, config(fake_openai, concurrency=2), progress=crash)
    kept = len(cache(db))
    assert kept >= 10
    fake_openai.reset_counts()
    scores, stats = score_items(db, items, config(fake_openai))
    assert fake_openai.count("chat") == stats.calls_made == 24 - kept and (scores["status"] == "ok").all()


def test_position_bias_is_measured(fake_openai, tmp_path):
    fake_openai.settings.position_bias = 6.0
    scores, _ = score_items(tmp_path / "j.duckdb", make_items(10), config(fake_openai))
    assert first_position_preference(scores) == 1.0
    assert scores["position_consistency"].mean() < 0.5


def test_no_label_token_is_recorded_not_guessed_and_not_retried(fake_openai, tmp_path):
    items = make_items(3)
    items.loc[1, "answers_b"] = [f"{NO_LABEL_MARKER} odd answer"]
    db = tmp_path / "j.duckdb"
    scores, stats = score_items(db, items, config(fake_openai))
    assert scores["status"].tolist() == ["ok", "no_label_token", "ok"]
    assert scores.loc[1, ["p_a", "p_b", "p_tie"]].isna().all() and scores.loc[1, "n_orders"] == 0
    assert scores.loc[1, "predicted_label"] is None and scores.loc[1, "n_answers"] == 2
    assert stats.failures == {} and stats.calls_made == 6
    fake_openai.reset_counts()
    score_items(db, items, config(fake_openai))
    assert fake_openai.count() == 0


def test_faults_leave_reasons_and_next_run_fills_them(fake_openai, tmp_path):
    fake_openai.settings.faults = ("rate_limit", "server_error", "malformed", "bad_json")
    fake_openai.settings.fault_rate = 0.2
    fake_openai.settings.retry_after = 0.01
    db, items = tmp_path / "j.duckdb", make_items(40)
    scores, stats = score_items(db, items, config(fake_openai, max_attempts=2))

    failed = scores[scores["status"] != "ok"]
    assert len(failed) > 0 and sum(stats.failures.values()) > 0
    assert set(failed["status"].str.removeprefix("error:")) <= REASONS
    assert stats.calls_made > 80  # retries happened
    errors = cache(db).query("status == 'error'")
    assert set(errors["error"]) == set(stats.failures) and len(errors) == sum(stats.failures.values())

    fake_openai.settings.fault_rate = 0.0
    fake_openai.reset_counts()
    filled, stats2 = score_items(db, items, config(fake_openai))
    assert fake_openai.count("chat") == len(errors) == stats2.calls_made
    assert (filled["status"] == "ok").all() and (cache(db)["status"] == "ok").all()


def test_retry_after_is_honoured(fake_openai, tmp_path):
    s = fake_openai.settings
    s.faults, s.fault_rate, s.fault_attempts, s.retry_after = ("rate_limit",), 1.0, 1, 0.8
    scores, stats = score_items(tmp_path / "j.duckdb", make_items(2), config(fake_openai, swap=False))
    assert (scores["status"] == "ok").all() and stats.calls_made == 4
    by_prompt: dict[str, list[float]] = {}
    for r in chat_requests(fake_openai):
        by_prompt.setdefault(r.body.decode(), []).append(r.at)
    gaps = [times[1] - times[0] for times in by_prompt.values()]
    assert len(gaps) == 2 and min(gaps) >= 0.8


def test_timeout_is_recorded_and_retried(fake_openai, tmp_path):
    s = fake_openai.settings
    s.faults, s.fault_rate, s.fault_attempts, s.slow_s = ("slow",), 1.0, 1, 1.5
    db, items = tmp_path / "j.duckdb", make_items(2)
    scores, stats = score_items(db, items, config(fake_openai, swap=False, timeout=0.3, max_attempts=1))
    assert scores["status"].tolist() == ["error:timeout"] * 2 and stats.failures == {"timeout": 2}
    assert cache(db)["error"].tolist() == ["timeout"] * 2

    scores, stats = score_items(db, items, config(fake_openai, swap=False, timeout=0.3))
    assert (scores["status"] == "ok").all() and stats.calls_made == 2


# ---------------------------------------------------------------------------- batch mode


def test_batch_mode_fills_the_same_cache(fake_openai, tmp_path):
    s = fake_openai.settings
    s.batch_polls, s.faults, s.fault_rate, s.fault_attempts = 2, ("server_error", "malformed"), 0.3, 1
    db, items = tmp_path / "j.duckdb", make_items(10)
    progress = []
    scores, stats = score_items(db, items, config(fake_openai, mode="batch"), lambda d, t: progress.append((d, t)))

    assert fake_openai.count("chat") == 0 and fake_openai.count("files") == 1 and fake_openai.count("batches") == 1
    assert fake_openai.count("batch_retrieve") == 3 and progress[-1] == (20, 20)
    rows = cache(db)
    assert len(rows) == 20 and set(rows["mode"]) == {"batch"} and stats.batch_ids == ["batch-1"]
    n_err = int((rows["status"] == "error").sum())
    assert 0 < n_err < 20 and set(rows.loc[rows["status"] == "error", "error"]) <= {"server_error", "malformed_response"}
    assert (scores["status"] == "ok").sum() == (scores["n_orders"] == 2).sum() > 0

    fake_openai.reset_counts()
    online, _ = score_items(db, items, config(fake_openai))
    assert fake_openai.count("chat") == n_err and fake_openai.count() == n_err + 1  # + the model check
    assert (online["status"] == "ok").all()
    fake_openai.reset_counts()
    score_items(db, items, config(fake_openai))
    assert fake_openai.count() == 0


# ---------------------------------------------------------------------------- secrets and input errors


def test_api_key_never_stored_logged_or_reported(fake_openai, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    s = fake_openai.settings
    s.faults, s.fault_rate, s.retry_after = ("rate_limit", "server_error", "bad_json"), 0.3, 0.01
    db, items = tmp_path / "j.duckdb", make_items(8)
    _, online_stats = score_items(db, items, config(fake_openai, max_attempts=2))
    _, batch_stats = score_items(db, make_items(4, prefix="b"), config(fake_openai, mode="batch"))

    auth = [r.headers.get("authorization") for r in fake_openai.requests]
    assert set(auth) == {f"Bearer {KEY}"}  # sent where it belongs...
    for r in fake_openai.requests:  # ...and nowhere else
        assert KEY not in r.body.decode(errors="replace")
        assert all(KEY not in v for k, v in r.headers.items() if k != "authorization")
    with duckdb.connect(str(db), read_only=True) as con:
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE data_type = 'VARCHAR'"
        ).fetchall()
        assert columns
        for table, column in columns:
            hits = con.execute(f'SELECT count(*) FROM "{table}" WHERE contains("{column}", ?)', [KEY]).fetchone()[0]
            assert hits == 0, (table, column)
    logged = [rec.getMessage() for rec in caplog.records]
    assert logged and not any(KEY in m for m in logged)
    for stats in (online_stats, batch_stats):
        assert KEY not in json.dumps(stats.as_dict())
    assert KEY not in repr(config(fake_openai))


def test_bad_inputs_fail_with_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'online' or 'batch'"):
        JudgeConfig(base_url="http://127.0.0.1:1/v1", model="m", mode="offline")
    with pytest.raises(ValueError, match="base_url must be an http"):
        JudgeConfig(base_url="127.0.0.1:1", model="m")
    cfg = JudgeConfig(base_url="http://127.0.0.1:1/v1", model="m")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['item_id'\]"):
        score_items(tmp_path / "j.duckdb", make_items(2).drop(columns="item_id"), cfg)
    # a pairwise judge is not sent for items without two outputs (and so needs no endpoint here)
    skipped, stats = score_items(tmp_path / "j.duckdb", make_items(2).drop(columns="answers_b"), cfg)
    assert skipped["status"].tolist() == ["skipped:response_b"] * 2 and stats.requests == 0
    with pytest.raises(ValueError, match="duplicate item_id"):
        score_items(tmp_path / "j.duckdb", pd.concat([make_items(2), make_items(1)]), cfg)


# ---------------------------------------------------------------------------- Dagster resource


def test_resource_reads_env_and_hides_the_key(monkeypatch, fake_openai, tmp_path):
    for name in ("JUDGE_LLM_API_KEY", "JUDGE_LLM_SWAP", "JUDGE_LLM_MODE", "JUDGE_LLM_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUDGE_LLM_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("JUDGE_LLM_MODEL", "judge-1")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("JUDGE_LLM_CONCURRENCY", "4")
    resource = project_resources()["llm_judge"]
    assert KEY not in repr(resource)

    @dg.asset
    def judged(llm: LLMJudgeResource) -> dg.MaterializeResult:
        assert llm.is_configured and KEY not in repr(llm)
        [cfg] = llm.to_configs()
        assert (cfg.api_key, cfg.concurrency, cfg.swap, cfg.mode) == (KEY, 4, True, "online")
        scores, stats = score_items(tmp_path / "j.duckdb", make_items(3), cfg)
        return dg.MaterializeResult(metadata={"ok": int((scores["status"] == "ok").sum()), **stats.as_dict()})

    result = dg.materialize([judged], resources={"llm": resource})
    assert result.success
    materialization = result.asset_materializations_for_node("judged")[0]
    assert materialization.metadata["ok"].value == 3
    assert KEY not in str([e.event_specific_data for e in result.all_events])
    assert {r.headers["authorization"] for r in fake_openai.requests} == {f"Bearer {KEY}"}


def test_resource_unconfigured_and_bad_env(monkeypatch):
    for name in ("JUDGE_LLM_BASE_URL", "JUDGE_LLM_MODEL", "JUDGE_LLM_API_KEY", "OPENAI_API_KEY", "JUDGE_LLM_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    resource = project_resources()["llm_judge"]
    assert not resource.is_configured
    with pytest.raises(ValueError, match="set JUDGE_LLM_BASE_URL and JUDGE_LLM_MODEL"):
        resource.to_configs()

    seen = {}

    @dg.asset
    def judged(llm: LLMJudgeResource) -> None:
        [cfg] = llm.to_configs()
        seen.update(swap=cfg.swap, mode=cfg.mode)

    monkeypatch.setenv("JUDGE_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("JUDGE_LLM_MODEL", "m")
    monkeypatch.setenv("JUDGE_LLM_SWAP", "maybe")
    resource = project_resources()["llm_judge"]  # a bad value never fails the import
    result = dg.materialize([judged], resources={"llm": resource}, raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "JUDGE_LLM_SWAP='maybe'" in str(failure.message) + str(failure.cause and failure.cause.message)
    monkeypatch.setenv("JUDGE_LLM_SWAP", "off")
    monkeypatch.setenv("JUDGE_LLM_MODE", "batch")
    assert dg.materialize([judged], resources={"llm": project_resources()["llm_judge"]}).success
    assert seen == {"swap": False, "mode": "batch"}

# ---------------------------------------------------------------------------- endpoint faults

THRESHOLD = 5  # JudgeConfig.breaker_threshold's default


def fails(db, items, cfg) -> EndpointError:
    with pytest.raises(EndpointError) as info:
        score_items(db, items, cfg)
    return info.value


def test_wrong_key_is_refused_by_the_model_check_before_any_scoring_call(fake_openai, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    fake_openai.settings.api_key = "sk-the-right-key-000"
    db, items = tmp_path / "j.duckdb", make_items(20)
    for _ in range(2):  # a second run asks again, once
        error = fails(db, items, config(fake_openai))
    message = str(error)
    assert fake_openai.count() == 2 and fake_openai.count("chat") == 0
    assert error.reason == "auth_error" and "\n" not in message
    assert f"at {fake_openai.base_url.split('/')[2]} refused the API key" in message
    assert "Incorrect API key provided" in message and "JUDGE_LLM_API_KEY" in message
    assert KEY not in message and KEY[-4:] not in message  # the server echoed it masked: sk-***...ALUE
    assert len(cache(db)) == 0
    assert not any(KEY[-4:] in r.getMessage() for r in caplog.records)


def test_auth_failures_on_every_chat_call_trip_the_breaker(fake_openai, tmp_path):
    s = fake_openai.settings
    s.chat_status, s.chat_message = 403, "Project proj_x does not have access to model judge-1"
    db, items = tmp_path / "j.duckdb", make_items(50)
    error = fails(db, items, config(fake_openai, concurrency=4))
    assert fake_openai.count("chat") <= THRESHOLD + 4 - 1  # not 100, nor 100 x retries
    assert error.reason == "auth_error" and error.stats.calls_made == fake_openai.count("chat")
    assert "does not have access to model judge-1" in str(error) and fake_openai.base_url.split("/")[2] in str(error)
    rows = cache(db)
    assert not rows["status"].eq("ok").any() and set(rows["error"]) <= {"auth_error"}


def test_an_exhausted_quota_trips_the_breaker_instead_of_retrying_like_a_rate_limit(fake_openai, tmp_path):
    s = fake_openai.settings
    s.chat_status, s.chat_code = 429, "insufficient_quota"
    s.chat_message = "You exceeded your current quota, please check your plan and billing details."
    db, items = tmp_path / "j.duckdb", make_items(50)
    started = time.monotonic()
    error = fails(db, items, config(fake_openai, concurrency=2))
    assert time.monotonic() - started < 5 and fake_openai.count("chat") <= THRESHOLD + 2 - 1  # no backoff, no retries
    assert error.reason == "quota_exceeded" and "exceeded your current quota" in str(error) and "add credit" in str(error)
    assert set(cache(db)["error"]) <= {"quota_exceeded"}


def test_unknown_model_is_refused_from_the_servers_listing(fake_openai, tmp_path):
    fake_openai.settings.served_models = ("llama-3-8b", "qwen2-7b")
    error = fails(tmp_path / "j.duckdb", make_items(5), config(fake_openai))
    host = fake_openai.base_url.split("/")[2]
    assert str(error).startswith(f"model 'judge-1' is not served by {host}; it serves: llama-3-8b, qwen2-7b")
    assert fake_openai.count() == fake_openai.count("models") == 1


def test_a_proxys_wildcard_route_serves_the_model(fake_openai, tmp_path):
    fake_openai.settings.served_models = ("anthropic/*", "openai/*")  # LiteLLM-style routes
    cfg = JudgeConfig(**{**config(fake_openai).__dict__, "model": "openai/judge-1"})
    scores, _ = score_items(tmp_path / "j.duckdb", make_items(2), cfg)
    assert (scores["status"] == "ok").all() and fake_openai.count("chat") == 4
    cfg = JudgeConfig(**{**cfg.__dict__, "model": "mistral/judge-1"})
    assert str(fails(tmp_path / "j.duckdb", make_items(2), cfg)).startswith("model 'mistral/judge-1' is not served by")


def test_wrong_base_url_trips_on_404_and_keeps_url_secrets_out(fake_openai, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    password, query_key = "pw-Secret-77", "QKEY-in-the-url-42"
    root = fake_openai.base_url.removesuffix("/v1").replace("http://", f"http://judge:{password}@")
    cfg = config(fake_openai, concurrency=2)
    cfg = JudgeConfig(**{**cfg.__dict__, "base_url": f"{root}/api?key={query_key}"})  # no /v1: every route 404s
    db = tmp_path / "j.duckdb"
    error = fails(db, make_items(30), cfg)

    assert error.reason == "not_found" and fake_openai.count() <= 1 + THRESHOLD + 2 - 1
    message = str(error)
    assert "no route POST /api/chat/completions?key=***" in message and "JUDGE_LLM_BASE_URL" in message
    assert all(query_key in r.target for r in fake_openai.requests)  # the query went where the user put it
    texts = [message, repr(cfg), *(r.getMessage() for r in caplog.records), *cache(db)["error_detail"].dropna()]
    assert len(texts) > 3 and not any(secret in t for t in texts for secret in (password, query_key, KEY))


def test_query_string_on_the_base_url_is_sent_with_every_request(fake_openai, tmp_path):
    cfg = config(fake_openai)
    cfg = JudgeConfig(**{**cfg.__dict__, "base_url": f"{fake_openai.base_url}?api-version=2024-06-01"})
    scores, _ = score_items(tmp_path / "j.duckdb", make_items(3), cfg)
    assert (scores["status"] == "ok").all() and fake_openai.count("chat") == 6
    assert all(r.target.endswith("?api-version=2024-06-01") for r in fake_openai.requests)


def test_dead_server_stops_in_a_moment(tmp_path):
    cfg = JudgeConfig(base_url=unused_base_url(), model="judge-1", api_key=KEY, concurrency=4, backoff_base_s=0.01)
    started = time.monotonic()
    error = fails(tmp_path / "j.duckdb", make_items(200), cfg)
    assert time.monotonic() - started < 3
    assert error.reason == "connection_error" and error.stats.calls_made <= THRESHOLD + 4 - 1
    assert cfg.endpoint_host in str(error) and "Connection error" in str(error) and "is the server running" in str(error)
    assert not cache(tmp_path / "j.duckdb")["status"].eq("ok").any()


def test_hanging_server_costs_a_few_timeouts_not_a_day(fake_openai, tmp_path):
    fake_openai.settings.hang_s = 30
    started = time.monotonic()
    error = fails(tmp_path / "j.duckdb", make_items(100), config(fake_openai, timeout=0.5, concurrency=2))
    elapsed = time.monotonic() - started
    # the model check and two waves of two calls time out: 5 in a row
    assert 1.0 <= elapsed < 4 and fake_openai.count() <= 1 + THRESHOLD
    assert error.reason == "timeout" and "no answer within 0.5 s" in str(error) and "JUDGE_LLM_TIMEOUT" in str(error)


def test_http_500_on_every_call_stops_after_retries(fake_openai, tmp_path):
    fake_openai.settings.chat_status = 500
    db = tmp_path / "j.duckdb"
    error = fails(db, make_items(50), config(fake_openai, concurrency=2, max_attempts=3))
    assert fake_openai.count("chat") <= (THRESHOLD + 2 - 1) * 3  # each request is still retried
    assert error.reason == "server_error" and "HTTP 500: internal error" in str(error)
    assert set(cache(db)["error"]) == {"server_error"}


@pytest.mark.parametrize("fault, shown", [("nan_logprobs", "nan"), ("positive_logprobs", "0.7")])
def test_invalid_logprobs_are_never_cached_ok(fake_openai, tmp_path, fault, shown):
    s = fake_openai.settings
    s.faults, s.fault_rate, s.fault_attempts = (fault,), 1.0, 1  # every prompt's first answer is spoilt
    db, items = tmp_path / "j.duckdb", make_items(2)  # 4 answers: below the breaker's threshold
    scores, stats = score_items(db, items, config(fake_openai))
    assert fake_openai.count("chat") == 4 and stats.failures == {"invalid_logprobs": 4}
    assert (scores["status"] == "error:invalid_logprobs").all() and scores["p_a"].isna().all()
    rows = cache(db)
    assert set(rows["status"]) == {"error"} and rows["error_detail"].str.contains(f"logprob {shown} for").all()

    fake_openai.reset_counts()
    scores, _ = score_items(db, items, config(fake_openai))
    assert fake_openai.count("chat") == 4 and (scores["status"] == "ok").all()


@pytest.mark.parametrize("fault, reason", [("nan_logprobs", "invalid_logprobs"), ("malformed", "malformed_response")])
def test_a_server_whose_every_answer_is_unusable_trips_the_breaker(fake_openai, tmp_path, fault, reason):
    s = fake_openai.settings
    s.faults, s.fault_rate = (fault,), 1.0
    db = tmp_path / "j.duckdb"
    error = fails(db, make_items(50), config(fake_openai, concurrency=2))
    assert fake_openai.count("chat") <= THRESHOLD + 2 - 1  # not all 100 requests
    assert error.reason == reason and fake_openai.base_url.split("/")[2] in str(error) and "logprobs" in str(error)
    assert not cache(db)["status"].eq("ok").any()


@pytest.mark.parametrize("status", [400, 500])
def test_context_overflow_is_stored_once_and_not_sent_again(fake_openai, tmp_path, status):
    fake_openai.settings.max_prompt_words, fake_openai.settings.context_status = 200, status
    items = make_items(5)
    items.loc[4, "answers_b"] = ["word " * 400]
    db = tmp_path / "j.duckdb"
    scores, stats = score_items(db, items, config(fake_openai, concurrency=1))  # the long item comes last

    assert fake_openai.count("chat") == 10 and stats.failures == {"context_overflow": 2}  # no retry
    assert scores["status"].tolist() == ["ok"] * 4 + ["rejected:context_overflow"]
    rejected = cache(db).query("status == 'rejected'")
    assert len(rejected) == 2 and set(rejected["error"]) == {"context_overflow"}
    assert rejected["error_detail"].str.contains(f"HTTP {status}: This model's maximum context length is 200").all()
    assert (rejected["prompt_tokens_est"] > 400).all()

    fake_openai.reset_counts()
    again, _ = score_items(db, items, config(fake_openai))
    assert fake_openai.count() == 0 and again["status"].tolist() == scores["status"].tolist()
    items.loc[4, "answers_b"] = ["A short answer."]  # a changed request is a new key: sent once
    fixed, _ = score_items(db, items, config(fake_openai))
    assert fake_openai.count("chat") == 2 and (fixed["status"] == "ok").all()


def test_rejections_from_an_endpoint_that_never_answered_stop_the_run_and_are_retried(fake_openai, tmp_path):
    s = fake_openai.settings
    s.chat_status, s.chat_message = 400, "logprobs is not supported for this model"
    db, items = tmp_path / "j.duckdb", make_items(20)
    error = fails(db, items, config(fake_openai, concurrency=2))
    assert error.reason == "invalid_request" and fake_openai.count("chat") <= THRESHOLD + 2 - 1
    assert "logprobs is not supported" in str(error) and "logprobs/top_logprobs" in str(error)
    assert set(cache(db)["status"]) == {"error"}  # not 'rejected': a fixed server gets them again

    s.chat_status = None
    fake_openai.reset_counts()
    scores, _ = score_items(db, items, config(fake_openai))
    assert fake_openai.count("chat") == 40 and (scores["status"] == "ok").all()


def test_combine_orders_uses_a_scored_order_when_the_other_was_rejected():
    per_order = pd.DataFrame(
        {
            "item_id": ["i1", "i1", "i2", "i2"], "swapped": [False, True] * 2,
            "status": ["ok", "rejected", "rejected", "rejected"],
            "error": [None, "context_overflow", "context_overflow", "context_overflow"],
            "probs": [(0.8, 0.2, 0.0), None, None, None],
            "label_mass": [1.0, None, None, None],
        }
    )
    out = combine_orders(per_order, default_judge())
    assert out["status"].tolist() == ["ok", "rejected:context_overflow"] and out["n_orders"].tolist() == [1, 0]


# ---------------------------------------------------------------------------- batch faults


def test_batch_mode_without_the_batch_api_says_so(fake_openai, tmp_path):
    fake_openai.settings.batch_api = False
    error = fails(tmp_path / "j.duckdb", make_items(5), config(fake_openai, mode="batch"))
    host = fake_openai.base_url.split("/")[2]
    assert str(error).startswith(f"the endpoint {host} does not offer the OpenAI batch API (upload answered HTTP 404")
    assert str(error).endswith("set JUDGE_LLM_MODE=online") and error.reason == "no_batch_api"
    assert fake_openai.count() == 2 and fake_openai.count("chat") == 0  # the model check and one upload


def test_a_batch_in_flight_survives_a_crash_and_is_resumed(fake_openai, tmp_path):
    fake_openai.settings.batch_polls = 3
    db, items = tmp_path / "j.duckdb", make_items(10)
    calls = []

    def die_while_polling(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:  # the first call reports the cache hits; the second comes from a poll
            raise RuntimeError("process died")

    with pytest.raises(RuntimeError, match="process died"):
        score_items(db, items, config(fake_openai, mode="batch"), die_while_polling)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute(f"SELECT batch_id, n_requests, status FROM {OPEN_BATCHES_TABLE}").fetchall() == [("batch-1", 20, "open")]
    assert len(cache(db)) == 0 and fake_openai.count("batches") == 1

    scores, stats = score_items(db, items, config(fake_openai, mode="batch"))
    assert fake_openai.count("batches") == 1 and fake_openai.count("files") == 1  # not paid for twice
    assert stats.batch_ids == ["batch-1"] and stats.calls_made == 0 and (scores["status"] == "ok").all()
    assert len(cache(db)) == 20 and (cache(db)["status"] == "ok").all()
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute(f"SELECT status FROM {OPEN_BATCHES_TABLE}").fetchall() == [("collected",)]
    fake_openai.reset_counts()
    score_items(db, items, config(fake_openai, mode="batch"))
    assert fake_openai.count() == 0
