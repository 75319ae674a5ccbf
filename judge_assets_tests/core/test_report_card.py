"""Judge report card: FastChat agreement, scikit-learn metrics, the long report frame, MT-Bench vs the paper."""

import numpy as np
import pandas as pd
import pytest

from judge_assets.core.reports.report_card import REPORT_COLUMNS, fastchat_agreement, judge_metrics, judge_report_card
from judge_assets_tests.core.consensus_fixtures import mt_bench_judgments

CLASSES = ("A", "B", "tie")


def tiny_votes() -> pd.DataFrame:
    # item 1: judge A; humans A, B, tie.  item 2: judge tie; humans tie, tie.
    return pd.DataFrame(
        [("i1", "judge", "A"), ("i1", "h1", "A"), ("i1", "h2", "B"), ("i1", "h'3", "tie"),
         ("i2", "judge", "tie"), ("i2", "h1", "tie"), ("i2", "h2", "tie")],
        columns=["item_id", "annotator", "label"],
    ).assign(turn=lambda f: np.where(f["item_id"] == "i1", 1, 2))


def as_dict(table: pd.DataFrame) -> dict:
    return {r.ties: (r.n_agree, r.n_pairs) for r in table.itertuples()}


def test_fastchat_agreement_judge_vs_humans_by_hand():
    table = fastchat_agreement(tiny_votes(), ["judge"], ["h1", "h2", "h'3"])
    # with ties: i1 (A,A) agrees, (A,B), (A,tie) do not; i2 (tie,tie) twice agrees -> 3 of 5
    # without ties: only i1 (A,A) and (A,B) remain -> 1 of 2
    assert as_dict(table) == {"with": (3, 5), "without": (1, 2)}
    assert table.set_index("ties").loc["with", "agreement"] == pytest.approx(0.6)


def test_fastchat_agreement_human_pairs_by_hand_and_by_turn():
    table = fastchat_agreement(tiny_votes(), ["h1", "h2", "h'3"])
    # i1: (A,B), (A,tie), (B,tie) -> 0 of 3 with ties, (A,B) -> 0 of 1 without; i2: (tie,tie) -> 1 of 1, none without
    assert as_dict(table) == {"with": (1, 4), "without": (0, 1)}
    by_turn = fastchat_agreement(tiny_votes(), ["h1", "h2", "h'3"], by="turn")
    turn2 = by_turn[by_turn["turn"] == 2].set_index("ties")
    assert turn2.loc["with", "n_agree"] == 1 and turn2.loc["without", "n_pairs"] == 0
    assert np.isnan(turn2.loc["without", "agreement"])


def test_fastchat_agreement_rejects_overlapping_groups():
    with pytest.raises(ValueError, match="groups overlap on \\['h1'\\]"):
        fastchat_agreement(tiny_votes(), ["judge", "h1"], ["h1", "h2"])


def test_mt_bench_agreement_matches_the_paper():
    votes = mt_bench_judgments()
    experts = sorted(a for a in votes["annotator"].unique() if a.startswith("expert_"))
    judge = fastchat_agreement(votes, ["gpt4_pair"], experts, by="turn").set_index(["turn", "ties"])["agreement"]
    human = fastchat_agreement(votes, experts, by="turn").set_index(["turn", "ties"])["agreement"]
    # paper, first turn: GPT-4 vs human 66% / 85% (with / without ties), human vs human 63% / 81%
    assert judge[(1, "with")] == pytest.approx(0.66, abs=0.005)
    assert judge[(1, "without")] == pytest.approx(0.85, abs=0.005)
    assert human[(1, "with")] == pytest.approx(0.63, abs=0.005)
    assert human[(1, "without")] == pytest.approx(0.81, abs=0.005)


def metric(table: pd.DataFrame, name: str, cls=None, pred=None) -> float:
    rows = table[(table["metric"] == name)]
    if cls is not None:
        rows = rows[rows["class_label"] == cls]
    if pred is not None:
        rows = rows[rows["predicted_label"] == pred]
    assert len(rows) == 1
    return rows["value"].iloc[0]


def test_judge_metrics_on_a_hand_checkable_confusion_matrix():
    y_true = ["A", "A", "A", "B", "B", "tie"]
    y_pred = ["A", "A", "B", "B", "tie", "tie"]
    table = judge_metrics(np.array(y_true), np.array(y_pred), CLASSES)
    assert metric(table, "accuracy") == pytest.approx(4 / 6)
    # p_o = 2/3, p_e = (3*2 + 2*2 + 1*2) / 36 = 1/3 -> kappa = (2/3 - 1/3) / (1 - 1/3) = 0.5
    assert metric(table, "cohen_kappa") == pytest.approx(0.5)
    assert metric(table, "precision", "A") == pytest.approx(1.0)
    assert metric(table, "recall", "A") == pytest.approx(2 / 3)
    assert metric(table, "precision", "tie") == pytest.approx(0.5)
    assert metric(table, "recall", "tie") == pytest.approx(1.0)
    assert metric(table, "confusion", "A", "B") == 1 and metric(table, "confusion", "B", "tie") == 1
    assert metric(table, "confusion", "A", "A") == 2
    assert table.loc[table["metric"] == "confusion", "value"].sum() == 6
    assert "coverage" not in set(table["metric"])


def test_pass_fail_coverage_and_false_failure_rate():
    y_true = np.array(["fail", "fail", "fail", "pass", "pass"])
    y_pred = np.array(["fail", "pass", "fail", "fail", "pass"])
    table = judge_metrics(y_true, y_pred, ("pass", "fail"))
    assert metric(table, "coverage") == pytest.approx(2 / 3)
    assert metric(table, "false_failure_rate") == pytest.approx(1 / 2)


def panel_scores(**columns) -> pd.DataFrame:
    """``llm_judge_scores`` rows of one pairwise panel judge ``pw:m1`` on items i1..i3."""
    base = {
        "item_id": ["i1", "i2", "i3"], "judge": "pw", "model": "m1", "annotator": "pw:m1", "shape": "pairwise",
        "status": ["ok", "ok", "error:timeout"], "verdict": ["B", "tie", None], "verdict_labels": [["A", "B", "tie"]] * 3,
        # order ab: B, tie, -; order ba: B (= the first-shown output), tie, -
        "p_a_ab": [0.1, 0.2, np.nan], "p_b_ab": [0.8, 0.1, np.nan], "p_tie_ab": [0.1, 0.7, np.nan],
        "p_a_ba": [0.1, 0.2, np.nan], "p_b_ba": [0.8, 0.1, np.nan], "p_tie_ba": [0.1, 0.7, np.nan],
        "longer_output": ["B", "A", "A"], "n_requests": 2, "n_answers": [2, 2, 1], "n_orders": [2, 1, 0],
        "attempts": [2, 2, 3], "prompt_tokens": [100, 100, 50], "completion_tokens": [2, 2, 1],
        "latency_s": [0.5, 0.5, 1.0], "cost_usd": [0.001, 0.001, 0.0005],
    }
    return pd.DataFrame({**base, **columns})


def test_report_card_scores_judges_and_the_panel_leaderboard():
    votes = tiny_votes().assign(annotator_kind=lambda f: np.where(f["annotator"] == "judge", "llm", "human"))
    panel = panel_scores()
    votes = pd.concat(  # the panel's verdicts are votes in judgments, as judgments builds them
        [votes, panel[panel["status"] == "ok"][["item_id", "annotator", "verdict"]].rename(columns={"verdict": "label"}).assign(annotator_kind="llm")],
        ignore_index=True,
    )
    consensus = pd.DataFrame({"item_id": ["i1", "i2"], "human_consensus_label": ["A", "tie"]})
    card = judge_report_card(votes, consensus, CLASSES, ["judge", "pw:m1"], llm_judge_scores=panel)
    assert list(card.columns) == REPORT_COLUMNS
    assert set(card["judge"]) == {"judge", "pw:m1", "human"}
    judge = card[(card["judge"] == "judge") & (card["reference"] == "human_consensus")]
    assert metric(judge, "accuracy") == 1.0
    scorer = card[(card["judge"] == "pw:m1") & (card["reference"] == "human_consensus")]
    assert metric(scorer, "accuracy") == 0.5  # B on i1 (consensus A), tie on i2
    agreement = card[(card["judge"] == "judge") & (card["scope"] == "all")].set_index("metric")
    assert agreement.loc["agreement_with_ties", "value"] == pytest.approx(0.6)
    assert agreement.loc["agreement_with_ties", "n"] == 5
    assert card["paper_value"].isna().all()  # only gpt4_pair / human turn-1 rows carry paper figures

    board = card[card["reference"] == "judge_leaderboard"].set_index("metric")
    assert set(board["judge"]) == {"pw:m1"}
    expected = {
        "items_scored": (2, 3), "agreement_with_human_consensus": (0.5, 2),
        "p_first_position": (0.5, 2),  # i1: B in ab (second shown), B in ba (first shown); ties are not decisive
        "p_longer_output": (1.0, 1),  # i1 chose B, the longer one; i2 is a tie
        "parse_rate": (3 / 5, 5), "calls": (7, 3), "tokens": (255, 3),
        "seconds_per_1000_items": (2000 / 3, 3), "usd_per_1000_items": (2.5 / 3, 3),
    }
    for name, (value, n) in expected.items():
        assert board.loc[name, "value"] == pytest.approx(value), name
        assert board.loc[name, "n"] == n, name


def test_leaderboard_leaves_out_what_does_not_apply():
    votes = tiny_votes().assign(annotator_kind="human")
    consensus = pd.DataFrame({"item_id": ["i1", "i2"], "human_consensus_label": ["A", "tie"]})
    likert = panel_scores(verdict_labels=[["1", "2"]] * 3, shape="single", cost_usd=np.nan)  # not the class set, not pairwise
    card = judge_report_card(votes, consensus, CLASSES, [], llm_judge_scores=likert)
    board = set(card.loc[card["reference"] == "judge_leaderboard", "metric"])
    assert board == {"items_scored", "parse_rate", "calls", "tokens", "seconds_per_1000_items"}


def test_judge_metrics_equal_sklearn_on_the_label_strings():
    """judge_metrics codes labels as integers for speed; every value is sklearn's on the strings themselves,
    a value outside the class set included (it stays distinct, it is not merged with other unknowns)."""
    from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, matthews_corrcoef, precision_recall_fscore_support

    rng = np.random.default_rng(1)
    classes = ("tie", "B", "A")  # not sorted: codes follow the class set, not the alphabet
    y_true = rng.choice(["A", "B", "tie"], size=500, p=[0.45, 0.4, 0.15]).astype(object)
    y_pred = np.where(rng.random(500) < 0.7, y_true, rng.choice(["A", "B", "tie", "other", "odd"], size=500)).astype(object)
    got = judge_metrics(y_true, y_pred, classes).set_index(["metric", "class_label", "predicted_label"], drop=False)
    value = lambda metric, c=None, p=None: got.loc[(metric, c, p), "value"]  # noqa: E731
    assert value("accuracy") == accuracy_score(y_true, y_pred)
    assert value("cohen_kappa") == pytest.approx(cohen_kappa_score(y_true, y_pred, labels=list(classes)), abs=1e-12)
    assert value("mcc") == pytest.approx(matthews_corrcoef(y_true, y_pred), abs=1e-12)
    cm = confusion_matrix(y_true, y_pred, labels=list(classes))
    for i, t in enumerate(classes):
        for j, p in enumerate(classes):
            assert value("confusion", t, p) == cm[i, j]
    precision, recall, _, support = precision_recall_fscore_support(y_true, y_pred, labels=list(classes))
    for c, p, r, s in zip(classes, precision, recall, support):
        assert (value("precision", c), value("recall", c), value("support", c)) == (pytest.approx(p), pytest.approx(r), s)
        assert got.loc[("precision", c, None), "n"] == (y_pred == c).sum()
