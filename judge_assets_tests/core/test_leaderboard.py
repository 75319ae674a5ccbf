"""Bradley-Terry leaderboard: known tournaments, ties, bootstrap intervals, sources, the asset."""

from __future__ import annotations

import math
import time

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from judge_assets.defs.resources import JudgeDuckDBResource

from judge_assets.config import BUNDLED_DATA_DIR
from judge_assets.core.db import connect, replace_table
from judge_assets.core.plots import plot_leaderboard
from judge_assets.core.reports.leaderboard import BradleyTerry, comparison_counts, fit_log_strengths, model_leaderboard
from judge_assets.defs.reports import model_leaderboard as model_leaderboard_asset

THREE_TO_ONE = 400 * math.log10(3)  # Elo gap of a 75% win rate


def test_two_models_three_wins_out_of_four_is_a_log10_3_gap():
    # 100 comparisons: the light L2 penalty (0.01 comparisons) moves ratings by < 0.1 points
    fit = BradleyTerry(n_bootstrap=50).fit(["x"] * 100, ["y"] * 100, ["A", "A", "A", "B"] * 25)
    board = fit.to_frame().set_index("model")
    assert board.loc["x", "rating"] == pytest.approx(1000 + THREE_TO_ONE / 2, abs=0.1)
    assert board.loc["y", "rating"] == pytest.approx(1000 - THREE_TO_ONE / 2, abs=0.1)
    assert board["rank"].to_dict() == {"x": 1, "y": 2}
    assert board["n_comparisons"].to_dict() == {"x": 100, "y": 100}


def test_a_tie_is_half_a_win_for_each_side_and_orientation_does_not_matter():
    # x scores 1 + 0.5 of 2 = 75%, as above; written once as (x, y) and once as (y, x).
    fit = BradleyTerry(n_bootstrap=50).fit(["x", "y"] * 50, ["y", "x"] * 50, ["A", "tie"] * 50)
    assert fit.ratings_[0] - fit.ratings_[1] == pytest.approx(THREE_TO_ONE, abs=0.5)
    even = BradleyTerry(n_bootstrap=50).fit(["x", "y"], ["y", "x"], ["tie", "tie"])
    assert even.ratings_ == pytest.approx([1000.0, 1000.0])


def simulated_tournament(true_ratings: dict[str, float], per_pair: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    models = sorted(true_ratings)
    for i, a in enumerate(models):
        for b in models[i + 1 :]:
            p_a = 1 / (1 + 10 ** ((true_ratings[b] - true_ratings[a]) / 400))
            u = rng.random(per_pair)
            # 20% ties, the rest split by the Bradley-Terry win probability
            outcome = np.where(u < 0.2, "tie", np.where(rng.random(per_pair) < p_a, "A", "B"))
            rows += [(a, b, o) for o in outcome]
    return pd.DataFrame(rows, columns=["model_a", "model_b", "outcome"])


def test_simulated_tournament_recovers_the_order_and_intervals_hold_the_estimates():
    truth = {"m1": 1250.0, "m2": 1100.0, "m3": 1000.0, "m4": 900.0, "m5": 750.0}
    games = simulated_tournament(truth, per_pair=150)
    fit = BradleyTerry(n_bootstrap=1000, seed=3).fit(games["model_a"], games["model_b"], games["outcome"])
    board = fit.to_frame()
    assert board["model"].tolist() == ["m1", "m2", "m3", "m4", "m5"]
    assert board["rank"].tolist() == [1, 2, 3, 4, 5]
    assert board["rating"].mean() == pytest.approx(1000.0)
    assert (board["ci_low"] < board["rating"]).all() and (board["rating"] < board["ci_high"]).all()
    assert ((board["ci_high"] - board["ci_low"]) < 120).all()
    assert fit.bootstrap_ratings_.shape == (1000, 5)
    assert board["n_comparisons"].tolist() == [600] * 5
    # ties shrink gaps (a tie says "equal"), so only the order and the rough spread are checked
    assert board["rating"].iloc[0] - board["rating"].iloc[-1] > 250
    again = BradleyTerry(n_bootstrap=1000, seed=3).fit(games["model_a"], games["model_b"], games["outcome"]).to_frame()
    pd.testing.assert_frame_equal(board, again)


def test_each_bootstrap_refit_equals_an_independent_fit():
    games = simulated_tournament({"a": 1100.0, "b": 1000.0, "c": 950.0}, per_pair=40)
    fit = BradleyTerry(n_bootstrap=200, seed=0).fit(games["model_a"], games["model_b"], games["outcome"])
    # The joint fit of all resamples must not stop early for some of them: refit one resample alone.
    single = BradleyTerry(n_bootstrap=1, seed=0).fit(games["model_a"], games["model_b"], games["outcome"])
    assert single.ratings_ == pytest.approx(fit.ratings_, abs=1e-3)
    assert single.bootstrap_ratings_[0] == pytest.approx(fit.bootstrap_ratings_[0], abs=1e-3)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"outcomes must be one of \['A', 'B', 'tie'\]; found \['model_a'\]"):
        BradleyTerry().fit(["x"], ["y"], ["model_a"])
    with pytest.raises(ValueError, match="cannot be compared with itself: 'x'"):
        BradleyTerry().fit(["x", "x"], ["y", "x"], ["A", "B"])
    with pytest.raises(ValueError, match="differ in length: 2, 1, 1, 2"):
        BradleyTerry().fit(["x", "z"], ["y"], ["A"])
    with pytest.raises(ValueError, match="no comparisons"):
        BradleyTerry().fit([], [], [])


def sources_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Humans prefer m1 > m2 > m3; the LLM judge prefers m3 > m2 > m1; consensus follows humans."""
    rows = []
    for a, b in [("m1", "m2"), ("m1", "m3"), ("m2", "m3")]:
        rows += [(a, b, "human", "A")] * 6 + [(a, b, "human", "B")] * 2 + [(a, b, "human", "tie")] * 2
        rows += [(a, b, "llm", "B")] * 7 + [(a, b, "llm", "A")] * 3
    judgments = pd.DataFrame(rows, columns=["model_a", "model_b", "annotator_kind", "label"])
    consensus = pd.DataFrame(
        [(a, b, "A") for a, b in [("m1", "m2"), ("m1", "m3"), ("m2", "m3")] for _ in range(5)]
        + [("m1", "m2", "B"), ("m2", "m3", "tie")],
        columns=["model_a", "model_b", "consensus_label"],
    )
    return consensus, judgments


def counts_of(consensus: pd.DataFrame, judgments: pd.DataFrame) -> pd.DataFrame:
    con = duckdb.connect()
    con.register("consensus_labels", consensus)
    con.register("judgments", judgments)
    return comparison_counts(con)


def test_comparison_counts_aggregate_per_source_pair_and_outcome_in_duckdb():
    consensus, judgments = sources_frames()
    counts = counts_of(consensus, judgments).set_index(["source", "model_a", "model_b", "outcome"])["n"]
    assert counts[("human", "m1", "m2", "A")] == 6 and counts[("llm", "m2", "m3", "B")] == 7
    assert counts[("consensus", "m2", "m3", "tie")] == 1 and counts.sum() == len(consensus) + len(judgments)
    generic = counts_of(consensus.assign(model_a=None, model_b=None), judgments.assign(annotator_kind="human", model_b=None))
    assert generic.empty


def test_a_count_weighs_a_row_like_that_many_repeated_rows():
    games = simulated_tournament({"a": 1100.0, "b": 1000.0, "c": 950.0}, per_pair=40)
    cells = games.value_counts().reset_index()
    per_row = BradleyTerry(n_bootstrap=300, seed=4).fit(games["model_a"], games["model_b"], games["outcome"])
    counted = BradleyTerry(n_bootstrap=300, seed=4).fit(cells["model_a"], cells["model_b"], cells["outcome"], cells["count"])
    np.testing.assert_array_equal(counted.ratings_, per_row.ratings_)
    np.testing.assert_array_equal(counted.ci_low_, per_row.ci_low_)
    np.testing.assert_array_equal(counted.n_comparisons_, per_row.n_comparisons_)
    with pytest.raises(ValueError, match="count must be a positive integer"):
        BradleyTerry().fit(["x"], ["y"], ["A"], [0])


def test_mt_bench_count_bootstrap_matches_per_vote_resampling():
    """Resampling the per-pair outcome counts (multinomial) is the per-vote bootstrap in another
    form: the same point estimates, and intervals of the same width as resampling the 3,355 human
    votes themselves with replacement."""
    human = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet")
    outcome = human["winner"].map({"model_a": "A", "model_b": "B"}).fillna("tie")
    fit = BradleyTerry(n_bootstrap=1000, seed=0).fit(human["model_a"], human["model_b"], outcome)

    models = {m: k for k, m in enumerate(fit.models_)}
    ia, ib = human["model_a"].map(models).to_numpy(), human["model_b"].map(models).to_numpy()
    score = outcome.map({"A": 1.0, "B": 0.0, "tie": 0.5}).to_numpy()
    first, second = np.minimum(ia, ib), np.maximum(ia, ib)
    score = np.where(ia > ib, 1.0 - score, score)
    keys, cell = np.unique((first * len(models) + second) * 3 + (2 * score).astype(int), return_inverse=True)
    rng = np.random.default_rng(7)
    n = np.vstack([np.bincount(cell, minlength=len(keys))] + [
        np.bincount(cell[rng.integers(0, len(cell), len(cell))], minlength=len(keys)) for _ in range(1000)
    ]).astype(float)
    cell_first, cell_second, cell_score = keys // 3 // len(models), keys // 3 % len(models), (keys % 3) / 2.0
    ratings = 1000 + 400 / np.log(10) * fit_log_strengths(n, n * cell_score, cell_first, cell_second, len(models), 0.01)
    np.testing.assert_allclose(fit.ratings_, ratings[0], atol=1e-6)
    per_vote_width = np.quantile(ratings[1:], 0.975, axis=0) - np.quantile(ratings[1:], 0.025, axis=0)
    np.testing.assert_allclose(fit.ci_high_ - fit.ci_low_, per_vote_width, rtol=0.12)


def test_newton_fit_reaches_the_optimum_scipy_finds_even_for_a_model_that_never_loses():
    """Each row of the batched Newton fit is the penalized maximum likelihood scipy's L-BFGS finds
    for that row alone, including a perfect record (only the ridge keeps it finite) and ties."""
    from scipy.optimize import minimize

    first, second = np.array([0, 0, 0, 1, 1, 2, 0]), np.array([1, 2, 3, 2, 3, 3, 1])
    rng = np.random.default_rng(3)
    n = rng.integers(1, 40, size=(5, len(first))).astype(float)
    w = np.floor(n * rng.uniform(0.1, 0.9, size=n.shape))
    w[0, first == 0] = n[0, first == 0]  # model 0 wins every comparison in fit 0
    w[1, -1] = n[1, -1] / 2  # half a win each: ties
    design = np.zeros((len(first), 4))
    design[np.arange(len(first)), first], design[np.arange(len(first)), second] = 1.0, -1.0

    def objective(r, n_row, w_row):
        d = design @ r
        value = (w_row * np.logaddexp(0, -d) + (n_row - w_row) * np.logaddexp(0, d)).sum() + 0.005 * r @ r
        return value, design.T @ (n_row / (1 + np.exp(-d)) - w_row) + 0.01 * r

    fitted = fit_log_strengths(n, w, first, second, 4, 0.01)
    for row in range(len(n)):
        ref = minimize(objective, np.zeros(4), args=(n[row], w[row]), jac=True, method="L-BFGS-B",
                       options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 10_000}).x
        np.testing.assert_allclose(fitted[row], ref - ref.mean(), atol=1e-5)
    assert fitted[0, 0] > 3  # the unbeaten model is far ahead, and finite


def test_model_leaderboard_three_sources_side_by_side():
    consensus, judgments = sources_frames()
    board = model_leaderboard(counts_of(consensus, judgments), n_bootstrap=200)
    assert board.columns.tolist() == ["source", "ties", "model", "rating", "median", "ci_low", "ci_high", "rank", "n_comparisons"]
    assert board["ties"].all()  # A/B/tie votes: ties count as voted, one board per source
    order = {s: part["model"].tolist() for s, part in board.groupby("source")}
    assert order == {"consensus": ["m1", "m2", "m3"], "human": ["m1", "m2", "m3"], "llm": ["m3", "m2", "m1"]}
    counts = board.set_index(["source", "model"])["n_comparisons"]
    assert counts[("consensus", "m1")] == 11 and counts[("human", "m1")] == 20 and counts[("llm", "m2")] == 20
    assert ((board["ci_low"] <= board["rating"]) & (board["rating"] <= board["ci_high"])).all()


def test_no_llm_votes_means_no_llm_rows_and_no_comparisons_an_empty_board():
    consensus, judgments = sources_frames()
    board = model_leaderboard(counts_of(consensus, judgments[judgments["annotator_kind"] == "human"]), n_bootstrap=20)
    assert set(board["source"]) == {"consensus", "human"}
    empty = model_leaderboard(counts_of(consensus.iloc[:0], judgments.iloc[:0]), n_bootstrap=20)
    assert empty.empty and empty.columns.tolist() == board.columns.tolist()


def test_plot_has_one_series_per_source_and_every_model():
    consensus, judgments = sources_frames()
    fig = plot_leaderboard(model_leaderboard(counts_of(consensus, judgments), n_bootstrap=20))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["consensus", "human", "llm"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["m3", "m2", "m1"]  # best (consensus) on top


def test_mt_bench_human_votes_fit_in_seconds_with_gpt4_first():
    human = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet")
    outcome = human["winner"].map({"model_a": "A", "model_b": "B"}).fillna("tie")
    start = time.perf_counter()
    board = BradleyTerry(n_bootstrap=1000).fit(human["model_a"], human["model_b"], outcome).to_frame()
    assert time.perf_counter() - start < 5.0
    assert len(human) == 3355 and board["n_comparisons"].sum() == 2 * 3355
    assert board["model"].iloc[0] == "gpt-4" and board["model"].iloc[-1] == "llama-13b"


def test_model_leaderboard_asset_writes_table_and_plot(tmp_path):
    consensus, judgments = sources_frames()
    path = tmp_path / "judge.duckdb"
    con = connect(path)
    replace_table(con, "consensus_labels", consensus)
    replace_table(con, "judgments", judgments)
    con.close()
    result = dg.materialize(
        [dg.AssetSpec("consensus_labels"), dg.AssetSpec("judgments"), model_leaderboard_asset],
        resources={"duckdb": JudgeDuckDBResource(database=str(path))},
        selection=[model_leaderboard_asset.key],
    )
    assert result.success
    metadata = result.asset_materializations_for_node("model_leaderboard")[0].metadata
    assert metadata["dagster/row_count"].value == 9
    assert metadata["plot"].value.startswith("![plot](data:image/png;base64,")
    con = duckdb.connect(str(path), read_only=True)
    top = con.execute("SELECT source, model FROM model_leaderboard WHERE rank = 1 ORDER BY source").fetchall()
    con.close()
    assert top == [("consensus", "m1"), ("human", "m1"), ("llm", "m3")]


def test_a_pairwise_scale_gives_boards_with_and_without_ties_by_the_documented_mapping():
    """1..8 ratings (low end favours A): without ties 1-4 → A, 5-8 → B; with ties 4 and 5 are ties."""
    con = duckdb.connect()
    con.execute("CREATE TABLE label_set AS SELECT CAST(v AS VARCHAR) AS label, v - 1 AS code, CAST(v AS DOUBLE) AS value, "
                "true AS ordinal, 'A' AS low_favours FROM range(1, 9) t(v)")
    ratings = [("m1", "m2", "2"), ("m1", "m2", "4"), ("m1", "m2", "5"), ("m2", "m3", "7"), ("m2", "m3", "3"), ("m1", "m3", "1")]
    con.execute("CREATE TABLE judgments (model_a VARCHAR, model_b VARCHAR, annotator_kind VARCHAR, label VARCHAR)")
    con.executemany("INSERT INTO judgments VALUES (?, ?, 'human', ?)", ratings)
    con.execute("CREATE TABLE consensus_labels AS SELECT model_a, model_b, label AS consensus_label FROM judgments")
    counts = comparison_counts(con)
    human = counts[counts["source"] == "human"].set_index(["ties", "model_a", "model_b", "outcome"])["n"]
    assert human[(False, "m1", "m2", "A")] == 2 and human[(False, "m1", "m2", "B")] == 1
    assert human[(True, "m1", "m2", "A")] == 1 and human[(True, "m1", "m2", "tie")] == 2
    assert (False, "m1", "m2", "tie") not in human.index
    board = model_leaderboard(counts, n_bootstrap=50)
    assert set(zip(board["source"], board["ties"])) == {(s, t) for s in ("consensus", "human") for t in (False, True)}
    assert board.groupby(["source", "ties"])["model"].first().eq("m1").all()
    assert ((board["ci_low"] <= board["median"]) & (board["median"] <= board["ci_high"])).all()
