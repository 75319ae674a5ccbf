"""Ground truth: per-judge accuracy against gold, cross-fitted method scores, gold-aware consensus."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from judge_assets.core.consensus.majority import majority_vote
from judge_assets.core.consensus.votes import Votes
from judge_assets.core.reports.ground_truth import (
    DEFAULT_METHOD,
    SCORE_COLUMNS,
    annotator_accuracy,
    cross_fit,
    cross_fit_predictions,
    gold_aware_consensus,
    gold_codes,
    gold_mixture,
    gold_per_item,
    methods_below_baseline,
    standard_methods,
    wilson_interval,
)

LLMBAR_CLASSES = ("output_1", "output_2")
LLMBAR_COLUMNS = ["item_id", "annotator", "label", "ground_truth", "category"]


def llmbar_natural_dir() -> Path:
    """LLMBar Natural: the bundled copy in ``judge_assets_tests/data/llmbar_natural`` when present,
    else the read-only shared data beside the repository (``../shared/data/llmbar_natural``)."""
    here = Path(__file__).resolve()
    for folder in (here.parents[1] / "data" / "llmbar_natural", here.parents[2].parent / "shared" / "data" / "llmbar_natural"):
        if (folder / "judgments.csv").is_file():
            return folder
    where = f"LLMBar Natural data not found in {here.parents[1] / 'data'} or {here.parents[2].parent / 'shared' / 'data'}"
    if os.environ.get("CI"):  # CI always has shared/ beside the clone: missing data is a failure there
        raise FileNotFoundError(where)
    pytest.skip(where + " (a clone without the shared data folder beside it)")


def load_llmbar() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(judgments: one row per vote with ``LLMBAR_COLUMNS``, expected: the paper's per-judge figures)."""
    folder = llmbar_natural_dir()
    return pd.read_csv(folder / "judgments.csv", usecols=LLMBAR_COLUMNS), pd.read_csv(folder / "expected.csv")


def shared_bias_crowd(seed: int, n_items: int = 400) -> tuple[Votes, np.ndarray]:
    """A hard set: 6 of 9 annotators share a bias, wrong with probability 0.85 on a 30% 'hard'
    subset (right with 0.85 elsewhere); 3 annotators are right with probability 0.9 everywhere.
    Two classes, every annotator votes on every item. Returns the votes and the true codes, shape (N,)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n_items)
    hard = rng.random(n_items) < 0.3
    rows = []
    for annotator in range(9):
        p_right = np.full(n_items, 0.9) if annotator < 3 else np.where(hard, 0.15, 0.85)
        right = rng.random(n_items) < p_right
        rows.append(pd.DataFrame({"item_id": np.arange(n_items), "annotator": annotator, "label": np.where(right, truth, 1 - truth)}))
    frame = pd.concat(rows, ignore_index=True)
    votes = Votes(
        item=frame["item_id"].to_numpy(np.int64), annotator=frame["annotator"].to_numpy(np.int64),
        label=frame["label"].to_numpy(np.int64), item_ids=np.array([f"i{i:03d}" for i in range(n_items)], dtype=object),
        annotators=np.array([f"good{a}" if a < 3 else f"biased{a}" for a in range(9)], dtype=object), classes=("A", "B"),
    )
    return votes, truth


def gold_on(truth: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Gold codes with gold on a seeded random ``share`` of the items, -1 elsewhere."""
    rng = np.random.default_rng(seed)
    gold = np.full(len(truth), -1)
    chosen = rng.choice(len(truth), int(round(share * len(truth))), replace=False)
    gold[chosen] = truth[chosen]
    return gold


# --------------------------------------------------------------------------- gold labels


def test_gold_given_on_some_rows_and_items_gives_one_label_per_item_with_gold():
    frame = pd.DataFrame({
        "item_id": ["a", "a", "b", "b", "c", "d"],
        "annotator": ["x", "y", "x", "y", "x", "x"],
        "label": ["A", "B", "A", "A", "B", "A"],
        "ground_truth": ["A", None, np.nan, "B", None, "A"],  # a: one row of two; b: the other; c: none
    })
    gold = gold_per_item(frame)
    assert gold.to_dict() == {"a": "A", "b": "B", "d": "A"}
    votes = Votes.from_frame(frame, ("A", "B"))
    np.testing.assert_array_equal(gold_codes(gold, votes), [0, 1, -1, 0])


def test_conflicting_gold_for_one_item_is_refused_with_the_item_and_both_values():
    frame = pd.DataFrame({
        "item_id": ["q1", "q2", "q2", "q2"],
        "annotator": ["x", "x", "y", "z"],
        "label": ["A", "A", "B", "A"],
        "ground_truth": ["A", "A", "B", "A"],
    })
    with pytest.raises(ValueError, match=r"item 'q2' has conflicting ground_truth values 'A' and 'B'"):
        gold_per_item(frame)


def test_gold_outside_the_label_set_is_refused_with_the_item():
    frame = pd.DataFrame({"item_id": ["q1", "q2"], "annotator": ["x", "x"], "label": ["A", "B"], "ground_truth": ["A", "C"]})
    with pytest.raises(ValueError, match=r"item 'q2': ground_truth 'C' is not one of the labels"):
        gold_codes(gold_per_item(frame), Votes.from_frame(frame, ("A", "B")))


# --------------------------------------------------------------------------- judges against gold


def test_every_llmbar_judge_is_measured_as_the_paper_reports():
    """All 65 judges: accuracy against gold to 4 decimals and the number of votes, as in expected.csv."""
    judgments, expected = load_llmbar()
    scores = annotator_accuracy(judgments, gold_per_item(judgments), LLMBAR_CLASSES)
    assert list(scores.columns) == SCORE_COLUMNS and set(scores["kind"]) == {"annotator"}
    overall = scores[scores["category"] == "all"].set_index("name")
    expected = expected.set_index("annotator")
    assert len(overall) == len(expected) == 65
    assert (overall["n"] == expected["votes"].reindex(overall.index)).all()
    assert (overall["accuracy"].round(4) == expected["accuracy"].reindex(overall.index).round(4)).all()
    assert overall["accuracy"].max() == 0.96 and overall["accuracy"].median() == 0.80
    # the one category holds every item, so its rows repeat the overall ones
    natural = scores[scores["category"] == "Natural"].set_index("name")
    pd.testing.assert_frame_equal(natural.drop(columns="category"), overall.drop(columns="category"))
    for name in ("GPT-4/Rating_Metrics", "Falcon/Vanilla", "PaLM2/Reference"):
        mine = judgments[judgments["annotator"] == name]
        assert overall.loc[name, "kappa"] == pytest.approx(cohen_kappa_score(mine["ground_truth"], mine["label"]), abs=1e-12)
        assert overall.loc[name, "ci_low"] < overall.loc[name, "accuracy"] < overall.loc[name, "ci_high"]


def test_only_votes_on_items_with_gold_count_and_each_category_is_scored():
    frame = pd.DataFrame({
        "item_id": ["a", "b", "c", "a", "b", "c", "d"],
        "annotator": ["x", "x", "x", "y", "y", "y", "y"],
        "label": ["A", "B", "B", "B", "B", "tie", "A"],
        "category": ["math", "math", "code", "math", "math", "code", "code"],
    })
    gold = pd.Series({"a": "A", "b": "B", "c": "tie"})  # d has no gold
    scores = annotator_accuracy(frame, gold, ("A", "B", "tie")).set_index(["name", "category"])
    assert scores.loc[("x", "all"), ["n", "accuracy"]].tolist() == [3, 2 / 3]
    assert scores.loc[("y", "all"), ["n", "accuracy"]].tolist() == [3, 2 / 3]
    assert scores.loc[("x", "math"), "accuracy"] == 1.0 and scores.loc[("x", "code"), "accuracy"] == 0.0
    assert scores.loc[("y", "code"), ["n", "accuracy"]].tolist() == [1, 1.0]
    assert scores.loc[("y", "all"), "kappa"] == pytest.approx(cohen_kappa_score(["A", "B", "tie"], ["B", "B", "tie"]))
    assert np.isnan(scores.loc[("y", "code"), "kappa"])  # one item, one class: undefined, as in scikit-learn
    assert set(annotator_accuracy(frame, gold, ("A", "B", "tie"), by_category=False)["category"]) == {"all"}


def test_kappa_and_the_wilson_interval_equal_their_references():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, 300)
    judged = np.where(rng.random(300) < 0.6, truth, rng.integers(0, 3, 300))
    frame = pd.DataFrame({"item_id": np.arange(300), "annotator": "j", "label": judged.astype(str)})
    scores = annotator_accuracy(frame, pd.Series(truth.astype(str)), ("0", "1", "2"))
    assert scores["kappa"].item() == pytest.approx(cohen_kappa_score(truth, judged), abs=1e-12)
    # closed forms: 0 of n right -> (0, z²/(n+z²)); n of n -> (n/(n+z²), 1)
    z2 = 1.959963984540054**2
    low, high = wilson_interval(np.array([0, 10]), np.array([10, 10]))
    np.testing.assert_allclose(low, [0, 10 / (10 + z2)], atol=1e-12)
    np.testing.assert_allclose(high, [z2 / (10 + z2), 1], atol=1e-12)


# --------------------------------------------------------------------------- cross-fitting never leaks


def test_a_method_that_copies_the_gold_it_is_given_scores_chance_when_cross_fitted():
    """The cheat returns the gold it receives, and a seeded coin flip where it receives none. If an
    item's own gold reached the call that predicts it, its cross-fitted accuracy would be 1.0."""
    votes, truth = shared_bias_crowd(seed=0)
    gold = gold_on(truth, 0.5, seed=1)

    def cheat(votes: Votes, given: np.ndarray) -> np.ndarray:
        coin = np.random.default_rng(7).integers(0, 2, votes.n_items)
        return np.where(given >= 0, given, coin)

    known = gold >= 0
    assert (cheat(votes, gold)[known] == gold[known]).all()  # it does cheat when handed the gold
    scores = cross_fit(votes, gold, {"cheat": cheat}, k=5).set_index("category")
    assert scores.loc["all", "n"] == known.sum() == 200
    assert 0.4 <= scores.loc["all", "accuracy"] <= 0.6
    assert scores.loc["all", "ci_low"] < 0.5 < scores.loc["all", "ci_high"]


def test_flipping_an_items_gold_leaves_its_own_cross_fitted_prediction_unchanged():
    """The method is the gold-aware consensus as shipped, which returns an item's gold when it has it:
    any leak of the held-out gold would make the flipped item's prediction follow the flip."""
    votes, truth = shared_bias_crowd(seed=2, n_items=200)
    gold = gold_on(truth, 0.25, seed=3)

    def consensus(votes: Votes, given: np.ndarray) -> np.ndarray:
        labels = gold_aware_consensus(votes, given)["consensus_label"]
        return pd.Index(votes.classes).get_indexer(labels)

    before = cross_fit_predictions(votes, gold, {"consensus": consensus}, k=5).set_index("item")
    for item in np.flatnonzero(gold >= 0)[:3]:
        flipped = gold.copy()
        flipped[item] = 1 - flipped[item]
        after = cross_fit_predictions(votes, flipped, {"consensus": consensus}, k=5).set_index("item")
        assert after.loc[item, "fold"] == before.loc[item, "fold"]
        assert after.loc[item, "predicted"] == before.loc[item, "predicted"]
        assert after.loc[item, "gold"] != before.loc[item, "gold"]


def test_cross_fitting_scores_every_gold_item_once_and_by_category():
    votes, truth = shared_bias_crowd(seed=4, n_items=100)
    gold = gold_on(truth, 0.3, seed=5)
    predictions = cross_fit_predictions(votes, gold, {"majority_vote": lambda v, g: majority_vote(v)}, k=4)
    assert sorted(predictions["item"]) == sorted(np.flatnonzero(gold >= 0)) and predictions["fold"].nunique() == 4
    categories = np.where(np.arange(100) % 2 == 0, "even", "odd")
    scores = cross_fit(votes, gold, {"majority_vote": lambda v, g: majority_vote(v)}, k=4, categories=categories)
    assert list(scores["category"]) == ["all", "even", "odd"]
    assert scores["n"].iloc[0] == scores["n"].iloc[1:].sum() == 30
    with pytest.raises(ValueError, match="at least one item with gold"):
        cross_fit(votes, np.full(100, -1), {"majority_vote": lambda v, g: majority_vote(v)})


# --------------------------------------------------------------------------- gold-aware consensus


def test_gold_aware_consensus_beats_majority_vote_when_most_judges_share_a_bias():
    """Gold on 10% of the items; accuracy on the other 90%, over three crowds."""
    for seed in range(3):
        votes, truth = shared_bias_crowd(seed=seed)
        gold = gold_on(truth, 0.1, seed=seed)
        table = gold_aware_consensus(votes, gold)
        rest = gold < 0
        predicted = pd.Index(votes.classes).get_indexer(table["consensus_label"])
        consensus_accuracy = (predicted[rest] == truth[rest]).mean()
        majority_accuracy = (majority_vote(votes)[rest] == truth[rest]).mean()
        assert consensus_accuracy >= majority_accuracy + 0.05, (seed, consensus_accuracy, majority_accuracy)
        assert (table["source"] == np.where(rest, "consensus", "ground_truth")).all()
        assert (predicted[~rest] == gold[~rest]).all() and (table.loc[~rest, "consensus_probability"] == 1).all()
        mixture = gold_mixture(votes, gold)
        np.testing.assert_allclose(mixture.probs.sum(axis=1), 1.0)
        biased = np.char.startswith(mixture.expert.astype(str), "biased")
        assert mixture.weight[biased].sum() < 0.01  # the shared bias is caught by the gold


def test_the_check_names_methods_below_majority_vote_or_chance_on_a_hard_set():
    votes, truth = shared_bias_crowd(seed=0)
    gold = gold_on(truth, 0.5, seed=0)
    methods = standard_methods()
    methods["contrarian"] = lambda v, g: 1 - majority_vote(v)
    scores = cross_fit(votes, gold, methods).set_index("name")
    assert scores.loc[DEFAULT_METHOD, "accuracy"] > scores.loc["majority_vote", "accuracy"] + 0.1
    assert scores.loc[DEFAULT_METHOD, "accuracy"] >= scores.loc["best_judge_on_gold", "accuracy"]
    flagged = methods_below_baseline(scores.reset_index(), n_classes=2).set_index("name")
    assert flagged.loc["contrarian", "below_chance"] and flagged.loc["contrarian", "below_baseline"]
    assert DEFAULT_METHOD not in flagged.index and "best_judge_on_gold" not in flagged.index


def test_on_llmbar_the_gold_aware_consensus_beats_majority_vote_cross_fitted_on_all_gold():
    judgments, _ = load_llmbar()
    votes = Votes.from_frame(judgments, LLMBAR_CLASSES)
    gold = gold_codes(gold_per_item(judgments), votes)
    scores = cross_fit(votes, gold, standard_methods()).set_index("name")
    assert scores.loc["majority_vote", "accuracy"] == 0.88  # measured on all 100 items (PROVENANCE.md)
    assert scores.loc[DEFAULT_METHOD, "accuracy"] > 0.9
    assert methods_below_baseline(scores.reset_index(), n_classes=2).empty


# --------------------------------------------------------------------------- gold in the data (ingest, judgments)


def _ingest_rows(con, tmp_path, name, rows, classes=None):
    import json

    from judge_assets.core.sources.batches import file_batch, load_batch, validate_batch, write_batch

    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    batch = file_batch(path)
    table = load_batch(batch)
    write_batch(con, batch, table, validate_batch(table, batch.label, classes))
    return path


def test_ground_truth_is_an_optional_generic_column():
    from judge_assets.core.sources.batches import SCHEMAS

    assert "ground_truth" in SCHEMAS["generic"]["optional"]


def test_conflicting_gold_in_one_file_is_refused_with_file_row_and_column(tmp_path):
    import duckdb

    from judge_assets.core.sources.batches import JudgmentInputError

    rows = [
        {"item_id": "x", "annotator": "a", "label": "pass", "ground_truth": "pass"},
        {"item_id": "x", "annotator": "b", "label": "fail", "ground_truth": None},  # no gold on this row: fine
        {"item_id": "y", "annotator": "a", "label": "fail"},
        {"item_id": "x", "annotator": "c", "label": "fail", "ground_truth": "fail"},
    ]
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    with pytest.raises(JudgmentInputError) as caught:
        _ingest_rows(con, tmp_path, "gold.jsonl", rows)
    assert (caught.value.row, caught.value.column) == (4, "ground_truth")
    assert str(caught.value).startswith(f"{tmp_path / 'gold.jsonl'}, row 4, column 'ground_truth': conflicting ground truth for item 'x'")
    assert "at row 1" in str(caught.value)


def test_partial_gold_and_a_gold_annotator_become_gold_labels_not_votes(tmp_path):
    import duckdb

    from judge_assets.core.votes.judgments import build_judgments

    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    _ingest_rows(con, tmp_path, "votes.jsonl", [
        {"item_id": "x", "annotator": "a", "label": "pass", "ground_truth": "pass"},
        {"item_id": "x", "annotator": "b", "label": "fail", "ground_truth": "pass"},
        {"item_id": "y", "annotator": "a", "label": "fail"},  # no gold on y
        {"item_id": "y", "annotator": "b", "label": "fail"},
        {"item_id": "z", "annotator": "a", "label": "pass"},
        {"item_id": "z", "annotator": "adjudicator", "label": "fail"},  # gold by annotator
    ])
    summary = build_judgments(con, (), gold_annotators=("adjudicator",))
    assert (summary.gold_items, summary.gold_votes_removed) == (2, 1)
    assert con.execute("SELECT count(*) FROM judgments WHERE annotator = 'adjudicator'").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM judgments").fetchone()[0] == 5
    gold = con.execute("SELECT item_id, gold_label, source, source_row FROM gold_labels ORDER BY item_id").fetchall()
    assert gold == [("x", "pass", "column", 1), ("z", "fail", "annotator:adjudicator", 6)]
    # without the setting the adjudicator is an ordinary voter and only the column is gold
    summary = build_judgments(con, ())
    assert (summary.gold_items, summary.gold_votes_removed) == (1, 0)
    assert con.execute("SELECT count(*) FROM judgments WHERE annotator = 'adjudicator'").fetchone()[0] == 1


def test_conflicting_gold_across_batches_and_sources_names_both(tmp_path):
    import duckdb

    from judge_assets.core.sources.batches import JudgmentInputError
    from judge_assets.core.votes.judgments import build_judgments

    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    first = _ingest_rows(con, tmp_path, "first.jsonl", [{"item_id": "x", "annotator": "a", "label": "pass", "ground_truth": "pass"}])
    second = _ingest_rows(con, tmp_path, "second.jsonl", [
        {"item_id": "y", "annotator": "a", "label": "pass"},
        {"item_id": "x", "annotator": "b", "label": "pass", "ground_truth": "fail"},
    ])
    with pytest.raises(JudgmentInputError) as caught:
        build_judgments(con, (), ("pass", "fail"))
    message = str(caught.value)
    assert message.startswith(f"{second}, row 2, column 'ground_truth': conflicting gold for item 'x': 'fail' here")
    assert f"'pass' at {first}, row 1, column 'ground_truth'" in message
    assert not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name IN ('judgments', 'gold_labels')").fetchone()[0]
    # a gold annotator disagreeing with the column is a conflict too
    con.execute("DELETE FROM raw_judgments WHERE source LIKE '%second.jsonl'")
    _ingest_rows(con, tmp_path, "third.jsonl", [{"item_id": "x", "annotator": "adjudicator", "label": "fail"}])
    with pytest.raises(JudgmentInputError, match=r"third.jsonl, row 1, column 'label': conflicting gold for item 'x'"):
        build_judgments(con, (), ("pass", "fail"), gold_annotators=("adjudicator",))
    build_judgments(con, (), ("pass", "fail"))  # as a plain voter it is no conflict
    assert con.execute("SELECT gold_label FROM gold_labels").fetchall() == [("pass",)]


def test_judged_classifier_report_by_hand():
    from judge_assets.core.reports.judged_classifier import REPORT_COLUMNS, judged_classifier_report

    predicted = pd.Series(["a", "a", "b", "b", "a", "b"], index=list("123456"))
    gold = pd.Series(["a", "b", "b", "a"], index=list("1234"))  # items 1, 3 right; 2, 4 wrong; 5, 6 without gold
    verdicts = pd.DataFrame({"item_id": list("123456"), "judge": "j",
                             "verdict": ["correct", "correct", "correct", "incorrect", "correct", "incorrect"]})
    report = judged_classifier_report(predicted, verdicts, gold)
    assert list(report.columns) == REPORT_COLUMNS
    value = report[report["metric"] != "confusion"].set_index("metric")["value"]
    assert value["classifier_accuracy_on_gold"] == 0.5
    assert value["judged_accuracy"] == pytest.approx(4 / 6) and value["judged_accuracy_on_gold_items"] == 0.75
    assert value["judge_sensitivity"] == 1.0 and value["judge_specificity"] == 0.5 and value["judge_accuracy_on_gold"] == 0.75
    assert value["corrected_accuracy"] == pytest.approx((4 / 6 + 0.5 - 1) / 0.5)
    cells = report[report["metric"] == "confusion"].set_index(["actual", "judged"])["value"].to_dict()
    assert cells == {("correct", "correct"): 2, ("correct", "incorrect"): 0, ("incorrect", "correct"): 1, ("incorrect", "incorrect"): 1}
