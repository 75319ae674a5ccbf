"""Criteria files, code assertions in DuckDB, and the assertion report card checked by hand."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from judge_assets.core.reports.alignment import (
    alignment_history, alignment_report, grade_rows, latest_grades, output_grades, regrade_candidates, regrade_counts,
)
from judge_assets.core.reports.changes import changes, snapshot
from judge_assets.core.scoring.criteria import CriteriaError, load_criteria, parse_criteria, run_code_assertions, validate_against_table

CRITERIA = {
    "criteria": [
        {"name": "concise", "description": "Short enough to read at a glance.", "assertions": [
            {"name": "under_40_chars", "sql": "length(response) <= 40"},
            {"name": "llm_concise", "judge": "single_pass_fail"},
        ]},
        {"name": "no_ai_disclaimer", "assertions": [{"name": "no_as_an_ai", "sql": "NOT regexp_matches(response, '(?i)as an ai')"}]},
    ]
}


@pytest.fixture
def items_db(tmp_path):
    con = duckdb.connect(str(tmp_path / "judge.duckdb"))
    con.execute("CREATE TABLE items AS SELECT * FROM (VALUES ('o1', 'Paris.'), ('o2', 'As an AI, I cannot say, but it is probably Paris, France.'), "
                "('o3', NULL)) t(item_id, response)")
    yield con
    con.close()


def test_code_assertions_run_in_duckdb_and_llm_assertions_are_kept_for_the_judge(items_db):
    criteria = parse_criteria(CRITERIA, "criteria.yaml")
    assert [(a.name, a.kind) for a in criteria[0].assertions] == [("under_40_chars", "code"), ("llm_concise", "llm")]
    validate_against_table(items_db, criteria, "items", "criteria.yaml")
    verdicts = run_code_assertions(items_db, criteria).set_index(["item_id", "assertion"])["failed"]
    assert verdicts[("o1", "under_40_chars")] == False and verdicts[("o2", "under_40_chars")] == True  # noqa: E712
    assert verdicts[("o2", "no_as_an_ai")] == True and verdicts[("o1", "no_as_an_ai")] == False  # noqa: E712
    assert verdicts[("o3", "under_40_chars")] == False  # noqa: E712 - NULL: the check could not apply, so it does not fail


@pytest.mark.parametrize(
    "assertion, message",
    [
        ({"name": "bad", "sql": "length(response) <="}, "criterion 'concise', assertion 'bad': 'sql' is not a valid expression"),
        ({"name": "two", "sql": "true; DROP TABLE items"}, "criterion 'concise', assertion 'two': 'sql' must be one expression without ';'"),
        ({"name": "sub", "sql": "response IN (SELECT response FROM items)"}, "may not contain a query or subquery"),
        ({"name": "both", "sql": "true", "judge": "x"}, "give exactly one of 'sql'"),
    ],
)
def test_a_malformed_assertion_is_refused_naming_the_criterion(assertion, message):
    with pytest.raises(CriteriaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_criteria({"criteria": [{"name": "concise", "assertions": [assertion]}]}, "criteria.yaml")


def test_an_unknown_column_is_refused_before_anything_runs(items_db, tmp_path):
    path = tmp_path / "criteria.yaml"
    path.write_text("criteria:\n  - name: cites\n    assertions:\n      - name: has_url\n        sql: regexp_matches(answer, 'https?://')\n")
    criteria = load_criteria(path)
    with pytest.raises(CriteriaError, match=r"criteria.yaml, criterion 'cites', assertion 'has_url': unknown column\(s\) answer"):
        validate_against_table(items_db, criteria, "items", str(path))
    path.write_text("criteria: [oops")
    with pytest.raises(CriteriaError, match="not valid YAML"):
        load_criteria(path)


def _graded(bad_flags, prefix="o", criterion=None, batch="b1", grader="g1", seq0=0):
    return pd.DataFrame({
        "item_id": [f"{prefix}{i:02d}" for i in range(len(bad_flags))], "grader": grader, "criterion": criterion,
        "grade": ["bad" if b else "good" for b in bad_flags], "seq": range(seq0, seq0 + len(bad_flags)), "batch_id": batch,
    })


def _hand_table():
    """20 outputs: 8 bad, 12 good. X fails 6 bad + 2 good; Y fails all 8 bad + 6 good."""
    bad = np.array([True] * 8 + [False] * 12)
    x = np.array([True] * 6 + [False] * 2 + [True] * 2 + [False] * 10)
    y = np.array([True] * 8 + [True] * 6 + [False] * 6)
    ids = [f"o{i:02d}" for i in range(20)]
    verdicts = pd.concat([
        pd.DataFrame({"item_id": ids, "criterion": "concise", "assertion": "X", "kind": "code", "failed": x}),
        pd.DataFrame({"item_id": ids, "criterion": "concise", "assertion": "Y", "kind": "code", "failed": y}),
    ])
    return verdicts, _graded(bad)


def test_the_report_card_matches_a_hand_computation():
    verdicts, grades = _hand_table()
    report, selection = alignment_report(verdicts, output_grades(grades), min_graded=20, select_at=20, ffr_budget=0.2)
    x = report.set_index("assertion").loc["X"]
    assert (x["n_bad"], x["n_good"]) == (8, 12)
    assert x["coverage"] == pytest.approx(6 / 8) and x["false_failure_rate"] == pytest.approx(2 / 12)
    assert x["failure_precision"] == pytest.approx(6 / 8) and x["false_failure_share"] == pytest.approx(2 / 8)
    assert x["alignment"] == pytest.approx(2 * 0.75 * (10 / 12) / (0.75 + 10 / 12))
    assert x["coverage_low"] < 0.75 < x["coverage_high"] and x["alignment_low"] <= x["alignment"] <= x["alignment_high"]
    y = report.set_index("assertion").loc["Y"]
    assert y["false_failure_rate"] == pytest.approx(0.5) and y["failure_precision"] == pytest.approx(8 / 14)
    assert list(report.loc[report["selected"], "assertion"]) == ["X"]  # Y catches more but is over the FFR budget
    picked = selection.set_index("criterion")
    assert picked.loc["concise", "selected_assertion"] == "X"
    assert picked.loc["(selected set)", "coverage"] == pytest.approx(0.75)


def test_milestones_hold_back_numbers_then_selection():
    verdicts, grades = _hand_table()
    early, _ = alignment_report(verdicts, output_grades(grades.head(12)), min_graded=20)
    assert set(early["status"]) == {"needs 8 more grades"} and early["coverage"].isna().all()
    middle, selection = alignment_report(verdicts, output_grades(grades), min_graded=20, select_at=50)
    assert set(middle["status"]) == {"evaluated"} and not middle["selected"].any()
    assert selection["status"].iloc[0] == "selection starts at 50 grades"


def test_a_regrade_by_the_same_grader_replaces_the_earlier_grade():
    first = _graded([True, False])
    again = _graded([False], seq0=10)  # o00 re-graded good
    graded = output_grades(pd.concat([first, again]))
    assert graded.set_index("item_id")["bad"].to_dict() == {"o00": False, "o01": False}


def test_history_has_a_row_per_assertion_per_batch_and_flags_drift():
    verdicts, grades = _hand_table()
    # batch 2: the grader changes their mind about o10..o19 (good → bad): both variants now fail every good output
    regrades = _graded([True] * 10, prefix="o", batch="b2", seq0=100).assign(item_id=[f"o{i:02d}" for i in range(10, 20)])
    history = alignment_history(verdicts, pd.concat([grades, regrades]), ["b1", "b2"], min_graded=20, select_at=20)
    assert len(history) == 4 and list(history["batch_number"]) == [1, 1, 2, 2]
    by_batch = history.groupby("batch_number")["criterion_alignment"].first()
    assert by_batch[1] == pytest.approx(2 * 0.75 * (10 / 12) / (0.75 + 10 / 12)) and by_batch[2] == pytest.approx(0.0)
    assert list(history.groupby("batch_number")["drift"].first()) == [False, True]


def test_regrade_candidates_rank_grades_that_disagree_with_the_assertions_and_later_similar_grades():
    graded = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "bad": [False, False, True, True], "batch_number": [1, 1, 2, 2]})
    texts = pd.Series({"a": "As an AI I cannot answer", "b": "Paris is the capital", "c": "As an AI I cannot help", "d": "Berlin"})
    set_failed = pd.Series({"a": True, "b": False, "c": True, "d": False})
    ranked = regrade_candidates(graded, set_failed, texts, neighbours=1)
    assert ranked.iloc[0]["item_id"] == "a"  # graded good, failed by the assertions, and its later look-alike c was graded bad
    first = ranked.set_index("item_id")
    assert first.loc["a", "assertions_disagree"] and first.loc["a", "later_neighbours_disagree"] == pytest.approx(1.0)
    assert first.loc["c", "later_neighbours_disagree"] == 0.0  # nothing graded after it


def _raw(con, rows):
    con.execute("CREATE OR REPLACE TABLE raw_judgments (item_id VARCHAR, annotator VARCHAR, label VARCHAR, criterion VARCHAR, "
                "batch_id VARCHAR, source_row BIGINT, ingested_at TIMESTAMP)")
    con.executemany("INSERT INTO raw_judgments VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def test_grades_are_keyed_by_output_criterion_and_grader_and_the_last_grade_counts():
    con = duckdb.connect()
    _raw(con, [
        ("o1", "g1", "good", None, "b1", 1, "2024-01-01"),
        ("o1", "g1", "bad", "concise", "b1", 2, "2024-01-01"),  # another criterion, same grader and output: its own grade
        ("o2", "g1", "bad", "", "b1", 3, "2024-01-01"),
        ("o1", "g1", "bad", None, "b2", 1, "2024-01-02"),  # re-graded, label changed
        ("o2", "g1", "Bad", None, "b2", 2, "2024-01-02"),  # re-graded, same label
        ("o3", "g1", "A", None, "b2", 3, "2024-01-02"),  # not a grade
    ])
    rows = grade_rows(con)
    assert len(rows) == 5 and list(rows["batch_number"]) == [1, 1, 1, 2, 2]
    grades = latest_grades(rows).set_index(["item_id", "criterion"])
    assert len(grades) == 3 and grades.loc[("o1", "concise"), "bad"] and grades.loc[("o1", "overall"), "bad"]
    assert grades.loc[("o1", "overall"), "previous_grade"] == "good" and grades.loc[("o1", "overall"), "changed"]
    assert grades.loc[("o2", "overall"), "n_grades"] == 2 and not grades.loc[("o2", "overall"), "changed"]
    assert regrade_counts(rows) == {"regraded": 2, "label_changed": 1}
    assert grade_rows(duckdb.connect()).empty  # no raw table: no grades


def test_the_ingest_report_counts_grade_regrades_even_when_the_grade_is_unchanged(tmp_path):
    def state(name, grades):
        con = duckdb.connect(str(tmp_path / name))
        con.execute("CREATE TABLE grades (item_id VARCHAR, criterion VARCHAR, grader VARCHAR, grade VARCHAR, batch_id VARCHAR, source_row BIGINT)")
        con.executemany("INSERT INTO grades VALUES (?, ?, ?, ?, ?, ?)", grades)
        snap = snapshot(con, tmp_path / "snapshots")
        con.close()
        return snap

    before = state("before.duckdb", [("o1", "overall", "g1", "good", "b1", 1), ("o1", "concise", "g1", "good", "b1", 3),
                                     ("o2", "overall", "g1", "bad", "b1", 2)])
    after = state("after.duckdb", [("o1", "overall", "g1", "bad", "b2", 1), ("o1", "concise", "g1", "good", "b1", 3),
                                   ("o2", "overall", "g1", "bad", "b2", 2), ("o3", "overall", "g1", "good", "b2", 3)])
    report = changes(before, after)
    assert (report.grades_regraded, report.grade_changed) == (2, 1)
    assert "grades re-graded 2 (same grader, output and criterion), grade changed 1" in "\n".join(report.lines())
