"""Consensus stage: CROWDLAB equals cleanlab, the other aggregators, edge cases, the Dagster asset."""

import os
import warnings

import dagster as dg
import duckdb as ddb
import numpy as np
import pandas as pd
import pytest
from cleanlab.multiannotator import get_label_quality_multiannotator
from judge_assets.defs.resources import JudgeDuckDBResource

from judge_assets.core.consensus.methods import FALLBACK_METHOD, crowdlab, dawid_skene, dawid_skene_reference, robust_crowdlab
from judge_assets.core.consensus.tables import build_consensus_tables, reliability_table
from judge_assets.core.plots import plot_quality_by_group, plot_reliability
from judge_assets.core.labels import PAIRWISE_LABELS
from judge_assets.core.consensus.votes import Votes
from judge_assets_tests.core.consensus_fixtures import dirichlet_probs, items_of, mt_bench_judgments, synthetic_judgments

os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
CLASSES = PAIRWISE_LABELS
HOSTILE = ['"; DROP TABLE x; --', "o'brien", "two words"]


def cleanlab_direct(judgments: pd.DataFrame, annotators: list[str], model_probs: pd.DataFrame) -> dict:
    """cleanlab on a dense matrix pivoted here, independently of Votes."""
    sub = judgments[judgments["annotator"].isin(annotators)]
    codes = sub.assign(code=sub["label"].map({c: i for i, c in enumerate(CLASSES)}).astype(float))
    matrix = codes.pivot(index="item_id", columns="annotator", values="code").sort_index()
    prior = model_probs.set_index("item_id").loc[matrix.index, [f"p_{c}" for c in CLASSES]].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_label_quality_multiannotator(matrix, prior, return_detailed_quality=True, return_annotator_stats=True, verbose=False)


def assert_matches_cleanlab(out, judgments, annotators, model_probs):
    ref = cleanlab_direct(judgments, annotators, model_probs)
    labels = out.tables["consensus_labels"].set_index("item_id")
    quality = ref["label_quality"]
    assert list(labels.index) == list(quality.index)
    assert (labels["consensus_label"].to_numpy() == np.asarray(CLASSES, dtype=object)[quality["consensus_label"]]).all()
    np.testing.assert_allclose(labels["consensus_quality_score"], quality["consensus_quality_score"], rtol=1e-12)
    np.testing.assert_allclose(labels["annotator_agreement"], quality["annotator_agreement"], rtol=1e-12)
    stats = out.tables["annotator_stats"].set_index("annotator")
    ref_stats = ref["annotator_stats"].loc[stats.index]
    np.testing.assert_allclose(stats["annotator_quality"], ref_stats["annotator_quality"], rtol=1e-12)
    np.testing.assert_allclose(stats["agreement_with_consensus"], ref_stats["agreement_with_consensus"], rtol=1e-12)
    assert (stats["worst_class"].to_numpy() == np.asarray(CLASSES, dtype=object)[ref_stats["worst_class"].astype(int)]).all()
    detail = out.tables["label_quality_detail"]
    ref_detail = ref["detailed_label_quality"].stack().rename("q").reset_index()
    ref_detail.columns = ["item_id", "annotator", "q"]
    ref_detail["annotator"] = ref_detail["annotator"].str.removeprefix("quality_annotator_")
    merged = detail.merge(ref_detail, on=["item_id", "annotator"], how="outer", indicator=True)
    assert (merged["_merge"] == "both").all()
    np.testing.assert_allclose(merged["label_quality_score"], merged["q"], rtol=1e-12)


@pytest.fixture(scope="module")
def mt_bench():
    judgments = mt_bench_judgments()
    items = items_of(judgments)
    probs = dirichlet_probs(items["item_id"], CLASSES, seed=1)
    return judgments, items, probs, build_consensus_tables(judgments, probs, items, CLASSES, ("gpt4_pair",))


def test_mt_bench_consensus_equals_direct_cleanlab(mt_bench):
    judgments, items, probs, out = mt_bench
    assert out.method == "crowdlab" and out.notes == []
    assert len(out.tables["consensus_labels"]) == 2400
    assert_matches_cleanlab(out, judgments, sorted(judgments["annotator"].unique()), probs)


def test_mt_bench_human_consensus_excludes_the_llm_judge(mt_bench):
    judgments, items, probs, out = mt_bench
    human = out.tables["human_consensus_labels"]
    humans = judgments[judgments["annotator_kind"] == "human"]
    assert len(human) == humans["item_id"].nunique() == 1814
    ref = cleanlab_direct(judgments, sorted(humans["annotator"].unique()), probs)["label_quality"]
    assert (human["human_consensus_label"].to_numpy() == np.asarray(CLASSES, dtype=object)[ref["consensus_label"]]).all()
    assert (human["num_human_annotations"].to_numpy() == ref["num_annotations"].to_numpy()).all()


def test_mt_bench_groups_and_aggregator_comparison(mt_bench):
    _, _, _, out = mt_bench
    summary = out.tables["annotator_group_summary"].set_index(["level", "group"])
    assert summary.loc[("annotator_group", "author"), "n_annotators"] == 7
    assert summary.loc[("annotator_group", "expert"), "n_annotators"] == 58
    assert summary.loc[("annotator_kind", "llm"), "n_labels"] == 2400
    comparison = out.tables["aggregator_comparison"]
    overall = comparison[comparison["scope"] == "overall"].iloc[0]
    assert overall["n_items"] == 2400
    # the three aggregators mostly agree on MT-Bench, but not everywhere
    assert 0.8 < overall["all_agree"] < 1.0
    assert set(comparison.loc[comparison["scope"] == "category", "category"]) == {
        "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"}
    assert comparison.loc[comparison["scope"] == "category", "n_items"].sum() == 2400


def test_synthetic_consensus_equals_cleanlab_and_ranks_annotators():
    judgments, truth = synthetic_judgments(n_items=120, seed=3)
    items = items_of(judgments)
    probs = dirichlet_probs(items["item_id"], CLASSES, seed=2)
    out = build_consensus_tables(judgments, probs, items, CLASSES, ("llm_judge",), include_glad=True)
    assert_matches_cleanlab(out, judgments, sorted(judgments["annotator"].unique()), probs)
    glad_agreement = out.tables["aggregator_comparison"].set_index("scope").loc["overall", "crowdlab_vs_glad"]
    assert glad_agreement > 0.8 and out.tables["consensus_labels"]["glad_label"].notna().all()
    quality = out.tables["annotator_stats"].set_index("annotator")["annotator_quality"]
    assert quality["ann_good"] > quality["ann_ok"] > quality["ann_bad"]
    consensus = out.tables["consensus_labels"]["consensus_label"].to_numpy()
    assert (consensus == np.asarray(CLASSES, dtype=object)[truth]).mean() > 0.85


def test_crowdlab_posterior_is_a_distribution_whose_argmax_is_the_consensus():
    judgments, _ = synthetic_judgments(n_items=80, seed=7)
    votes = Votes.from_frame(judgments, CLASSES)
    result = crowdlab(votes, dirichlet_probs(votes.item_ids, CLASSES, seed=3)[["p_A", "p_B", "p_tie"]].to_numpy())
    np.testing.assert_allclose(result.post_pred_probs.sum(axis=1), 1.0)
    top = result.post_pred_probs.max(axis=1, keepdims=True)
    unique_max = (result.post_pred_probs == top).sum(axis=1) == 1
    assert (result.post_pred_probs.argmax(axis=1)[unique_max] == result.consensus_label[unique_max]).all()
    assert result.label_quality.shape == (len(judgments),) and np.isfinite(result.model_weight)


def test_dawid_skene_recovers_labels_and_returns_probabilities():
    judgments, truth = synthetic_judgments(n_items=150, votes_per_item=4, seed=5)
    votes = Votes.from_frame(judgments, CLASSES)
    codes, probs = dawid_skene(votes)
    assert probs.shape == (150, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    order = np.argsort([int(i[4:]) for i in votes.item_ids])
    assert (codes[order] == truth).mean() > 0.9


def test_single_annotator_items_and_one_label_annotator():
    judgments = pd.DataFrame(
        [("i1", "a", "A"), ("i1", "b", "A"), ("i2", "a", "B"), ("i2", "b", "tie"), ("i3", "a", "B"), ("i4", "once", "tie"), ("i4", "b", "tie")],
        columns=["item_id", "annotator", "label"],
    ).assign(annotator_kind="human")
    items = items_of(judgments)
    probs = dirichlet_probs(items["item_id"], CLASSES, seed=0)
    out = build_consensus_tables(judgments, probs, items, CLASSES, ())
    labels = out.tables["consensus_labels"].set_index("item_id")
    assert labels.loc["i3", "consensus_label"] == "B" and labels.loc["i3", "num_annotations"] == 1
    assert labels.loc["i4", "consensus_label"] == "tie"  # an all-tie item keeps its tie
    stats = out.tables["annotator_stats"].set_index("annotator")
    assert stats.loc["once", "num_examples_labeled"] == 1
    assert_matches_cleanlab(out, judgments, ["a", "b", "once"], probs)


def test_annotator_without_overlap_gets_no_quality_and_a_note():
    judgments = pd.DataFrame(
        [("i1", "a", "A"), ("i1", "b", "A"), ("i2", "a", "B"), ("i2", "b", "B"), ("i3", "loner", "tie")],
        columns=["item_id", "annotator", "label"],
    ).assign(annotator_kind="human")
    items = items_of(judgments)
    out = build_consensus_tables(judgments, dirichlet_probs(items["item_id"], CLASSES), items, CLASSES, ())
    stats = out.tables["annotator_stats"].set_index("annotator")
    assert np.isnan(stats.loc["loner", "annotator_quality"])
    assert stats.loc["loner", "agreement_with_consensus"] == 1.0
    assert any("share no item" in n and "'loner'" in n for n in out.notes)
    assert out.tables["consensus_labels"].set_index("item_id").loc["i3", "consensus_label"] == "tie"


def test_no_item_with_two_labels_falls_back_to_majority_with_prior_quality():
    judgments = pd.DataFrame(
        [("i1", "a", "A"), ("i2", "b", "B"), ("i3", "a", "tie")], columns=["item_id", "annotator", "label"]
    ).assign(annotator_kind="human")
    items = items_of(judgments)
    probs = pd.DataFrame({"item_id": ["i1", "i2", "i3"], "p_A": [0.7, 0.1, 0.2], "p_B": [0.2, 0.6, 0.3], "p_tie": [0.1, 0.3, 0.5], "scorer": "uniform"})
    out = build_consensus_tables(judgments, probs, items, CLASSES, ())
    assert out.method == FALLBACK_METHOD
    assert any("no item has two or more votes" in n for n in out.notes)
    labels = out.tables["consensus_labels"]
    assert list(labels["consensus_label"]) == ["A", "B", "tie"]
    np.testing.assert_allclose(labels["consensus_quality_score"], [0.7, 0.6, 0.5])
    assert (labels["consensus_method"] == FALLBACK_METHOD).all()
    stats = out.tables["annotator_stats"].set_index("annotator")
    np.testing.assert_allclose(stats.loc["a", "annotator_quality"], (0.7 + 0.5) / 2)


def test_one_annotator_falls_back_too():
    votes = Votes.from_frame(pd.DataFrame({"item_id": ["x", "y"], "annotator": ["solo", "solo"], "label": ["A", "B"]}), CLASSES)
    run = robust_crowdlab(votes, np.full((2, 3), 1 / 3))
    assert run.method == FALLBACK_METHOD
    assert list(run.result.consensus_label) == [0, 1]


def test_items_and_annotators_without_votes_are_dropped_and_reported():
    frame = pd.DataFrame({"item_id": ["i1", "i1", "i2", "i2"], "annotator": ["a", "b", "a", "b"], "label": ["A", "B", "B", "B"]})
    votes = Votes.from_frame(frame, CLASSES, item_ids=["i1", "i2", "empty"], annotators=["a", "b", "idle"])
    run = robust_crowdlab(votes, np.full((3, 3), 1 / 3))
    assert list(run.dropped_items) == ["empty"] and list(run.dropped_annotators) == ["idle"]
    assert "dropped 1 item(s) without any vote" in run.notes
    assert any("'idle'" in n for n in run.notes)
    assert list(run.votes.item_ids) == ["i1", "i2"]
    with pytest.raises(ValueError, match="1 item\\(s\\) have no vote"):
        crowdlab(Votes.from_frame(frame, CLASSES, item_ids=["i1", "i2", "empty"]), np.full((3, 3), 1 / 3))


def test_items_table_entry_without_votes_drops_out():
    judgments = pd.DataFrame(
        [("i1", "a", "A"), ("i1", "b", "A"), ("i2", "a", "B")], columns=["item_id", "annotator", "label"]
    ).assign(annotator_kind="human")
    items = pd.DataFrame({"item_id": ["i1", "i2", "i9"]})
    out = build_consensus_tables(judgments, dirichlet_probs(["i1", "i2"], CLASSES), items, CLASSES, ())
    assert list(out.tables["consensus_labels"]["item_id"]) == ["i1", "i2"]
    assert "dropped 1 item(s) without any vote" in out.notes


def test_drop_ties_reproduces_the_binary_setup():
    judgments = pd.DataFrame(
        [("i1", "a", "A"), ("i1", "b", "tie"), ("i2", "a", "tie"), ("i2", "b", "tie"), ("i3", "a", "B"), ("i3", "b", "B")],
        columns=["item_id", "annotator", "label"],
    ).assign(annotator_kind="human")
    items = items_of(judgments)
    probs = pd.DataFrame({"item_id": ["i1", "i2", "i3"], "p_A": [0.2, 0.3, 0.1], "p_B": [0.6, 0.3, 0.1], "p_tie": [0.2, 0.4, 0.8], "scorer": "uniform"})
    out = build_consensus_tables(judgments, probs, items, CLASSES, (), drop_ties=True)
    labels = out.tables["consensus_labels"]
    assert out.classes == ("A", "B")
    assert list(labels["item_id"]) == ["i1", "i3"]  # i2 had only tie votes
    assert set(labels["consensus_label"]) <= {"A", "B"}
    np.testing.assert_allclose(out.prior, [[0.25, 0.75], [0.5, 0.5]])


def test_hostile_annotator_names_survive():
    judgments, _ = synthetic_judgments(n_items=40, accuracies={HOSTILE[0]: 0.9, HOSTILE[1]: 0.8, HOSTILE[2]: 0.7}, seed=1)
    items = items_of(judgments)
    out = build_consensus_tables(judgments, dirichlet_probs(items["item_id"], CLASSES), items, CLASSES, ())
    assert set(out.tables["annotator_stats"]["annotator"]) == set(HOSTILE)
    assert set(out.tables["label_quality_detail"]["annotator"]) == set(HOSTILE)


def test_bad_inputs_raise_clear_errors():
    judgments = pd.DataFrame({"item_id": ["i1"], "annotator": ["a"], "annotator_kind": ["human"], "label": ["maybe"]})
    with pytest.raises(ValueError, match="labels outside the class set.*'maybe'"):
        build_consensus_tables(judgments, dirichlet_probs(["i1"], CLASSES), items_of(judgments), CLASSES, ())
    judgments = pd.DataFrame({"item_id": ["i1", "i2"], "annotator": ["a", "a"], "annotator_kind": ["human"] * 2, "label": ["A", "B"]})
    with pytest.raises(ValueError, match="no probabilities for 1 voted item"):
        build_consensus_tables(judgments, dirichlet_probs(["i1"], CLASSES), items_of(judgments), CLASSES, ())
    with pytest.raises(ValueError, match="annotators not found in judgments: \\['ghost'\\]"):
        build_consensus_tables(judgments, dirichlet_probs(["i1", "i2"], CLASSES), items_of(judgments), CLASSES, (), annotators=["ghost"])


def test_reliability_table_and_plots():
    prior = np.array([[0.9, 0.05, 0.05], [0.85, 0.1, 0.05], [0.4, 0.35, 0.25], [0.2, 0.45, 0.35]])
    consensus = np.array([0, 1, 0, 2])
    table = reliability_table(prior, consensus, n_bins=2)
    assert list(table["n_items"]) == [2, 2]
    np.testing.assert_allclose(table["accuracy"], [0.5, 0.5])
    np.testing.assert_allclose(table["mean_confidence"], [0.425, 0.875])
    fig = plot_reliability(prior, consensus)
    assert fig.axes[0].get_xlabel() == "prior confidence (top class)"
    stats = pd.DataFrame({"annotator_group": ["author", "expert", "expert"], "annotator_quality": [0.8, 0.7, np.nan]})
    fig = plot_quality_by_group(stats)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["author\n(n=1)", "expert\n(n=1)"]


def _seed_db(path, judgments: pd.DataFrame, probs: pd.DataFrame) -> None:
    con = ddb.connect(str(path))
    con.register("j", judgments)
    con.execute("CREATE TABLE judgments AS SELECT * FROM j")
    con.register("i", items_of(judgments))
    con.execute("CREATE TABLE items AS SELECT * FROM i")
    con.register("p", probs)
    con.execute("CREATE TABLE model_probs AS SELECT * FROM p")
    con.execute("CREATE TABLE label_set AS SELECT * FROM (VALUES ('A', 0), ('B', 1), ('tie', 2)) t(label, code)")
    con.close()


def test_consensus_asset_writes_every_table_and_checks_pass(tmp_path):
    from judge_assets.defs.consensus import CONSENSUS_TABLES, consensus, consensus_checks
    from judge_assets.defs.resources import PipelineResource

    judgments, _ = synthetic_judgments(n_items=40, accuracies={HOSTILE[0]: 0.9, HOSTILE[1]: 0.8, "llm_x": 0.8}, seed=2)
    judgments["category"] = "writing"
    db = tmp_path / "judge.duckdb"
    _seed_db(db, judgments, dirichlet_probs(judgments["item_id"].unique(), CLASSES))
    result = dg.materialize(
        [consensus, *consensus_checks],
        resources={"duckdb": JudgeDuckDBResource(database=str(db)), "pipeline": PipelineResource(llm_annotators="llm_x")},
        run_config={"ops": {"consensus": {"config": {"include_glad": False}}}},
        selection=dg.AssetSelection.assets(*CONSENSUS_TABLES),
    )
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"consensus_label_coverage": True, "consensus_labels_valid": True, "annotator_stats_valid": True}
    con = ddb.connect(str(db), read_only=True)
    counts = {name: con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in CONSENSUS_TABLES}
    names = {r[0] for r in con.execute("SELECT annotator FROM annotator_stats").fetchall()}
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE consensus_labels)").fetchall())
    judges = {r[0] for r in con.execute("SELECT DISTINCT judge FROM judge_report_card").fetchall()}
    con.close()
    assert counts["consensus_labels"] == 40 and counts["label_quality_detail"] == len(judgments)
    assert names == {HOSTILE[0], HOSTILE[1], "llm_x"}
    assert judges == {"llm_x", "human"}
    # metadata absent from the input is NULL of a proper type, never DuckDB's "NULL" type
    assert (types["question_id"], types["turn"], types["category"], types["glad_label"]) == ("BIGINT", "INTEGER", "VARCHAR", "VARCHAR")


def test_mt_bench_report_card_sits_next_to_the_paper(mt_bench):
    _, _, _, out = mt_bench
    card = out.tables["judge_report_card"]
    paper_rows = card.dropna(subset=["paper_value"])
    assert set(zip(paper_rows["judge"], paper_rows["metric"])) == {
        ("gpt4_pair", "agreement_with_ties"), ("gpt4_pair", "agreement_without_ties"),
        ("human", "agreement_with_ties"), ("human", "agreement_without_ties")}
    assert (paper_rows["scope"] == "turn=1").all()
    np.testing.assert_allclose(paper_rows["value"], paper_rows["paper_value"], atol=0.005)
    vs_consensus = card[(card["judge"] == "gpt4_pair") & (card["reference"] == "human_consensus") & (card["metric"] == "accuracy")]
    assert vs_consensus["n"].iloc[0] == 1814  # every item with a human vote
    assert 0.6 < vs_consensus["value"].iloc[0] < 0.8


def test_glad_runs_only_up_to_its_vote_limit_and_says_why_it_did_not():
    judgments, _ = synthetic_judgments(n_items=60, seed=5)
    items = items_of(judgments)
    probs = dirichlet_probs(items["item_id"], CLASSES, seed=1)
    n_votes = len(judgments)
    ran = build_consensus_tables(judgments, probs, items, CLASSES, ("llm_judge",), include_glad=True, glad_max_votes=n_votes)
    assert ran.glad == "ran" and ran.tables["consensus_labels"]["glad_label"].notna().all()
    skipped = build_consensus_tables(judgments, probs, items, CLASSES, ("llm_judge",), include_glad=True, glad_max_votes=n_votes - 1)
    assert skipped.glad.startswith(f"skipped: {n_votes:,} votes > glad_max_votes {n_votes - 1:,}")
    assert any(note.startswith("GLAD skipped") for note in skipped.notes)
    assert skipped.tables["consensus_labels"]["glad_label"].isna().all()
    assert "crowdlab_vs_glad" not in skipped.tables["aggregator_comparison"].columns
    assert build_consensus_tables(judgments, probs, items, CLASSES, ("llm_judge",)).glad == "off"


def test_gold_makes_the_consensus_gold_aware_and_marks_its_source():
    judgments, _ = synthetic_judgments(n_items=120, seed=5)
    items = items_of(judgments)
    probs = dirichlet_probs(items["item_id"], CLASSES, seed=5)
    plain = build_consensus_tables(judgments, probs, items, CLASSES, ("llm_judge",))
    labels = plain.tables["consensus_labels"]
    # without gold: CROWDLAB as before, every item from the consensus, with CROWDLAB's posterior probability
    assert (labels["source"] == "consensus").all() and (labels["consensus_label"] == labels["crowdlab_label"]).all()
    assert labels["consensus_probability"].between(1 / len(CLASSES), 1).all()
    assert set(labels["consensus_method"]) == {"crowdlab"}
    # gold on a quarter of the items (one of them against the crowd, to see that gold wins)
    gold_items = labels["item_id"].iloc[::4]
    gold = labels.set_index("item_id").loc[gold_items, "crowdlab_label"].copy()
    gold.iloc[0] = next(c for c in CLASSES if c != gold.iloc[0])
    out = build_consensus_tables(judgments, probs, items, CLASSES, ("llm_judge",), gold=gold)
    aware = out.tables["consensus_labels"].set_index("item_id")
    assert (aware.loc[gold.index, "source"] == "ground_truth").all()
    assert (aware.loc[gold.index, "consensus_label"] == gold).all() and (aware.loc[gold.index, "consensus_probability"] == 1).all()
    rest = ~aware.index.isin(gold.index)
    assert (aware.loc[rest, "source"] == "consensus").all() and aware.loc[rest, "consensus_probability"].between(0, 1).all()
    assert out.method == "gold_mixture" and set(aware["consensus_method"]) == {"gold_mixture"}
    # CROWDLAB's own outputs do not change with gold
    pd.testing.assert_series_equal(aware["crowdlab_label"], labels.set_index("item_id")["crowdlab_label"])
    pd.testing.assert_frame_equal(out.tables["annotator_stats"], plain.tables["annotator_stats"])
    pd.testing.assert_frame_equal(out.tables["aggregator_comparison"], plain.tables["aggregator_comparison"])


@pytest.mark.parametrize("seed", range(24))
def test_sparse_dawid_skene_equals_crowd_kit_on_random_problems(seed):
    from judge_assets_tests.core.test_crowdlab import random_problem

    votes, _ = random_problem(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codes, probs = dawid_skene(votes)
        ref_codes, ref_probs = dawid_skene_reference(votes)
    np.testing.assert_allclose(probs, ref_probs, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(codes, ref_codes)


def test_sparse_dawid_skene_equals_crowd_kit_on_mt_bench():
    judgments = mt_bench_judgments()
    votes = Votes.from_frame(judgments, CLASSES)
    codes, probs = dawid_skene(votes)
    ref_codes, ref_probs = dawid_skene_reference(votes)
    np.testing.assert_allclose(probs, ref_probs, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(codes, ref_codes)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
