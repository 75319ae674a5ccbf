"""Majority vote: counts in SQL, cleanlab's label and tie-break rule."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
from cleanlab.multiannotator import get_majority_vote_label

from judge_assets.core.consensus.majority import majority_vote, majority_vote_table
from judge_assets.core.consensus.votes import Votes


def test_majority_table_matches_cleanlab_on_mt_bench(mt_bench_db):
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    table = majority_vote_table(con, ("A", "B", "tie"))
    assert len(table) == 2400
    frame = con.execute("SELECT item_id, annotator, label FROM judgments").df()
    votes = Votes.from_frame(frame, ("A", "B", "tie"), item_ids=table["item_id"].to_numpy())
    np.random.seed(0)
    expected = get_majority_vote_label(votes.to_matrix(), verbose=False)
    assert (table["majority_label"].to_numpy() == np.array(["A", "B", "tie"], dtype=object)[expected]).all()
    assert (table[["votes_A", "votes_B", "votes_tie"]].sum(axis=1) == table["num_votes"]).all()
    assert table["agreement"].between(1 / 3, 1).all()


def test_class_ties_go_to_the_rarer_class_not_the_first():
    # item t has one A and one B vote; elsewhere B is rare, A common → the tie goes to B
    frame = pd.DataFrame(
        {
            "item_id": ["t", "t", "u", "u", "v", "v"],
            "annotator": ["p", "q", "p", "q", "p", "q"],
            "label": ["A", "B", "A", "A", "A", "tie"],
        }
    )
    votes = Votes.from_frame(frame, ("A", "B", "tie"))
    labels = majority_vote(votes)
    assert labels[0] == 1  # B
    # and the other way round when A is the rarer class
    flipped = frame.replace({"label": {"A": "B", "B": "A"}})
    assert majority_vote(Votes.from_frame(flipped, ("A", "B", "tie")))[0] == 0


def test_last_resort_tiebreak_is_seeded():
    # A and B equally frequent, both annotators equally reliable: only the seeded draw is left
    frame = pd.DataFrame(
        {"item_id": ["t", "t", "u", "u", "r", "r"], "annotator": ["p", "q"] * 3, "label": ["A", "B", "B", "A", "tie", "tie"]}
    )
    votes = Votes.from_frame(frame, ("A", "B", "tie"))
    t = list(votes.item_ids).index("t")
    draws = {int(majority_vote(votes, seed=s)[t]) for s in range(20)}
    assert draws == {0, 1}  # not always the first class
    assert all((majority_vote(votes, seed=3) == majority_vote(votes, seed=3)))
