"""Ordinal scales: the scale-to-outcome mapping, the ordinal consensus and the agreement metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import cohen_kappa_score

from judge_assets.core.consensus.methods import robust_crowdlab
from judge_assets.core.consensus.ordinal import ordinal_consensus, weighted_median
from judge_assets.core.consensus.votes import Votes
from judge_assets.core.reports.ordinal_metrics import ordinal_agreement, ordinal_metrics
from judge_assets.core.scales import OrdinalScale

LIKERT = OrdinalScale.parse("1..8", pairwise=True)


def test_a_range_parses_to_an_ordered_scale_and_other_text_is_not_a_scale():
    assert LIKERT.labels == tuple(str(v) for v in range(1, 9)) and LIKERT.span == 7
    assert OrdinalScale.parse("A,B,tie") is None
    with pytest.raises(ValueError, match="high end"):
        OrdinalScale.parse("5..1")


def test_likert_outcomes_with_and_without_ties_follow_the_documented_mapping():
    values = np.arange(1, 9)
    assert list(LIKERT.outcome(values)) == ["A"] * 4 + ["B"] * 4
    assert list(LIKERT.outcome(values, ties=True)) == ["A", "A", "A", "tie", "tie", "B", "B", "B"]
    assert list(LIKERT.outcome(np.array([4.4, 4.6, 4.5]))) == ["A", "B", "tie"]  # fractional: the nearer side
    five = OrdinalScale.parse("1..5", pairwise=True)
    assert list(five.outcome(np.arange(1, 6))) == ["A", "A", "tie", "B", "B"]
    probs = np.full((1, 8), 1 / 8)
    np.testing.assert_allclose(LIKERT.outcome_probabilities(probs, ties=True), [[3 / 8, 3 / 8, 2 / 8]])
    np.testing.assert_allclose(LIKERT.outcome_probabilities(probs, ties=False), [[0.5, 0.5, 0.0]])
    with pytest.raises(ValueError, match="pairwise scale"):
        OrdinalScale.parse("1..5").outcome(np.array([1.0]))


def test_weighted_median_takes_the_value_where_half_the_weight_is_reached():
    item = np.array([0, 0, 0, 1, 1])
    value = np.array([1.0, 7.0, 8.0, 3.0, 5.0])
    np.testing.assert_array_equal(weighted_median(item, value, np.array([1.0, 1, 1, 1, 1]), 3)[:2], [7.0, 3.0])
    np.testing.assert_array_equal(weighted_median(item, value, np.array([5.0, 1, 1, 1, 3]), 3)[:2], [1.0, 5.0])
    assert np.isnan(weighted_median(item, value, np.ones(5), 3)[2])  # an item without votes


def synthetic_likert(seed: int, n_items: int = 400):
    """Known true scores on 1..8; 6 annotators with noise sd 0.5 … 3 (rounded, clipped), 3–5 votes per item."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 9, n_items)
    noise = np.array([0.5, 0.7, 1.0, 1.5, 2.5, 3.0])
    rows = []
    for i in range(n_items):
        for a in rng.choice(len(noise), rng.integers(3, 6), replace=False):
            rows.append((f"i{i:04d}", f"ann{a}", str(int(np.clip(np.rint(truth[i] + rng.normal(0, noise[a])), 1, 8)))))
    frame = pd.DataFrame(rows, columns=["item_id", "annotator", "label"])
    return Votes.from_frame(frame, LIKERT.labels), pd.Series(truth, index=[f"i{i:04d}" for i in range(n_items)]), noise


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ordinal_consensus_is_closer_to_the_truth_than_the_class_consensus_and_ranks_annotators_by_noise(seed):
    votes, truth, noise = synthetic_likert(seed)
    result = ordinal_consensus(votes, LIKERT)
    items = result.items.set_index("item_id")
    mae_ordinal = np.mean(np.abs(items["ordinal_consensus"] - truth.loc[items.index]))
    crowdlab = robust_crowdlab(votes, np.full((votes.n_items, 8), 1 / 8)).result
    class_scores = LIKERT.value_array[crowdlab.consensus_label]
    mae_class = np.mean(np.abs(class_scores - truth.loc[votes.item_ids].to_numpy()))
    assert mae_ordinal < mae_class
    quality = result.annotators.set_index("annotator")["ordinal_quality"]
    assert list(quality.sort_values(ascending=False).index) == [f"ann{a}" for a in np.argsort(noise)]
    assert (items["ordinal_spread"] >= 0).all() and items["ordinal_consensus_label"].isin(LIKERT.labels).all()


def test_unanimous_items_have_zero_spread_and_a_lone_annotator_has_no_quality():
    frame = pd.DataFrame({"item_id": ["x", "x", "y"], "annotator": ["a", "b", "c"], "label": ["6", "6", "2"]})
    result = ordinal_consensus(Votes.from_frame(frame, LIKERT.labels), LIKERT)
    items = result.items.set_index("item_id")
    assert items.loc["x", "ordinal_consensus"] == 6 and items.loc["x", "ordinal_spread"] == 0
    assert items.loc["y", "ordinal_consensus_label"] == "2"
    stats = result.annotators.set_index("annotator")
    assert np.isnan(stats.loc["c", "ordinal_quality"]) and stats.loc["a", "ordinal_quality"] == 1.0


def test_metrics_equal_scikit_learn_and_scipy_on_the_same_vectors():
    rng = np.random.default_rng(5)
    a = rng.integers(1, 9, 300).astype(float)
    b = np.clip(a + rng.integers(-2, 3, 300), 1, 8)
    got = ordinal_metrics(a, b, LIKERT)
    assert got["weighted_kappa"] == pytest.approx(cohen_kappa_score(a.astype(int), b.astype(int), weights="quadratic"), abs=1e-12)
    assert got["spearman"] == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert got["pearson"] == pytest.approx(pearsonr(a, b).statistic, abs=1e-12)
    assert got["mae"] == pytest.approx(np.mean(np.abs(a - b)))
    assert got["exact_agreement"] == pytest.approx(np.mean(a == b))
    assert got["within_one"] == pytest.approx(np.mean(np.abs(a - b) <= 1))


def test_agreement_intervals_bracket_the_estimate_and_narrow_with_more_pairs():
    rng = np.random.default_rng(6)
    a = rng.integers(1, 9, 400).astype(float)
    b = np.clip(a + rng.normal(0, 1.2, 400), 1, 8)  # fractional: an LLM's expected score
    small = ordinal_agreement(a[:40], b[:40], LIKERT, n_boot=300).set_index("metric")
    large = ordinal_agreement(a, b, LIKERT, n_boot=300).set_index("metric")
    assert (large["ci_low"] <= large["value"]).all() and (large["value"] <= large["ci_high"]).all()
    width = lambda t: t["ci_high"] - t["ci_low"]  # noqa: E731
    assert (width(large) < width(small)).all()
    assert large.loc["spearman", "n"] == 400


def _raw_generic(con, rows):
    """A minimal ``raw_judgments`` of the generic schema: (item_id, annotator, label, model_a, model_b)."""
    con.execute(
        "CREATE TABLE raw_judgments (item_id VARCHAR, annotator VARCHAR, label VARCHAR, model_a VARCHAR, model_b VARCHAR, "
        "category VARCHAR, batch_id VARCHAR, source VARCHAR, source_row BIGINT, ingested_at TIMESTAMP)"
    )
    con.executemany(
        "INSERT INTO raw_judgments VALUES (?, ?, ?, ?, ?, 'c', 'b1', 'f.csv', ?, TIMESTAMP '2026-01-01')",
        [(*r, n) for n, r in enumerate(rows, start=1)],
    )


def test_a_declared_range_is_stored_as_a_scale_and_rebuilt_with_its_ends():
    import duckdb

    from judge_assets.config import ConfigError, parse_scale_ends
    from judge_assets.core.labels import declared_label_set, stored_label_set, stored_scale
    from judge_assets.core.votes.judgments import build_judgments

    assert declared_label_set(("1..8",)).scale == OrdinalScale.parse("1..8")
    assert declared_label_set(("pass", "fail")).scale is None
    assert declared_label_set(("1..5",), ("B", "A")).scale.low_favours == "B"
    with pytest.raises(ValueError, match="not a scale"):
        declared_label_set(("pass", "fail"), ("A", "B"))
    assert parse_scale_ends("JUDGE_SCALE_ENDS", "A, B") == ("A", "B")
    with pytest.raises(ConfigError, match="JUDGE_SCALE_ENDS"):
        parse_scale_ends("JUDGE_SCALE_ENDS", "low,high")

    con = duckdb.connect()
    _raw_generic(con, [("i1", "x", "7", "m1", "m2"), ("i1", "y", "8", "m1", "m2"), ("i2", "x", "2", "m2", "m3")])
    summary = build_judgments(con, (), ("1..8",), ("A", "B"))
    assert summary.labels == LIKERT.labels
    assert con.execute("SELECT label, code, value, ordinal, low_favours FROM label_set WHERE code IN (0, 7) ORDER BY code").fetchall() == [
        ("1", 0, 1.0, True, "A"), ("8", 7, 8.0, True, "A")]
    assert stored_scale(con) == LIKERT and stored_label_set(con).ordinal
    # generic rows keep the models they name (as recorded): the pairwise scale's leaderboard reads them
    assert con.execute("SELECT DISTINCT model_a, model_b FROM judgments ORDER BY 1").fetchall() == [("m1", "m2"), ("m2", "m3")]
    build_judgments(con, (), ("1..8",))  # no ends: a scale, not pairwise
    assert stored_scale(con).low_favours is None and stored_scale(con).values == LIKERT.values
    con.execute("DROP TABLE raw_judgments")
    _raw_generic(con, [("i1", "x", "pass", None, None), ("i1", "y", "fail", None, None)])
    build_judgments(con, ())
    assert stored_scale(con) is None and stored_label_set(con).labels == ("fail", "pass")
    assert con.execute("SELECT count(*) FROM label_set WHERE NOT ordinal AND value IS NULL").fetchone()[0] == 2


def test_the_ingest_gate_reads_a_declared_scale_as_its_classes(tmp_path):
    import duckdb

    from judge_assets.core.sources.gate import admit_files

    path = tmp_path / "scale.csv"
    pd.DataFrame({"item_id": ["i1", "i1", "i2"], "annotator": ["x", "y", "x"], "label": [1, 8, 5]}).to_csv(path, index=False)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"item_id": ["i3"], "annotator": ["x"], "label": [9]}).to_csv(bad, index=False)
    con = duckdb.connect()
    admitted = admit_files(con, [path, bad], tmp_path / "batches", tmp_path / "rejected", declared_labels=("1..8",))
    assert [a.status for a in admitted] == ["accepted", "refused"]
    assert "is not in the class set" in admitted[1].message and "'9'" in admitted[1].message
