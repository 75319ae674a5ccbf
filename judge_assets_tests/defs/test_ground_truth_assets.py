"""Ground truth through Dagster: gold_labels, consensus_labels.source, ground_truth_accuracy and its
check, on a small generic set with partial gold and a gold annotator, and on LLMBar Natural (every
judge's accuracy equal to the paper's expected.csv)."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from judge_assets.core.sources.batches import file_batch, load_batch, validate_batch, write_batch
from judge_assets.defs.consensus import consensus
from judge_assets.defs.reports import consensus_methods_beat_baseline_on_gold, ground_truth_accuracy
from judge_assets.defs.resources import JudgeDuckDBResource, PipelineResource, project_resources
from judge_assets.defs.scoring import llm_judge_scores, model_probs
from judge_assets.defs.votes import items, judgments
from judge_assets_tests.core.test_ground_truth import llmbar_natural_dir

ASSETS = [items, llm_judge_scores, judgments, model_probs, consensus, ground_truth_accuracy]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.delenv("JUDGE_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("JUDGE_LLM_MODEL", raising=False)


def _ingest(db, path) -> None:
    con = duckdb.connect(str(db))
    try:
        batch = file_batch(path)
        table = load_batch(batch)
        write_batch(con, batch, table, validate_batch(table, batch.label))
    finally:
        con.close()


def _materialize(db, gold_annotators: str = "", run_config=None):
    return dg.materialize(
        [*ASSETS, consensus_methods_beat_baseline_on_gold],
        instance=dg.DagsterInstance.ephemeral(),
        resources={
            "duckdb": JudgeDuckDBResource(database=str(db)),
            "pipeline": PipelineResource(llm_annotators="", gold_annotators=gold_annotators),
            "llm_judge": project_resources()["llm_judge"],
        },
        run_config=run_config or {"ops": {"consensus": {"config": {"include_glad": False}}}},
    )


def _query(db, sql):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def _crowd(tmp_path, n_items=60, seed=0):
    """Five annotators (two good, three noisy) on every item; gold (``ground_truth``) on the first
    half of the items only; an ``adjudicator`` votes the truth on items 50-59 (gold by annotator)."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(["pass", "fail"], n_items)
    rows = []
    for i in range(n_items):
        for a, p_right in (("good1", 0.95), ("good2", 0.9), ("noisy1", 0.6), ("noisy2", 0.6), ("noisy3", 0.55)):
            label = truth[i] if rng.random() < p_right else ("fail" if truth[i] == "pass" else "pass")
            row = {"item_id": f"i{i:02d}", "annotator": a, "label": label, "category": "even" if i % 2 == 0 else "odd"}
            if i < n_items // 2:
                row["ground_truth"] = truth[i]
            rows.append(row)
        if i >= 50:
            rows.append({"item_id": f"i{i:02d}", "annotator": "adjudicator", "label": truth[i], "category": "even" if i % 2 == 0 else "odd"})
    path = tmp_path / "crowd.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, truth


def test_partial_gold_and_a_gold_annotator_through_the_assets(tmp_path):
    db = tmp_path / "judge.duckdb"
    path, truth = _crowd(tmp_path)
    _ingest(db, path)
    result = _materialize(db, gold_annotators="adjudicator")
    assert result.success
    gold = _query(db, "SELECT * FROM gold_labels ORDER BY item_id")
    assert len(gold) == 40 and set(gold["source"]) == {"column", "annotator:adjudicator"}
    truth_by_item = pd.Series(truth, index=[f"i{i:02d}" for i in range(60)])
    assert (gold["gold_label"].to_numpy() == truth_by_item[gold["item_id"]].to_numpy()).all()
    assert _query(db, "SELECT count(*) AS n FROM judgments WHERE annotator = 'adjudicator'")["n"].iloc[0] == 0

    labels = _query(db, "SELECT * FROM consensus_labels ORDER BY item_id").set_index("item_id")
    with_gold = labels.index.isin(gold["item_id"])
    assert (labels.loc[with_gold, "source"] == "ground_truth").all() and (labels.loc[~with_gold, "source"] == "consensus").all()
    assert (labels.loc[gold["item_id"], "consensus_label"].to_numpy() == gold["gold_label"].to_numpy()).all()
    assert (labels.loc[with_gold, "consensus_probability"] == 1.0).all()
    assert labels.loc[~with_gold, "consensus_probability"].between(0.5, 1.0).all()
    assert set(labels["consensus_method"]) == {"gold_mixture"} and labels["crowdlab_label"].notna().all()

    scores = _query(db, "SELECT * FROM ground_truth_accuracy")
    overall = scores[scores["category"] == "all"].set_index("name")
    assert set(overall.loc[overall["kind"] == "annotator"].index) == {"good1", "good2", "noisy1", "noisy2", "noisy3"}
    assert {"gold_mixture", "gold_weighted_vote", "best_judge_on_gold", "majority_vote", "dawid_skene", "crowdlab"} <= set(
        overall.loc[overall["kind"] == "method"].index
    )
    assert (overall.loc[overall["kind"] == "method", "n"] == 40).all()
    assert (overall.loc[overall["kind"] == "annotator", "n"] == 40).all()  # every annotator voted on every gold item
    assert set(scores["category"]) == {"all", "even", "odd"}
    check = result.get_asset_check_evaluations()
    assert [c.check_name for c in check] == ["consensus_methods_beat_baseline_on_gold"]


def test_the_default_method_is_cross_fitted_through_the_asset(tmp_path):
    """Flip the gold of one item to a wrong label: the default's cross-fitted prediction of that item
    does not follow it (its own gold is hidden when it is predicted), while consensus_labels keeps the gold."""
    db = tmp_path / "judge.duckdb"
    path, truth = _crowd(tmp_path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    wrong = "fail" if truth[0] == "pass" else "pass"
    for row in rows:
        if row["item_id"] == "i00":
            row["ground_truth"] = wrong
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _ingest(db, path)
    assert _materialize(db).success
    scores = _query(db, "SELECT * FROM ground_truth_accuracy WHERE kind = 'method' AND category = 'all'").set_index("name")
    labels = _query(db, "SELECT item_id, consensus_label FROM consensus_labels WHERE item_id = 'i00'")
    assert labels["consensus_label"].iloc[0] == wrong
    # the flipped item is wrong for every method: no method's accuracy is 1
    assert (scores["accuracy"] < 1).all()


def test_without_gold_the_table_is_empty_with_a_note_and_consensus_is_crowdlab(tmp_path):
    db = tmp_path / "judge.duckdb"
    path, _ = _crowd(tmp_path)
    rows = [{k: v for k, v in json.loads(line).items() if k != "ground_truth"} for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _ingest(db, path)
    result = _materialize(db)
    assert result.success
    assert _query(db, "SELECT count(*) AS n FROM ground_truth_accuracy")["n"].iloc[0] == 0
    note = result.asset_materializations_for_node("ground_truth_accuracy")[0].metadata["note"].value
    assert note.startswith("no gold")
    labels = _query(db, "SELECT * FROM consensus_labels")
    assert (labels["source"] == "consensus").all() and (labels["consensus_label"] == labels["crowdlab_label"]).all()
    assert set(labels["consensus_method"]) == {"crowdlab"}


def test_llmbar_natural_every_judge_reproduces_expected_csv(tmp_path):
    db = tmp_path / "judge.duckdb"
    folder = llmbar_natural_dir()
    _ingest(db, folder / "judgments.csv")
    assert _materialize(db).success
    expected = pd.read_csv(folder / "expected.csv").set_index("annotator")
    scores = _query(db, "SELECT * FROM ground_truth_accuracy WHERE category = 'all'")
    judges = scores[scores["kind"] == "annotator"].set_index("name").reindex(expected.index)
    assert len(expected) == 65 and judges["n"].notna().all()
    assert (judges["n"] == expected["votes"]).all()
    assert (judges["accuracy"].round(4) == expected["accuracy"].round(4)).all()
    methods = scores[scores["kind"] == "method"].set_index("name")
    assert (methods["n"] == 100).all()
    labels = _query(db, "SELECT count(*) FILTER (WHERE source = 'ground_truth') AS n FROM consensus_labels")
    assert labels["n"].iloc[0] == 100


def test_a_classifier_graded_by_the_reference_correct_judge_on_the_loopback_server(tmp_path, fake_openai, monkeypatch):
    """The classification-with-judge flow: a classifier labels 30 messages spam/ham (its label is
    the response the judge grades), gold on 20, the built-in reference-correct judge grades every
    prediction; the report gives the classifier's accuracy on gold, as the judge estimates it, and
    the judge's confusion matrix against gold."""
    from judge_assets.defs.reports import judged_classifier_report

    for name in ("JUDGE_SOURCE", "JUDGE_PANEL", "JUDGE_LABELS", "JUDGE_PRIOR_JUDGE", "JUDGE_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUDGE_LLM_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("JUDGE_LLM_MODEL", "judge-model")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("JUDGE_JUDGES", "reference-correct")
    fake_openai.settings.answer_tokens = {"You check answers against a reference": ("Y", "N")}
    rng = np.random.default_rng(3)
    truth = rng.choice(["spam", "ham"], 30)
    predicted = np.where(rng.random(30) < 0.7, truth, np.where(truth == "spam", "ham", "spam"))
    rows = [{
        "item_id": f"m{i:02d}", "annotator": "classifier", "label": predicted[i], "ground_truth": truth[i] if i < 20 else None,
        "prompt": f"Is message {i} spam or ham? {'win money now' * (i % 3)}", "response": predicted[i],
        "reference": "spam: unsolicited bulk or promotional messages; ham: everything else",
    } for i in range(30)]
    path = tmp_path / "classifier.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    db = tmp_path / "judge.duckdb"
    _ingest(db, path)
    result = dg.materialize(
        [items, llm_judge_scores, judgments, judged_classifier_report],
        instance=dg.DagsterInstance.ephemeral(),
        resources={**project_resources(), "duckdb": JudgeDuckDBResource(database=str(db)), "pipeline": PipelineResource(llm_annotators="")},
    )
    assert result.success and fake_openai.count("chat") == 30
    report = _query(db, "SELECT * FROM judged_classifier_report")
    verdicts = _query(db, "SELECT item_id, predicted_label FROM llm_judge_scores WHERE status = 'ok'").set_index("item_id")["predicted_label"]
    assert set(verdicts) <= {"correct", "incorrect"} and len(verdicts) == 30
    by_metric = report[report["metric"] != "confusion"].set_index("metric")
    assert by_metric.loc["classifier_accuracy_on_gold", "value"] == pytest.approx((predicted[:20] == truth[:20]).mean())
    assert by_metric.loc["classifier_accuracy_on_gold", "n"] == 20
    assert by_metric.loc["judged_accuracy", "value"] == pytest.approx((verdicts == "correct").mean())
    assert by_metric.loc["judged_accuracy", "judge"] == "reference-correct:judge-model"
    confusion = report[report["metric"] == "confusion"]
    assert confusion["value"].sum() == 20 and len(confusion) == 4
    actual = pd.Series(predicted[:20] == truth[:20], index=[f"m{i:02d}" for i in range(20)])
    said = verdicts[actual.index] == "correct"
    cell = confusion.set_index(["actual", "judged"])["value"]
    assert cell[("correct", "correct")] == (actual & said).sum() and cell[("incorrect", "correct")] == (~actual & said).sum()
    assert by_metric.loc["judge_accuracy_on_gold", "value"] == pytest.approx((actual == said).mean())
