"""Great Expectations suites: good frames pass, broken frames fail and name the bad rows; the Dagster checks."""

import os

import dagster as dg
import duckdb as ddb
import numpy as np
import pandas as pd
import pytest
from judge_assets.defs.resources import JudgeDuckDBResource

from judge_assets.core.validation import (
    MAX_FAILING_ROWS,
    combine,
    validate_label_coverage,
    validate_label_domain,
    validate_probabilities,
    validate_scores,
)

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
CLASSES = ("A", "B", "tie")


def failing(result, column: str):
    [outcome] = [e for e in result.failures() if e.column == column]
    return outcome


def test_good_probabilities_pass():
    probs = pd.DataFrame({"item_id": ["i1", "i2"], "p_A": [0.2, 1.0], "p_B": [0.3, 0.0], "p_tie": [0.5, 0.0]})
    result = validate_probabilities(probs, CLASSES)
    assert result.passed and result.summary() == "probabilities: all 7 expectations passed"


def test_row_sum_and_range_failures_name_the_rows():
    probs = pd.DataFrame({"item_id": ["ok", "sum12", "neg"], "p_A": [0.5, 0.6, -0.1], "p_B": [0.5, 0.6, 0.6], "p_tie": [0.0, 0.0, 0.5]})
    result = validate_probabilities(probs, CLASSES)
    assert not result.passed
    row_sum = failing(result, "row_sum")
    assert row_sum.unexpected_count == 1 and row_sum.failing_rows == [{"row_sum": pytest.approx(1.2), "item_id": "sum12"}]
    assert failing(result, "p_A").failing_rows == [{"p_A": -0.1, "item_id": "neg"}]
    assert "model_probs.row_sum failed for 1 of 3 rows" in result.summary()


def test_missing_probability_column_is_a_clear_error():
    with pytest.raises(ValueError, match="model_probs lacks column\\(s\\) \\['p_tie'\\]"):
        validate_probabilities(pd.DataFrame({"item_id": ["i"], "p_A": [0.5], "p_B": [0.5]}), CLASSES)


def test_label_outside_the_class_set_fails():
    frame = pd.DataFrame({"item_id": ["i1", "i2", "i3"], "consensus_label": ["A", "maybe", None]})
    result = validate_label_domain({"consensus_labels": (frame, "item_id", ["consensus_label"])}, CLASSES)
    assert not result.passed
    by_name = {e.name: e for e in result.failures()}
    assert by_name["expect_column_values_to_be_in_set"].failing_rows == [{"consensus_label": "maybe", "item_id": "i2"}]
    assert by_name["expect_column_values_to_not_be_null"].failing_rows[0]["item_id"] == "i3"


def test_coverage_reports_unlabelled_items_and_annotators():
    item_labels = pd.DataFrame({"item_id": ["i1", "i2", "no_label"], "n_labels": [2, 1, 0]})
    annotator_labels = pd.DataFrame({"annotator": ['"; DROP TABLE x; --', "idle"], "n_labels": [3, 0]})
    consensus = pd.DataFrame({"item_id": ["i1", "i2"], "consensus_label": ["A", "B"]})
    probs = pd.DataFrame({"item_id": ["i1", "i2", "no_label"]})
    result = validate_label_coverage(item_labels, annotator_labels, consensus, probs)
    assert not result.passed
    assert result.stats == {"n_items": 3.0, "share_items_2plus_labels": pytest.approx(1 / 3)}
    failed = {(e.frame, e.column, e.name): e.failing_rows for e in result.failures()}
    assert failed == {
        ("items", "n_labels", "expect_column_values_to_be_between"): [{"n_labels": 0, "item_id": "no_label"}],
        ("items", "has_consensus", "expect_column_values_to_be_in_set"): [{"has_consensus": False, "item_id": "no_label"}],
        ("annotators", "n_labels", "expect_column_values_to_be_between"): [{"n_labels": 0, "annotator": "idle"}],
    }


def test_scores_allow_null_and_cap_failing_rows():
    frame = pd.DataFrame({"annotator": [f"a{i}" for i in range(30)], "q": [1.5] * 25 + [np.nan] + [0.5] * 4})
    result = combine("all", validate_scores({"annotator_stats": (frame, "annotator", ["q"])}), validate_scores({}))
    outcome = failing(result, "q")
    assert outcome.unexpected_count == 25 and len(outcome.failing_rows) == MAX_FAILING_ROWS


def test_blocking_model_probs_check_fails_and_lists_rows(tmp_path):
    from judge_assets.defs.scoring import model_probs_are_probabilities

    db = tmp_path / "judge.duckdb"
    con = ddb.connect(str(db))
    con.execute("CREATE TABLE label_set AS SELECT * FROM (VALUES ('A', 0), ('B', 1), ('tie', 2)) t(label, code)")
    con.execute("CREATE TABLE model_probs AS SELECT * FROM (VALUES ('i1', 0.2, 0.3, 0.5), ('bad', 0.6, 0.6, 0.0)) t(item_id, p_A, p_B, p_tie)")
    con.close()

    @dg.asset(name="model_probs")
    def model_probs_stub() -> None:
        """Stands in for the real model_probs asset: the table already exists."""

    result = dg.materialize(
        [model_probs_stub, model_probs_are_probabilities],
        resources={"duckdb": JudgeDuckDBResource(database=str(db))},
        raise_on_error=False,
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed is False
    rows = evaluation.metadata["failed: model_probs.row_sum expect_column_values_to_be_between"].value
    assert rows["unexpected_count"] == 1 and rows["failing_rows"][0]["item_id"] == "bad"
