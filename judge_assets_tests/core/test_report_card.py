"""Judge report card: FastChat agreement, scikit-learn metrics, the long report frame, MT-Bench vs the paper."""

import numpy as np
import pandas as pd
import pytest

from judge_assets.core.reports.report_card import REPORT_COLUMNS, fastchat_agreement, judge_metrics, judge_report_card, logprob_judge_votes
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


def test_report_card_scores_judges_and_the_logprob_scorer():
    votes = tiny_votes().assign(annotator_kind=lambda f: np.where(f["annotator"] == "judge", "llm", "human"))
    consensus = pd.DataFrame({"item_id": ["i1", "i2"], "human_consensus_label": ["A", "tie"]})
    scores = pd.DataFrame(
        {"item_id": ["i1", "i2", "i3"], "p_a": [0.1, 0.2, np.nan], "p_b": [0.8, 0.1, np.nan], "p_tie": [0.1, 0.7, np.nan], "model": "m1"}
    )
    card = judge_report_card(votes, consensus, CLASSES, ["judge"], llm_judge_scores=scores)
    assert list(card.columns) == REPORT_COLUMNS
    assert set(card["judge"]) == {"judge", "llm_logprobs:m1", "human"}
    judge = card[(card["judge"] == "judge") & (card["reference"] == "human_consensus")]
    assert metric(judge, "accuracy") == 1.0
    scorer = card[(card["judge"] == "llm_logprobs:m1") & (card["reference"] == "human_consensus")]
    assert metric(scorer, "accuracy") == 0.5  # B on i1 (consensus A), tie on i2
    agreement = card[(card["judge"] == "judge") & (card["scope"] == "all")].set_index("metric")
    assert agreement.loc["agreement_with_ties", "value"] == pytest.approx(0.6)
    assert agreement.loc["agreement_with_ties", "n"] == 5
    assert card["paper_value"].isna().all()  # only gpt4_pair / human turn-1 rows carry paper figures


def test_logprob_votes_need_a_pairwise_class_set():
    scores = pd.DataFrame({"item_id": ["i1"], "p_a": [0.6], "p_b": [0.4], "p_tie": [0.0], "model": "m"})
    assert logprob_judge_votes(scores, ("A", "B")).to_dict("records") == [{"item_id": "i1", "annotator": "llm_logprobs:m", "label": "A"}]
    assert logprob_judge_votes(scores, ("pass", "fail")).empty


def test_logprob_votes_use_only_fully_scored_items():
    scores = pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3"],
            "p_a": [0.6, 0.9, float("nan")],
            "p_b": [0.3, 0.1, float("nan")],
            "p_tie": [0.1, 0.0, float("nan")],
            "status": ["ok", "error:timeout", "no_label_token"],
            "model": "m",
        }
    )
    assert logprob_judge_votes(scores, ("A", "B", "tie"))["item_id"].tolist() == ["i1"]
