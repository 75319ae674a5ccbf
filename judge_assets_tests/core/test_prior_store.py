"""The model prior kept current batch by batch: refit when it must, score only new or changed items otherwise."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from judge_assets.core.scoring.prior import ItemFeatures, build_model_probs, fit_prior, prior_training_labels
from judge_assets.core.scoring.prior_store import BASE_TABLE, STATE_TABLE, refresh_model_probs
from judge_assets_tests.core.test_prior import CLASSES, PROB_COLS, pairwise_items, strength_labels

COLUMNS = ["item_id", "question_id", "turn", "model_a", "model_b", "category", "answers_a", "answers_b"]


def votes_for(items: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Two human votes per item (the stronger model, or a tie now and then) and one LLM vote."""
    rng = np.random.default_rng(seed)
    truth = strength_labels(items)
    rows = []
    for item_id, label in truth.items():
        for annotator in ("h1", "h2"):
            rows.append((item_id, annotator, "human", label if rng.random() < 0.85 else "tie"))
        rows.append((item_id, "gpt4", "llm", label))
    return pd.DataFrame(rows, columns=["item_id", "annotator", "annotator_kind", "label"])


def write(con: duckdb.DuckDBPyConnection, items: pd.DataFrame, judgments: pd.DataFrame) -> None:
    for name, frame in (("items", items), ("judgments", judgments)):
        con.register("__frame", frame)
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM __frame")
        con.unregister("__frame")


def no_llm() -> pd.DataFrame:
    return pd.DataFrame(columns=["item_id", *PROB_COLS, "scorer"])


def model_probs(con) -> pd.DataFrame:
    return con.execute("SELECT * FROM model_probs ORDER BY item_id").df()


@pytest.fixture
def con(tmp_path):
    con = duckdb.connect(str(tmp_path / "judge.duckdb"))
    yield con
    con.close()


def test_the_first_refresh_fits_and_equals_the_in_memory_prior(con):
    items = pairwise_items(200)
    judgments = votes_for(items)
    write(con, items, judgments)
    update = refresh_model_probs(con, CLASSES, COLUMNS, no_llm())
    assert (update.mode, update.items_scored, update.items) == ("refit", 200, 200)
    assert update.reason == "first fit (no stored classifier)"
    want = build_model_probs(items, prior_training_labels(judgments, CLASSES), None, CLASSES)
    pd.testing.assert_frame_equal(model_probs(con), want.sort_values("item_id").reset_index(drop=True))


def test_a_batch_scores_only_its_new_and_changed_items_with_the_stored_classifier(con):
    items = pairwise_items(300)
    judgments = votes_for(items)
    write(con, items[:280], judgments[judgments["item_id"].isin(items["item_id"][:280])])
    refresh_model_probs(con, CLASSES, COLUMNS, no_llm())
    before = model_probs(con).set_index("item_id")
    fitted_labels = prior_training_labels(judgments[judgments["item_id"].isin(items["item_id"][:280])], CLASSES)

    # the next batch: 20 new items (7% of 280), one existing item's answers changed, one item gone
    changed = items.copy()
    changed.at[5, "answers_a"] = ["a completely different answer now"]
    kept = changed.drop(index=9)
    write(con, kept, judgments[judgments["item_id"].isin(kept["item_id"])])
    update = refresh_model_probs(con, CLASSES, COLUMNS, no_llm())
    assert (update.mode, update.items_scored, update.items) == ("incremental", 21, 299)
    assert update.refit_after == 28 - 21
    assert "21 new or changed items scored by the classifier fitted on 280 items" in update.reason
    after = model_probs(con).set_index("item_id")

    untouched = before.index.drop([items.at[5, "item_id"], items.at[9, "item_id"]])
    pd.testing.assert_frame_equal(after.loc[untouched], before.loc[untouched])  # bit for bit, not refitted
    assert items.at[9, "item_id"] not in after.index
    # new and changed rows are the stored classifier's predictions: the model fitted on the first 280 items
    _, model = fit_prior(items[:280], fitted_labels, CLASSES)
    scored = kept[kept["item_id"].isin(list(items["item_id"][280:]) + [items.at[5, "item_id"]])]
    want = model.predict(scored).set_index("item_id")
    np.testing.assert_allclose(after.loc[want.index, PROB_COLS].to_numpy(float), want[PROB_COLS].to_numpy(float))
    assert (after["scorer"] == "oof_classifier").all()
    # and they learned the models' strengths like the fitted rows did
    truth = strength_labels(scored)
    assert (np.asarray(CLASSES)[want[PROB_COLS].to_numpy().argmax(axis=1)] == truth.to_numpy()).mean() > 0.8


def test_growth_past_the_threshold_refits_on_all_items(con):
    items = pairwise_items(300)
    judgments = votes_for(items)
    write(con, items[:200], judgments[judgments["item_id"].isin(items["item_id"][:200])])
    refresh_model_probs(con, CLASSES, COLUMNS, no_llm())
    write(con, items[:215], judgments[judgments["item_id"].isin(items["item_id"][:215])])
    assert refresh_model_probs(con, CLASSES, COLUMNS, no_llm()).mode == "incremental"  # 15 of 200: below 10%
    write(con, items, judgments)
    update = refresh_model_probs(con, CLASSES, COLUMNS, no_llm())
    assert (update.mode, update.items_scored) == ("refit", 300)
    assert update.reason == "the votes grew from 600 to 900 since the last fit (≥10%)"
    want = build_model_probs(items, prior_training_labels(judgments, CLASSES), None, CLASSES)
    pd.testing.assert_frame_equal(model_probs(con), want.sort_values("item_id").reset_index(drop=True))
    state = con.execute(f"SELECT items_at_fit, scored_since_fit FROM {STATE_TABLE}").fetchall()
    assert state == [(300, 0)]


def test_items_growing_past_the_threshold_refit_even_when_the_votes_do_not(con):
    items = pairwise_items(300)
    judgments = votes_for(items)
    write(con, items[:200], judgments)  # all votes present from the start (on items that come later)
    refresh_model_probs(con, CLASSES, COLUMNS, no_llm())
    write(con, items[:215], judgments)
    assert refresh_model_probs(con, CLASSES, COLUMNS, no_llm()).mode == "incremental"  # 15 of 200: below 10%
    write(con, items[:220], judgments)
    update = refresh_model_probs(con, CLASSES, COLUMNS, no_llm())
    assert update.reason == "20 items new or changed since the fit on 200 items (≥10%)"  # 15 counted before + 5 now


def test_a_requested_refit_a_new_class_set_or_a_new_shape_refits(con):
    items = pairwise_items(120)
    judgments = votes_for(items)
    write(con, items[:110], judgments)
    refresh_model_probs(con, CLASSES, COLUMNS, no_llm())
    assert refresh_model_probs(con, CLASSES, COLUMNS, no_llm(), refit=True).reason == "refit requested"
    two = ("A", "B")
    two_class = judgments[judgments["label"] != "tie"]
    write(con, items[:110], two_class)
    update = refresh_model_probs(con, two, COLUMNS, pd.DataFrame(columns=["item_id", "p_A", "p_B", "scorer"]))
    assert update.mode == "refit" and "class set" in update.reason
    assert [c for c in model_probs(con).columns] == ["item_id", "p_A", "p_B", "scorer"]
    # a new item without model_b cannot get pairwise features: the prior is refitted (generic features)
    odd = items[110:111].assign(model_b=None)
    write(con, pd.concat([items[:110], odd], ignore_index=True), two_class)
    update = refresh_model_probs(con, two, COLUMNS, pd.DataFrame(columns=["item_id", "p_A", "p_B", "scorer"]))
    assert update.mode == "refit" and "not of the shape the classifier was fitted on" in update.reason
    assert update.items == 111


def test_llm_rows_take_precedence_on_every_refresh(con):
    items = pairwise_items(100)
    write(con, items, votes_for(items))
    first = items["item_id"][0]
    llm = pd.DataFrame({"item_id": [first], "p_A": [0.7], "p_B": [0.2], "p_tie": [0.1], "scorer": ["llm_logprobs"]})
    refresh_model_probs(con, CLASSES, COLUMNS, no_llm())
    update = refresh_model_probs(con, CLASSES, COLUMNS, llm)  # the LLM scored an unchanged item since
    assert update.mode == "incremental" and update.items_scored == 0
    row = model_probs(con).set_index("item_id").loc[first]
    assert (row["scorer"], row["p_A"]) == ("llm_logprobs", 0.7)
    assert update.scorer_counts == {"oof_classifier": 99, "llm_logprobs": 1}
    # the classifier's own row is kept underneath: when the LLM row goes, it is back
    refresh_model_probs(con, CLASSES, COLUMNS, no_llm())
    assert model_probs(con).set_index("item_id").loc[first, "scorer"] == "oof_classifier"
    assert con.execute(f"SELECT count(*) FROM {BASE_TABLE}").fetchall() == [(100,)]


def test_without_human_labels_the_prior_is_uniform_and_refits_until_there_are(con):
    items = pairwise_items(50)
    llm_only = votes_for(items).query("annotator_kind == 'llm'").assign(annotator_kind="llm")
    write(con, items, llm_only.iloc[:0])
    update = refresh_model_probs(con, CLASSES, COLUMNS, no_llm())
    assert update.scorer_counts == {"uniform": 50}
    write(con, items, votes_for(items))
    update = refresh_model_probs(con, CLASSES, COLUMNS, no_llm())
    assert update.mode == "refit" and "no item had a human label" in update.reason
    assert update.scorer_counts == {"oof_classifier": 50}


def test_item_features_transform_new_rows_into_the_fitted_columns():
    items = pairwise_items(80)
    features = ItemFeatures().fit(items)
    full = features.transform(items)
    assert (features.transform(items.iloc[10:30]) != full[10:30]).nnz == 0
    unseen = items.iloc[:1].assign(model_a="brand-new", category="never seen", answers_a=[["zzzunknownword"]])
    row = features.transform(unseen)
    assert row.shape == (1, full.shape[1])
    known = features.transform(items.iloc[:1].assign(answers_a=[["zzzunknownword"]]))
    n = len(features.models_)
    identities, categories = slice(0, 2 * n), slice(2 * n + 4, 2 * n + 4 + len(features.categories_))  # 4 numeric columns
    assert known[:, identities].nnz == 4 and row[:, identities].nnz == 2  # the unknown model adds nothing
    assert known[:, categories].nnz == 1 and row[:, categories].nnz == 0  # nor the unknown category
    assert np.isfinite(row.toarray()).all()


def test_generic_items_with_empty_pairwise_columns_stay_incremental(con):
    """The generic schema's items carry model_a/model_b as NULL: a batch with no new item is no
    reason to refit (an empty set of rows is not 'pairwise-shaped' by accident)."""
    rng = np.random.default_rng(2)
    good = rng.random(120) < 0.5
    items = pd.DataFrame({
        "item_id": [f"doc{i}" for i in range(120)],
        **{c: pd.Series([None] * 120, dtype=object) for c in ("model_a", "model_b", "answers_a", "answers_b")},
        "category": np.where(np.arange(120) % 3 == 0, "x", "y"),
        "user_turns": [[("excellent helpful reply " if g else "rude useless reply ") + f"number {i}"] for i, g in enumerate(good)],
    })
    judgments = pd.DataFrame({"item_id": np.repeat(items["item_id"], 2), "annotator": ["h1", "h2"] * 120, "annotator_kind": "human",
                              "label": np.repeat(np.where(good, "pass", "fail"), 2)})
    columns = ["item_id", "model_a", "model_b", "answers_a", "answers_b", "category", "user_turns"]
    write(con, items[:110], judgments)
    classes = ("pass", "fail")
    empty = pd.DataFrame(columns=["item_id", "p_pass", "p_fail", "scorer"])
    assert refresh_model_probs(con, classes, columns, empty).mode == "refit"
    again = refresh_model_probs(con, classes, columns, empty)
    assert (again.mode, again.items_scored) == ("incremental", 0)
    write(con, items, judgments)
    batch = refresh_model_probs(con, classes, columns, empty)
    assert (batch.mode, batch.items_scored) == ("incremental", 10)
    new = model_probs(con).set_index("item_id").loc[items["item_id"][110:]]
    assert ((new["p_pass"] > 0.5).to_numpy() == good[110:]).mean() >= 0.9  # scored from their text


def test_new_votes_on_old_items_rescore_nothing(con):
    """``items`` counts each item's votes; a vote is not a change of the item the classifier reads."""
    items = pairwise_items(100).assign(n_human_votes=2, n_llm_votes=1)
    judgments = votes_for(items)
    columns = [*COLUMNS, "n_human_votes", "n_llm_votes"]
    write(con, items, judgments)
    refresh_model_probs(con, CLASSES, columns, no_llm())
    more = judgments[judgments["annotator"] == "h1"].assign(annotator="h3")[:5]
    write(con, items.assign(n_human_votes=lambda f: f["n_human_votes"] + f["item_id"].isin(more["item_id"])), pd.concat([judgments, more]))
    update = refresh_model_probs(con, CLASSES, columns, no_llm())
    assert (update.mode, update.items_scored) == ("incremental", 0)
