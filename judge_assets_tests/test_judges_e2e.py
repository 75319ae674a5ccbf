"""Judges as files, end to end: real Dagster materialize over a real DuckDB file, against the
loopback OpenAI-compatible server — every shape, a two-model panel, the cache following edits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from judge_assets.core.scoring.llm_judge import BUILTIN_DIR
from judge_assets.core.sources.batches import load_batch, source_batches, validate_batch, write_batch
from judge_assets.defs.consensus import consensus
from judge_assets.defs.resources import project_resources
from judge_assets.defs.scoring import llm_judge_scores, llm_judge_scores_valid, model_probs
from judge_assets.defs.votes import annotator_matrix, items, judgments

LLMBAR = Path(__file__).parent / "data" / "llmbar_natural_sample.csv"
PASS_FAIL_TOKENS = {"Y if the answer meets the criterion": ("Y", "N")}
GRAPH = [items, llm_judge_scores, llm_judge_scores_valid, judgments, annotator_matrix, model_probs, consensus]


def load_source(db: Path, source: Path) -> None:
    """raw_judgments from ``source``, as the sources group writes it."""
    with duckdb.connect(str(db)) as con:
        for batch in source_batches(str(source)):
            table = load_batch(batch)
            write_batch(con, batch, table, validate_batch(table, batch.label, allow_duplicates=True))


def run(raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    return dg.materialize(GRAPH, resources=project_resources(), raise_on_error=raise_on_error)


def query(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def bodies(server) -> list[dict]:
    return [json.loads(r.body) for r in server.requests if r.path.endswith("/chat/completions")]


@pytest.fixture
def env(tmp_path, monkeypatch, fake_openai):
    """A project pointed at a temp database and the loopback server (model ``judge-model``)."""
    for name in ("JUDGE_SOURCE", "JUDGE_PANEL", "JUDGE_JUDGES", "JUDGE_LABELS", "JUDGE_PRIOR_JUDGE", "JUDGE_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUDGE_DB", str(tmp_path / "judge.duckdb"))
    monkeypatch.setenv("JUDGE_JUDGES_DIR", str(tmp_path / "judges"))
    monkeypatch.setenv("JUDGE_LLM_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("JUDGE_LLM_MODEL", "judge-model")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-e2e-judges-SECRET-77")
    (tmp_path / "judges").mkdir()
    fake_openai.settings.answer_tokens = dict(PASS_FAIL_TOKENS)
    return tmp_path


def pass_fail_file(folder: Path, n_items: int = 60) -> Path:
    """A single-output pass/fail dataset in the generic format: two human graders per output."""
    rows = []
    for i in range(n_items):
        for grader in ("grader_1", "grader_2"):
            rows.append({
                "item_id": f"out{i:03d}", "annotator": grader, "label": "pass" if (i + (grader == "grader_2")) % 3 else "fail",
                "prompt": f"Explain idea number {i} in one sentence.", "response": f"Idea {i} means that {'x' * (i % 7)} holds.",
            })
    path = folder / "pass_fail.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_a_single_output_pass_fail_judge_scores_every_output(env, fake_openai, monkeypatch):
    load_source(env / "judge.duckdb", pass_fail_file(env))
    monkeypatch.setenv("JUDGE_LABELS", "pass,fail")
    monkeypatch.setenv("JUDGE_JUDGES", "pass-fail,mt-bench-pairwise")

    result = run()
    sent = bodies(fake_openai)
    assert len(sent) == 60 and fake_openai.count("chat") == 60  # one per output; the pairwise judge is not sent
    assert not any("None" in json.dumps(b) for b in sent)
    assert {b["messages"][1]["content"].split("[Answer]\n")[1].split("\n\n")[0] for b in sent} == {
        f"Idea {i} means that {'x' * (i % 7)} holds." for i in range(60)
    }
    db = env / "judge.duckdb"
    assert query(db, "SELECT annotator, status, count(*) FROM llm_judge_scores GROUP BY ALL ORDER BY 1") == [
        ("mt-bench-pairwise:judge-model", "skipped:response_a,response_b", 60),
        ("pass-fail:judge-model", "ok", 60),
    ]
    assert query(db, "SELECT count(*), count(DISTINCT item_id) FROM llm_judge_probs WHERE judge = 'pass-fail'") == [(120, 60)]
    # the judge's labels are the data's class set: its verdicts are votes, and it is graded like any annotator
    assert query(db, "SELECT annotator_kind, count(*) FROM judgments WHERE annotator = 'pass-fail:judge-model' GROUP BY 1") == [("llm", 60)]
    assert query(db, "SELECT count(*) FROM annotator_stats WHERE annotator = 'pass-fail:judge-model'") == [(1,)]
    board = dict(query(db, "SELECT metric, value FROM judge_report_card WHERE reference = 'judge_leaderboard' AND judge = 'pass-fail:judge-model'"))
    assert board["items_scored"] == 60 and board["calls"] == 60 and board["parse_rate"] == 1.0
    assert 0 <= board["agreement_with_human_consensus"] <= 1 and board["tokens"] > 0
    assert "p_first_position" not in board  # not a pairwise judge
    assert query(db, "SELECT DISTINCT scorer FROM model_probs") == [("llm_logprobs",)]
    meta = result.asset_materializations_for_node("model_probs")[0].metadata
    assert meta["llm_prior_from"].value == "mean of pass-fail:judge-model"
    assert result.get_asset_check_evaluations()[0].passed

    fake_openai.reset_counts()
    assert run().success and fake_openai.count("chat") == 0  # an unchanged judge costs nothing


def test_editing_one_judge_re_scores_only_that_judge(env, fake_openai, monkeypatch):
    load_source(env / "judge.duckdb", pass_fail_file(env, 20))
    text = (BUILTIN_DIR / "pass-fail.yaml").read_text().replace("name: pass-fail", "name: strict")
    (env / "judges" / "strict.yaml").write_text(text.replace("You are a strict grader.", "You are a careful grader."))
    monkeypatch.setenv("JUDGE_LABELS", "pass,fail")
    monkeypatch.setenv("JUDGE_JUDGES", "pass-fail,strict")
    run()
    assert fake_openai.count("chat") == 40

    (env / "judges" / "strict.yaml").write_text(text.replace("You are a strict grader.", "You are a very careful grader."))
    fake_openai.reset_counts()
    run()
    assert fake_openai.count("chat") == 20  # the edited judge only; pass-fail comes from the cache
    assert all("very careful" in b["messages"][0]["content"] for b in bodies(fake_openai))
    assert query(env / "judge.duckdb", "SELECT judge, count(*) FROM llm_judge_scores WHERE status = 'ok' GROUP BY 1 ORDER BY 1") == [
        ("pass-fail", 20), ("strict", 20),
    ]


def test_a_two_model_panel_is_two_annotators(env, fake_openai, monkeypatch):
    load_source(env / "judge.duckdb", pass_fail_file(env, 30))
    monkeypatch.setenv("JUDGE_LABELS", "pass,fail")
    monkeypatch.setenv("JUDGE_JUDGES", "pass-fail")
    monkeypatch.setenv("JUDGE_LLM_MODEL", "model-a,model-b")
    result = run()
    assert sorted({b["model"] for b in bodies(fake_openai)}) == ["model-a", "model-b"] and fake_openai.count("chat") == 60
    db = env / "judge.duckdb"
    panel = [("pass-fail:model-a",), ("pass-fail:model-b",)]
    assert query(db, "SELECT DISTINCT annotator FROM judgments WHERE annotator_kind = 'llm' ORDER BY 1") == panel
    assert query(db, "SELECT annotator FROM annotator_stats WHERE annotator_kind = 'llm' ORDER BY 1") == panel
    assert query(db, "SELECT DISTINCT judge FROM judge_report_card WHERE reference = 'judge_leaderboard' ORDER BY 1") == [p[0:1] for p in panel]
    assert query(db, "SELECT DISTINCT judge FROM judge_report_card WHERE reference = 'human_consensus' ORDER BY 1") == [p[0:1] for p in panel]
    assert query(db, "SELECT annotator FROM annotator_matrix_columns WHERE annotator LIKE 'pass-fail:%' ORDER BY 1") == panel
    assert "model-a" in result.asset_materializations_for_node("llm_judge_scores")[0].metadata["panel"].value

    monkeypatch.setenv("JUDGE_PRIOR_JUDGE", "pass-fail:model-b")
    result = dg.materialize([model_probs], resources=project_resources())
    assert result.asset_materializations_for_node("model_probs")[0].metadata["llm_prior_from"].value == "pass-fail:model-b"
    monkeypatch.setenv("JUDGE_PRIOR_JUDGE", "pass-fail:model-c")
    failed = dg.materialize([model_probs], resources=project_resources(), raise_on_error=False)
    message = failed.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert "'pass-fail:model-c' did not score these items" in message and "pass-fail:model-a, pass-fail:model-b" in message


def test_a_panel_file_gives_each_model_its_endpoint_and_price(env, fake_openai, monkeypatch):
    load_source(env / "judge.duckdb", pass_fail_file(env, 10))
    (env / "panel.yaml").write_text(
        f"models:\n  - model: cheap\n    price_per_1m_input: 1.0\n    price_per_1m_output: 2.0\n"
        f"  - model: local\n    base_url: {fake_openai.base_url}\n    api_key_var: LOCAL_JUDGE_KEY\n"
    )
    monkeypatch.setenv("JUDGE_PANEL", str(env / "panel.yaml"))
    monkeypatch.setenv("LOCAL_JUDGE_KEY", "sk-local-key-XYZ-123")
    monkeypatch.setenv("JUDGE_LABELS", "pass,fail")
    monkeypatch.setenv("JUDGE_JUDGES", "pass-fail")
    run()
    keys = {json.loads(r.body)["model"]: r.headers["authorization"] for r in fake_openai.requests if r.path.endswith("/chat/completions")}
    assert keys == {"cheap": "Bearer sk-e2e-judges-SECRET-77", "local": "Bearer sk-local-key-XYZ-123"}
    db = env / "judge.duckdb"
    usd = dict(query(db, "SELECT judge, value FROM judge_report_card WHERE metric = 'usd_per_1000_items'"))
    tokens = query(db, "SELECT sum(prompt_tokens), sum(completion_tokens) FROM llm_judge_scores WHERE model = 'cheap'")[0]
    assert list(usd) == ["pass-fail:cheap"] and usd["pass-fail:cheap"] == pytest.approx((tokens[0] * 1 + tokens[1] * 2) / 1e6 / 10 * 1000)
    with duckdb.connect(str(db), read_only=True) as con:  # no key anywhere in the database
        for table, column in con.execute("SELECT table_name, column_name FROM information_schema.columns WHERE data_type = 'VARCHAR'").fetchall():
            assert con.execute(f'SELECT count(*) FROM "{table}" WHERE contains("{column}", \'sk-local-key\')').fetchone()[0] == 0


def llmbar_reference_file(folder: Path) -> Path:
    """LLMBar Natural as a reference task: is output_1 as good as the gold output (the reference)?"""
    data = pd.read_csv(LLMBAR)
    data["reference"] = data["response_a"].where(data["ground_truth"] == "output_1", data["response_b"])
    data["response"] = data["response_a"]
    data["label"] = data["label"].map({"output_1": "correct", "output_2": "incorrect"})
    data["ground_truth"] = data["ground_truth"].map({"output_1": "correct", "output_2": "incorrect"})  # gold: is output_1 right?
    data["source_set"] = "natural"
    path = folder / "llmbar_reference.csv"
    data.drop(columns=["response_a", "response_b"]).to_csv(path, index=False)
    return path


def test_a_reference_judge_and_a_classifier_on_llmbar(env, fake_openai, monkeypatch):
    fake_openai.settings.answer_tokens = {"You check answers against a reference": ("Y", "N"), "You sort user requests": ("1", "2", "3", "4")}
    load_source(env / "judge.duckdb", llmbar_reference_file(env))
    monkeypatch.setenv("JUDGE_LABELS", "correct,incorrect")
    monkeypatch.setenv("JUDGE_JUDGES", "reference-correct,task-type")
    result = run()
    db = env / "judge.duckdb"
    assert fake_openai.count("chat") == 24  # 12 items, each judge once
    raw = pd.read_csv(LLMBAR).drop_duplicates("item_id")
    gold = dict(zip(raw["item_id"], raw["response_a"].where(raw["ground_truth"] == "output_1", raw["response_b"])))
    for body in bodies(fake_openai):
        text = body["messages"][1]["content"]
        if "[Reference answer]" in text:
            assert text.split("[Reference answer]\n")[1].split("\n\n[Answer to check]")[0] in gold.values()
    assert query(db, "SELECT judge, status, count(*) FROM llm_judge_scores GROUP BY ALL ORDER BY 1") == [
        ("reference-correct", "ok", 12), ("task-type", "ok", 12),
    ]
    assert query(db, "SELECT DISTINCT predicted_label IN ('rewrite', 'write', 'answer', 'other') FROM llm_judge_scores WHERE judge = 'task-type'") == [(True,)]
    # the correctness judge votes (its labels are the class set); the classifier stays a score
    assert query(db, "SELECT DISTINCT annotator FROM judgments WHERE annotator_kind = 'llm'") == [("reference-correct:judge-model",)]
    meta = result.asset_materializations_for_node("judgments")[0].metadata
    assert meta["llm_panel_scores_only"].value == "task-type:judge-model"
    # extra source columns reach items (a template may name them) but never the model prior's features
    assert query(db, "SELECT count(source_set) FROM items") == [(12,)]


def test_a_judge_missing_a_column_fails_before_any_call(env, fake_openai, monkeypatch):
    source = pass_fail_file(env, 5)
    load_source(env / "judge.duckdb", source)
    (env / "judges" / "by-difficulty.yaml").write_text(
        "shape: single\nsystem: Grade it.\nuser: '{prompt} ({difficulty}): {response}'\nlabels: {Y: pass, N: fail}\n"
    )
    monkeypatch.setenv("JUDGE_JUDGES", "pass-fail,by-difficulty")
    result = run(raise_on_error=False)
    assert not result.success and fake_openai.count() == 0
    message = result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert message == (
        f"judge 'by-difficulty' ({env / 'judges' / 'by-difficulty.yaml'}) needs column 'difficulty', which the data "
        f"({source}) lacks: add it to the data, or give {{difficulty}} a default or an optional wrapper in the judge file"
    )


def test_a_malformed_judge_file_is_refused_with_file_and_field(env, fake_openai, monkeypatch):
    load_source(env / "judge.duckdb", pass_fail_file(env, 5))
    shutil.copy(BUILTIN_DIR / "pass-fail.yaml", env / "judges" / "broken.yaml")
    (env / "judges" / "broken.yaml").write_text((BUILTIN_DIR / "pass-fail.yaml").read_text().replace("name: pass-fail", "name: broken").replace("{response}", "{response_a}"))
    monkeypatch.setenv("JUDGE_JUDGES", "broken")
    result = run(raise_on_error=False)
    assert not result.success and fake_openai.count() == 0
    message = result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert message.startswith(f"{env / 'judges' / 'broken.yaml'}, field 'user': unknown placeholder {{response_a}} for a single judge")
