"""The held-out vote benchmark: splits without leakage, reproducible runs, any schema."""

from __future__ import annotations

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from judge_assets.core.plots import plot_benchmark
from judge_assets.core.reports import consensus_benchmark as cb
from judge_assets.core.scoring.prior import item_features, prior_training_labels
from judge_assets.defs.reports import consensus_benchmark
from judge_assets.defs.resources import JudgeDuckDBResource

PAIRWISE = ("A", "B", "tie")


def random_generic(n_items: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generic schema, 3 votes per item, every label drawn uniformly and independently: no
    method can predict a hidden vote better than chance (1/3) unless it sees it."""
    rng = np.random.default_rng(seed)
    annotators = [f"rater{k}" for k in range(8)]
    rows = []
    for i in range(n_items):
        for who in rng.choice(annotators, size=3, replace=False):
            rows.append((f"item{i}", who, ("x", "y", "z")[rng.integers(3)]))
    judgments = pd.DataFrame(rows, columns=["item_id", "annotator", "label"])
    items = pd.DataFrame({"item_id": [f"item{i}" for i in range(n_items)], "text": [f"some words {i % 7} here" for i in range(n_items)]})
    return judgments, items


def noisy_pairwise(n_items: int = 160, seed: int = 0) -> pd.DataFrame:
    """Pairwise schema: a true label per item, four human raters (accuracy 0.8) and an LLM
    judge (accuracy 0.6) that skips every fifth item."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_items):
        truth = rng.integers(3)
        voters = [f"expert_{k}" for k in rng.choice(6, size=2 + i % 3, replace=False)]
        for who in voters:
            label = truth if rng.random() < 0.8 else rng.integers(3)
            rows.append((f"{i}:1:m1|m2", who, "human", PAIRWISE[label]))
        if i % 5:
            label = truth if rng.random() < 0.6 else rng.integers(3)
            rows.append((f"{i}:1:m1|m2", "gpt4_pair", "llm", PAIRWISE[label]))
    return pd.DataFrame(rows, columns=["item_id", "annotator", "annotator_kind", "label"])


def pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["item_id"], frame["annotator"]))


def test_split_hides_one_human_vote_per_eligible_item():
    judgments = noisy_pairwise()
    splits = cb.held_out_splits(judgments, min_human_votes=3, seeds=(0, 1))
    human_counts = judgments[judgments["annotator_kind"] == "human"].groupby("item_id").size()
    eligible = set(human_counts.index[human_counts >= 3])
    for split in splits:
        assert set(split.hidden["item_id"]) == eligible and len(split.hidden) == len(eligible)
        assert set(split.hidden["annotator"]) <= {f"expert_{k}" for k in range(6)}  # never the LLM
        assert not pairs(split.hidden) & pairs(split.visible)
        assert pairs(split.hidden) | pairs(split.visible) == pairs(judgments)
    assert pairs(splits[0].hidden) != pairs(splits[1].hidden)


def test_methods_see_no_hidden_vote_and_priors_train_on_visible_votes_only():
    judgments = noisy_pairwise()
    items = pd.DataFrame({"item_id": judgments["item_id"].unique()})
    split = cb.held_out_splits(judgments, seeds=(4,))[0]
    inp = cb.benchmark_input(split, items, PAIRWISE, item_features(items))
    seen = set(zip(inp.votes.item_ids[inp.votes.item], inp.votes.annotators[inp.votes.annotator]))
    assert not seen & pairs(split.hidden)
    assert not pairs(inp.visible) & pairs(split.hidden)
    # the prior's training label of an item equals the majority of its visible human votes
    labels = prior_training_labels(inp.visible, PAIRWISE, seed=4)
    full = prior_training_labels(judgments, PAIRWISE, seed=4)
    assert (labels.reindex(full.index) != full).any()  # hiding votes changed some training labels


def test_no_method_beats_chance_when_hidden_votes_are_random():
    judgments, items = random_generic()
    runs = cb.run_benchmark(judgments, items, ("x", "y", "z"), seeds=(0, 1))
    summary = cb.summarize(runs)
    assert (summary["mean_accuracy"] < 0.40).all(), summary
    # the same majority vote fed the hidden vote too (a leak) is far above chance: the bound above can fail
    split = cb.held_out_splits(judgments, seeds=(0,))[0]
    leaky = cb.HeldOutSplit(seed=0, visible=judgments, hidden=split.hidden)
    inp = cb.benchmark_input(leaky, items, ("x", "y", "z"), item_features(items))
    codes = cb.method_majority_vote(inp)
    hit = codes[pd.Index(inp.votes.item_ids).get_indexer(split.hidden["item_id"])] == pd.Index(["x", "y", "z"]).get_indexer(split.hidden["label"])
    assert hit.mean() > 0.5


def test_runs_are_reproducible_per_seed():
    judgments = noisy_pairwise()
    methods = {k: v for k, v in cb.default_methods(judgments, include_glad=False).items() if "CROWDLAB" in k or k == "majority vote"}
    first = cb.run_benchmark(judgments, None, PAIRWISE, methods, seeds=(0, 1))
    again = cb.run_benchmark(judgments, None, PAIRWISE, methods, seeds=(0, 1))
    pd.testing.assert_frame_equal(first, again)
    other = cb.run_benchmark(judgments, None, PAIRWISE, methods, seeds=(2, 3))
    assert not np.array_equal(first["n_correct"].to_numpy(), other["n_correct"].to_numpy())


def test_pairwise_run_with_an_llm_judge():
    judgments = noisy_pairwise()
    runs = cb.run_benchmark(judgments, None, PAIRWISE, seeds=(0, 1))
    summary = cb.summarize(runs).set_index("method")
    assert {"LLM judge alone", "CROWDLAB, LLM judge as prior", "GLAD", "Dawid-Skene", cb.DEFAULT_METHOD} <= set(summary.index)
    eligible = (judgments[judgments["annotator_kind"] == "human"].groupby("item_id").size() >= 3).sum()
    assert summary.loc["majority vote", "n_items"] == eligible
    assert summary.loc["LLM judge alone", "n_items"] < eligible  # abstains where it did not vote
    assert summary.loc["majority vote", "mean_accuracy"] > 0.6  # raters are 80% accurate
    assert summary["is_default"].sum() == 1 and summary.loc[cb.DEFAULT_METHOD, "is_default"]


def test_generic_schema_dataset():
    rng = np.random.default_rng(1)
    rows = []
    for i in range(120):
        truth = ("cat", "dog")[rng.integers(2)]
        for k in range(3 + i % 2):
            good = rng.random() < (0.9 if k < 2 else 0.6)
            rows.append((f"img{i}", f"worker{k}", truth if good else ("dog" if truth == "cat" else "cat")))
    judgments = pd.DataFrame(rows, columns=["item_id", "annotator", "label"])
    runs = cb.run_benchmark(judgments, None, ("cat", "dog"), seeds=(0, 1))
    summary = cb.summarize(runs)
    assert not any("LLM" in m for m in summary["method"])
    assert set(runs["n_items"]) == {120}
    assert (summary["mean_accuracy"] > 0.65).all()


def test_report_table_and_plot():
    runs = pd.DataFrame(
        {
            "method": ["majority vote", "majority vote", cb.DEFAULT_METHOD, cb.DEFAULT_METHOD],
            "seed": [0, 1, 0, 1],
            "n_items": [400] * 4,
            "n_correct": [270, 274, 280, 282],
            "accuracy": [0.675, 0.685, 0.70, 0.705],
        }
    )
    summary = cb.summarize(runs)
    assert list(summary["method"]) == [cb.DEFAULT_METHOD, "majority vote"]
    table = cb.markdown_table(summary)
    assert f"| **{cb.DEFAULT_METHOD}** (default) | 70.2% ± 0.4 | 400 |" in table
    assert "| majority vote | 68.0% ± 0.7 | 400 |" in table
    fig = plot_benchmark(summary)
    assert len(fig.axes[0].patches) == 2


def test_without_items_of_three_human_votes_the_result_is_empty_and_says_why():
    """Thin data (here at most 2 human votes per item) once raised and failed the run."""
    judgments = noisy_pairwise(20)
    judgments = judgments[(judgments["annotator_kind"] == "llm") | (judgments.groupby("item_id").cumcount() < 2)]
    assert cb.held_out_splits(judgments) == []
    runs = cb.run_benchmark(judgments, None, PAIRWISE)
    assert runs.empty and list(runs.columns) == ["method", "seed", "n_items", "n_correct", "accuracy"]
    assert cb.summarize(runs).empty
    assert cb.skip_reason(judgments) == "needs items with ≥3 human votes; found 0 (the most human votes on one item: 2)"
    assert cb.skip_reason(judgments[judgments["annotator_kind"] == "llm"]) == "needs items with ≥3 human votes; found 0 (the most human votes on one item: 0)"
    assert cb.skip_reason(noisy_pairwise(20)) is None


def test_the_asset_on_thin_data_is_green_with_empty_tables_and_the_reason(tmp_path):
    judgments = noisy_pairwise(10)
    judgments = judgments[judgments["annotator"].isin(["expert_0", "gpt4_pair"])]  # one human annotator
    db = tmp_path / "judge.duckdb"
    con = duckdb.connect(str(db))
    con.register("j", judgments)
    con.execute("CREATE TABLE judgments AS SELECT * FROM j")
    con.execute("CREATE TABLE items AS SELECT DISTINCT item_id FROM judgments")
    con.execute("CREATE TABLE llm_judge_scores (item_id VARCHAR, p_a DOUBLE, p_b DOUBLE, p_tie DOUBLE, status VARCHAR)")
    con.execute("CREATE TABLE label_set AS SELECT * FROM (VALUES ('A', 0), ('B', 1), ('tie', 2)) t(label, code)")
    con.close()

    result = dg.materialize([consensus_benchmark], resources={"duckdb": JudgeDuckDBResource(database=str(db))})

    assert result.success
    [event] = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["skipped"].value == "needs items with ≥3 human votes; found 0 (the most human votes on one item: 1)"
    assert metadata["dagster/row_count"].value == 0
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM consensus_benchmark").fetchone() == (0,)
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE consensus_benchmark_runs)").fetchall())
    assert types == {"method": "VARCHAR", "seed": "BIGINT", "n_items": "BIGINT", "n_correct": "BIGINT", "accuracy": "DOUBLE"}


def test_bad_inputs_are_named():
    judgments = noisy_pairwise(20)
    with pytest.raises(ValueError, match="lacks column"):
        cb.held_out_splits(judgments.drop(columns="label"))
    with pytest.raises(ValueError, match="outside the class set"):
        cb.run_benchmark(judgments, None, ("A", "B"))


def test_with_gold_every_method_is_ranked_on_gold_next_to_the_held_out_score():
    from judge_assets_tests.core.test_ground_truth import LLMBAR_CLASSES, load_llmbar

    judgments, _ = load_llmbar()
    votes = judgments[["item_id", "annotator", "label"]].assign(annotator_kind="human")
    gold = judgments.groupby("item_id")["ground_truth"].first()
    methods = {"majority vote": cb.method_majority_vote, "Dawid-Skene": cb.method_dawid_skene}
    runs = cb.run_benchmark(votes, None, LLMBAR_CLASSES, methods, (0,), min_human_votes=3)
    on_gold = cb.gold_scores(votes, None, LLMBAR_CLASSES, gold, methods)
    assert list(on_gold.columns) == cb.GOLD_COLUMNS
    assert set(on_gold["method"]) == {"majority vote", "Dawid-Skene", *cb.GOLD_AWARE_METHODS}
    assert (on_gold["gold_n"] == 100).all()
    row = on_gold.set_index("method").loc["majority vote"]
    assert row["gold_ci_low"] < row["gold_accuracy"] < row["gold_ci_high"]
    summary = cb.summarize(runs, gold=on_gold)
    assert summary["gold_accuracy"].is_monotonic_decreasing  # ranked on gold
    assert summary.loc[summary["is_default"], "method"].tolist() == ["gold_mixture"]
    assert summary.set_index("method").loc["gold_mixture", ["mean_accuracy"]].isna().all()  # no held-out score
    assert summary.set_index("method").loc["majority vote", ["mean_accuracy", "gold_accuracy"]].notna().all()
    table = cb.markdown_table(summary)
    assert "accuracy on gold" in table and "**gold_mixture** (default) | — | — |" in table
    # without gold nothing changes
    assert list(cb.summarize(runs).columns) == ["method", "mean_accuracy", "std_accuracy", "n_items", "n_seeds", "is_default"]
    assert cb.gold_scores(votes, None, LLMBAR_CLASSES, gold.iloc[:0], methods).empty
