"""The model prior: out-of-fold classifier rows, LLM precedence, uniform fallback."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from judge_assets.core.scoring.prior import (
    MIN_PROB,
    Tfidf,
    build_model_probs,
    classifier_prior,
    item_features,
    prior_training_labels,
    textless_items,
)

CLASSES = ("A", "B", "tie")
PROB_COLS = ["p_A", "p_B", "p_tie"]
STRENGTH = {"strong-1": 3.0, "strong-2": 2.5, "mid": 1.0, "weak-1": -1.0, "weak-2": -2.0}


def pairwise_items(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Synthetic pairwise items (canonical order) with short answers."""
    rng = np.random.default_rng(seed)
    names = sorted(STRENGTH)
    rows = []
    for i in range(n):
        a, b = sorted(rng.choice(names, size=2, replace=False))
        rows.append(
            {
                "item_id": f"{i}:1:{a}|{b}",
                "question_id": i,
                "turn": 1,
                "model_a": a,
                "model_b": b,
                "category": ["writing", "math"][i % 2],
                "answers_a": [f"answer from {a} " * int(rng.integers(1, 6))],
                "answers_b": [f"answer from {b} " * int(rng.integers(1, 6))],
            }
        )
    return pd.DataFrame(rows)


def strength_labels(items: pd.DataFrame) -> pd.Series:
    """The stronger model wins: label A when model_a is stronger, B otherwise."""
    a = items["model_a"].map(STRENGTH)
    b = items["model_b"].map(STRENGTH)
    return pd.Series(np.where(a > b, "A", "B"), index=items["item_id"].to_numpy())


def test_every_item_gets_a_row_that_sums_to_one():
    items = pairwise_items()
    labels = strength_labels(items).iloc[:80]  # 40 items stay unlabelled
    out = classifier_prior(items, labels, CLASSES, seed=0)
    assert list(out["item_id"]) == list(items["item_id"])
    assert list(out.columns) == ["item_id", *PROB_COLS, "scorer"]
    probs = out[PROB_COLS].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert probs.min() >= MIN_PROB * 0.99
    assert set(out["scorer"]) == {"oof_classifier"}


def test_prior_learns_model_strength_out_of_fold():
    items = pairwise_items()
    labels = strength_labels(items)
    out = classifier_prior(items, labels, CLASSES, seed=0)
    predicted = np.asarray(CLASSES)[out[PROB_COLS].to_numpy().argmax(axis=1)]
    assert (predicted == labels.to_numpy()).mean() > 0.9


def test_an_items_own_label_never_reaches_its_row():
    items = pairwise_items()
    labels = strength_labels(items)
    base = classifier_prior(items, labels, CLASSES, seed=3)
    for position in (0, 17, 99):
        flipped = labels.copy()
        flipped.iloc[position] = "tie" if labels.iloc[position] != "tie" else "A"
        changed = classifier_prior(items, flipped, CLASSES, seed=3)
        np.testing.assert_allclose(changed.loc[position, PROB_COLS].to_numpy(float), base.loc[position, PROB_COLS].to_numpy(float))
        # the flip does reach the rows of items in other folds
        assert not np.allclose(changed[PROB_COLS].to_numpy(float), base[PROB_COLS].to_numpy(float))


def test_seeded_reproducibility():
    items = pairwise_items()
    labels = strength_labels(items)
    labels.iloc[::7] = "tie"
    first = classifier_prior(items, labels, CLASSES, seed=5)
    again = classifier_prior(items, labels, CLASSES, seed=5)
    other = classifier_prior(items, labels, CLASSES, seed=6)
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first[PROB_COLS].to_numpy(float), other[PROB_COLS].to_numpy(float))


def test_rare_class_with_a_single_member_is_handled():
    items = pairwise_items(40)
    labels = strength_labels(items)
    labels.iloc[5] = "tie"  # the only tie: absent from its own training fold
    out = classifier_prior(items, labels, CLASSES, seed=0)
    row = out.loc[5, PROB_COLS].to_numpy(float)
    assert row[2] == pytest.approx(MIN_PROB, rel=0.05)
    np.testing.assert_allclose(out[PROB_COLS].sum(axis=1), 1.0)


def test_generic_items_use_their_text_columns():
    rng = np.random.default_rng(0)
    good = rng.random(90) < 0.5
    items = pd.DataFrame(
        {
            "item_id": [f"doc{i}" for i in range(90)],
            "text": [
                ("excellent wonderful helpful reply " if g else "rude wrong useless reply ") + f"number {i}"
                for i, g in enumerate(good)
            ],
        }
    )
    labels = pd.Series(np.where(good, "yes", "no"), index=items["item_id"].to_numpy())
    out = classifier_prior(items, labels, ("no", "yes"), seed=0)
    assert list(out.columns) == ["item_id", "p_no", "p_yes", "scorer"]
    assert ((out["p_yes"] > 0.5).to_numpy() == good).mean() > 0.95


def test_item_table_without_features_yields_the_class_balance():
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(50)]})
    labels = pd.Series(["x"] * 40 + ["y"] * 10, index=items["item_id"].to_numpy())
    out = classifier_prior(items, labels, ("x", "y"), seed=0)
    assert out["p_x"].between(0.7, 0.9).all()
    assert item_features(items).shape == (50, 1)


def test_bad_training_labels_are_named():
    items = pairwise_items(10)
    with pytest.raises(ValueError, match="'nope' that is not in items"):
        classifier_prior(items, pd.Series(["A"], index=["nope"]), CLASSES)
    with pytest.raises(ValueError, match="'maybe' is not one of the classes"):
        classifier_prior(items, pd.Series(["maybe"], index=[items["item_id"][0]]), CLASSES)


def test_llm_rows_take_precedence_and_the_classifier_covers_the_rest():
    items = pairwise_items(60)
    majority = pd.DataFrame({"item_id": items["item_id"], "majority_label": strength_labels(items).to_numpy()})
    llm = pd.DataFrame(
        {
            "item_id": items["item_id"].iloc[:3],
            "p_a": [0.7, 0.2, 0.5],
            "p_b": [0.2, 0.2, 0.5],
            "p_tie": [0.1, 0.4, 0.0],  # row 2 is not normalised; row 3 fails
            "status": ["ok", "ok", "error"],
        }
    )
    out = build_model_probs(items, majority, llm, CLASSES)
    assert list(out["item_id"]) == list(items["item_id"])
    assert list(out["scorer"].iloc[:3]) == ["llm_logprobs", "llm_logprobs", "oof_classifier"]
    assert (out["scorer"].iloc[3:] == "oof_classifier").all()
    np.testing.assert_allclose(out.loc[0, PROB_COLS].to_numpy(float), [0.7, 0.2, 0.1], atol=1e-3)
    np.testing.assert_allclose(out.loc[1, PROB_COLS].to_numpy(float), [0.25, 0.25, 0.5], atol=1e-3)
    np.testing.assert_allclose(out[PROB_COLS].sum(axis=1), 1.0)


def test_uniform_only_without_any_training_label():
    items = pairwise_items(5)
    out = build_model_probs(items, pd.Series([], dtype=object), None, CLASSES)
    assert set(out["scorer"]) == {"uniform"}
    np.testing.assert_allclose(out[PROB_COLS].to_numpy(float), 1 / 3)


def test_training_labels_are_the_human_majority():
    judgments = pd.DataFrame(
        {
            "item_id": ["x", "x", "x", "x", "y"],
            "annotator": ["h1", "h2", "h3", "gpt", "gpt"],
            "annotator_kind": ["human", "human", "human", "llm", "llm"],
            "label": ["A", "A", "B", "B", "B"],
        }
    )
    labels = prior_training_labels(judgments, CLASSES)
    assert labels.to_dict() == {"x": "A"}  # y has only an LLM vote: no training label


def test_generic_pipeline_items_never_learn_from_vote_counts():
    """The generic schema's items have NULL models and vote counts; the counts must not be features."""
    rng = np.random.default_rng(2)
    labels = np.where(rng.random(100) < 0.5, "good", "bad")
    items = pd.DataFrame(
        {
            "item_id": [f"g{i}" for i in range(100)],
            "model_a": [None] * 100,
            "model_b": [None] * 100,
            "user_turns": [[f"prompt number {i}"] for i in range(100)],
            "answers_a": [[None]] * 100,
            "answers_b": [[None]] * 100,
            "n_human_votes": np.where(labels == "good", 3, 2),  # would predict the label perfectly
            "n_llm_votes": 0,
        }
    )
    out = classifier_prior(items, pd.Series(labels, index=items["item_id"].to_numpy()), ("bad", "good"), seed=0)
    np.testing.assert_allclose(out[["p_bad", "p_good"]].sum(axis=1), 1.0)
    assert ((out["p_good"] > 0.5).to_numpy() == (labels == "good")).mean() < 0.7


def test_pairwise_items_without_texts_get_a_prior_from_their_models():
    """A CSV row cannot hold conversations: its item's answers are NULL lists, which DuckDB hands
    to pandas as ``pd.NA`` (this raised ``TypeError: 'NAType' object is not iterable``)."""
    con = duckdb.connect()
    con.register("known", pairwise_items())
    items = con.execute(
        "SELECT * FROM known UNION ALL SELECT * FROM (VALUES "
        "('900:1:strong-1|weak-1', 900, 1, 'strong-1', 'weak-1', 'writing', NULL::VARCHAR[], NULL::VARCHAR[]), "
        "('901:1:mid|strong-2', 901, 1, 'mid', 'strong-2', NULL, NULL::VARCHAR[], NULL::VARCHAR[]))"
    ).df()
    assert items["answers_a"].iloc[-1] is pd.NA
    labels = strength_labels(items.iloc[:-2])
    out = build_model_probs(items, labels, None, CLASSES).set_index("item_id")
    np.testing.assert_allclose(out[PROB_COLS].sum(axis=1), 1.0)
    assert (out["scorer"] == "oof_classifier").all()
    # their rows come from the model identities: B is likelier where model_b is the stronger model
    assert out.loc["901:1:mid|strong-2", "p_B"] > out.loc["900:1:strong-1|weak-1", "p_B"] + 0.2
    assert textless_items(items).sum() == 2 and textless_items(items.iloc[:-2]).sum() == 0


def test_a_lone_labelled_item_gets_a_uniform_row_that_says_so():
    """One human-labelled item (a one-row file): no model can be trained without its own label."""
    items = pairwise_items(4)
    out = build_model_probs(items, strength_labels(items).iloc[:1], None, CLASSES)
    assert list(out["scorer"]) == ["uniform", "oof_classifier", "oof_classifier", "oof_classifier"]
    np.testing.assert_allclose(out.loc[0, PROB_COLS].to_numpy(float), 1 / 3)


def test_the_llm_prior_is_one_named_judge_or_the_panel_mean():
    from judge_assets.core.scoring.prior import llm_prior

    fit = [["A", "B", "tie"]] * 2
    scores = pd.DataFrame({
        "item_id": ["i1", "i1", "i1"], "annotator": ["j:a", "j:b", "likert:a"], "status": "ok",
        "p_a": [0.6, 0.2, 0.9], "p_b": [0.2, 0.6, 0.05], "p_tie": [0.2, 0.2, 0.05], "verdict_labels": fit + [["1", "2"]],
    })
    mean = llm_prior(scores, CLASSES)
    np.testing.assert_allclose(mean[PROB_COLS].to_numpy(float)[0], [0.4, 0.4, 0.2], atol=1e-3)  # likert:a's labels are not classes
    one = llm_prior(scores, CLASSES, prior_judge="j:b")
    np.testing.assert_allclose(one[PROB_COLS].to_numpy(float)[0], [0.2, 0.6, 0.2], atol=1e-3)
    with pytest.raises(ValueError, match="prior judge 'j:c' did not score these items; judges: j:a, j:b, likert:a"):
        llm_prior(scores, CLASSES, prior_judge="j:c")
    # another class set reads llm_judge_probs; a label the judge lacks counts 0
    generic = pd.DataFrame({"item_id": ["d1"], "annotator": ["pf:a"], "status": ["ok"], "verdict_labels": [["pass", "fail"]]})
    probs = pd.DataFrame({"item_id": ["d1", "d1"], "annotator": ["pf:a"] * 2, "label": ["pass", "fail"], "p": [0.8, 0.2]})
    out = llm_prior(generic, ("pass", "fail", "unsure"), llm_probs=probs)
    assert out["scorer"].tolist() == ["llm_logprobs"] and out["p_pass"].iloc[0] == pytest.approx(0.8, abs=1e-3)


@pytest.mark.parametrize("n_series, params", [(2, {"max_features": 50, "sublinear_tf": True, "min_df": 2}),
                                              (1, {"max_features": 30, "sublinear_tf": True})])
def test_tfidf_equals_tfidf_vectorizer_bit_for_bit_while_skipping_empty_texts(n_series, params):
    from sklearn.feature_extraction.text import TfidfVectorizer

    rng = np.random.default_rng(3)
    words = np.array([f"w{i}" for i in range(80)])
    texts = [pd.Series([" ".join(rng.choice(words, size=rng.integers(1, 12))) if rng.random() < 0.2 else "" for _ in range(400)])
             for _ in range(n_series)]
    vectorizer = TfidfVectorizer(**params).fit(pd.concat(texts))
    tfidf = Tfidf(**params).fit(texts)
    for series in [*texts, pd.Series(["", "", ""])]:  # and a later series with no text at all
        got, want = tfidf.transform(series), vectorizer.transform(series)
        assert got.shape == want.shape and (got != want).nnz == 0
        assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.data, want.data)  # empty rows count in the idf
    with pytest.raises(ValueError):
        Tfidf(**params).fit([pd.Series(["", ""])])
