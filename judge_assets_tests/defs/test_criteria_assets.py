"""The criteria group through Dagster: grades, verdicts, the report card checked by hand, milestones,
history, a malformed criterion refused with nothing stored changed, LLM assertions on the loopback server."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from judge_assets.core.votes.judgments import build_items
from judge_assets.defs.criteria import CRITERIA_ASSETS
from judge_assets.defs.resources import JudgeDuckDBResource, project_resources

CRITERIA = """
criteria:
  - name: concise
    description: The answer is short and to the point.
    assertions:
      - name: no_x
        sql: NOT contains(response, 'x')
      - name: no_y
        sql: NOT contains(response, 'y')
"""
LLM_CRITERIA = CRITERIA + """      - name: llm_concise
        judge: pass-fail
"""
#: 20 outputs, 8 bad (o00-o07), 12 good. no_x fails o00-o05 and o08-o09 (6 bad + 2 good);
#: no_y fails o00-o13 (8 bad + 6 good) — the table of the core test, now through the assets.
RESPONSES = ["x y"] * 6 + ["y"] * 2 + ["x y"] * 2 + ["y"] * 4 + ["ok"] * 6
BAD = [True] * 8 + [False] * 12
CONFIG_20 = {"min_graded": 20, "select_at": 20, "ffr_budget": 0.2, "drift_margin": 0.1}


def _raw(con, rows, batch: str, day: int) -> None:
    """Append generic grade rows (item_id, annotator, label, criterion, prompt, response) as one batch."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS raw_judgments (item_id VARCHAR, annotator VARCHAR, label VARCHAR, criterion VARCHAR, "
        "prompt VARCHAR, response VARCHAR, batch_id VARCHAR, source VARCHAR, source_row BIGINT, ingested_at TIMESTAMP)"
    )
    con.executemany(
        "INSERT INTO raw_judgments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(*row, batch, f"{batch}.csv", n, f"2024-01-{day:02d}") for n, row in enumerate(rows, start=1)],
    )
    build_items(con)


def _grades(indices, grader="ann", label=None):
    return [(f"o{i:02d}", grader, label or ("bad" if BAD[i] else "good"), None, f"question {i}", RESPONSES[i]) for i in indices]


@pytest.fixture
def db(tmp_path, monkeypatch):
    path = tmp_path / "judge.duckdb"
    (tmp_path / "criteria.yaml").write_text(CRITERIA)
    monkeypatch.setenv("JUDGE_CRITERIA_FILE", str(tmp_path / "criteria.yaml"))
    monkeypatch.delenv("JUDGE_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("JUDGE_LLM_MODEL", raising=False)
    return path


def _materialize(db, config=CONFIG_20, **kwargs):
    run_config = {"ops": {name: {"config": config} for name in ("assertion_report", "assertion_report_history", "regrade_candidates")}}
    return dg.materialize(
        CRITERIA_ASSETS,
        instance=dg.DagsterInstance.ephemeral(),
        resources={"duckdb": JudgeDuckDBResource(database=str(db)), "llm_judge": project_resources()["llm_judge"]},
        run_config=run_config,
        **kwargs,
    )


def _query(db, sql):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def test_the_report_card_through_the_assets_matches_a_hand_computation(db):
    con = duckdb.connect(str(db))
    _raw(con, _grades(range(20)), "b1", 1)
    con.close()
    result = _materialize(db)
    assert result.success
    report = _query(db, "SELECT * FROM assertion_report")
    rows = report[report["level"] == "assertion"].set_index("assertion")
    x, y = rows.loc["no_x"], rows.loc["no_y"]
    assert (x["n_graded"], x["n_bad"], x["n_good"]) == (20, 8, 12)
    assert x["coverage"] == pytest.approx(6 / 8) and x["false_failure_rate"] == pytest.approx(2 / 12)
    assert x["failure_precision"] == pytest.approx(6 / 8) and x["false_failure_share"] == pytest.approx(2 / 8)
    assert x["alignment"] == pytest.approx(2 * 0.75 * (10 / 12) / (0.75 + 10 / 12))
    assert y["coverage"] == pytest.approx(1.0) and y["false_failure_rate"] == pytest.approx(0.5) and not y["selected"]
    criterion = report[report["level"] == "criterion"].iloc[0]
    assert (criterion["criterion"], criterion["assertion"], criterion["status"]) == ("concise", "no_x", "selected")
    whole = report[report["level"] == "selected set"].iloc[0]
    assert whole["assertion"] == "no_x" and whole["coverage"] == pytest.approx(0.75) and whole["false_failure_rate"] == pytest.approx(2 / 12)
    metadata = result.asset_materializations_for_node("assertion_report")[0].metadata
    assert metadata["selected"].value == "concise: no_x"
    verdicts = _query(db, "SELECT count(*) AS n, count(*) FILTER (WHERE failed) AS failed FROM assertion_verdicts")
    assert (verdicts["n"][0], verdicts["failed"][0]) == (40, 8 + 14)
    candidates = _query(db, "SELECT * FROM regrade_candidates")
    assert len(candidates) == 20 and set(candidates.loc[candidates["assertions_disagree"], "item_id"]) == {"o06", "o07", "o08", "o09"}


def test_milestones_batches_history_and_regrades(db):
    con = duckdb.connect(str(db))
    _raw(con, _grades(range(0, 20, 2)), "b1", 1)  # 10 graded outputs: below the first milestone
    con.close()
    assert _materialize(db, {**CONFIG_20, "select_at": 50}).success
    report = _query(db, "SELECT * FROM assertion_report WHERE level = 'assertion'")
    assert set(report["status"]) == {"needs 10 more grades"} and report["coverage"].isna().all()

    con = duckdb.connect(str(db))
    # batch 2: the other 10 outputs, and o10 re-graded bad by the same grader (it was good)
    _raw(con, _grades(range(1, 20, 2)) + _grades([10], label="bad"), "b2", 2)
    con.close()
    result = _materialize(db, {**CONFIG_20, "select_at": 50})
    assert result.success
    meta = result.asset_materializations_for_node("grades")[0].metadata
    assert (meta["regraded"].value, meta["label_changed"].value, meta["dagster/row_count"].value) == (1, 1, 20)
    report = _query(db, "SELECT * FROM assertion_report")
    assert set(report.loc[report["level"] == "assertion", "status"]) == {"evaluated"}
    assert list(report.loc[report["level"] == "criterion", "status"]) == ["selection starts at 50 grades"]
    x = report[(report["level"] == "assertion") & (report["assertion"] == "no_x")].iloc[0]
    assert (x["n_bad"], x["n_good"]) == (9, 11)  # the re-grade replaced the earlier grade
    history = _query(db, "SELECT * FROM assertion_report_history ORDER BY batch_number, assertion")
    assert list(history["batch_number"]) == [1, 1, 2, 2] and list(history["batch_id"]) == ["b1", "b1", "b2", "b2"]
    assert history["status"].iloc[0] == "needs 10 more grades" and history["coverage"].iloc[2] == pytest.approx(6 / 9)
    assert "plot" in result.asset_materializations_for_node("assertion_report_history")[0].metadata


def test_two_criteria_graded_by_one_grader_on_one_output_stay_two_grades(db):
    con = duckdb.connect(str(db))
    _raw(con, [("o00", "ann", "bad", "concise", "q", "x"), ("o00", "ann", "good", "polite", "q", "x")], "b1", 1)
    con.close()
    assert _materialize(db).success
    grades = _query(db, "SELECT criterion, grade FROM grades ORDER BY criterion")
    assert list(zip(grades["criterion"], grades["grade"])) == [("concise", "bad"), ("polite", "good")]


@pytest.mark.parametrize(
    "bad_criteria, message",
    [
        ("criteria:\n  - name: cites\n    assertions:\n      - name: has_url\n        sql: regexp_matches(answer, 'x')\n",
         "criterion 'cites', assertion 'has_url': unknown column(s) answer"),
        ("criteria:\n  - name: short\n    assertions:\n      - name: len\n        sql: length(response) <=\n",
         "criterion 'short', assertion 'len': 'sql' is not a valid expression"),
        ("criteria:\n  - name: judged\n    assertions:\n      - name: pairwise\n        judge: mt-bench-pairwise\n",
         "criterion 'judged', assertion 'pairwise': judge 'mt-bench-pairwise' has shape 'pairwise'"),
    ],
)
def test_a_malformed_criterion_fails_the_asset_naming_it_and_nothing_stored_changes(db, tmp_path, bad_criteria, message):
    con = duckdb.connect(str(db))
    _raw(con, _grades(range(20)), "b1", 1)
    con.close()
    assert _materialize(db).success
    before = {t: _query(db, f"SELECT * FROM {t} ORDER BY ALL").to_csv() for t in ("assertion_verdicts", "assertion_report")}
    (tmp_path / "criteria.yaml").write_text(bad_criteria)
    result = _materialize(db, raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert failure.step_key == "assertion_verdicts"
    description = failure.event_specific_data.error.message
    assert message in description and str(tmp_path / "criteria.yaml") in description
    after = {t: _query(db, f"SELECT * FROM {t} ORDER BY ALL").to_csv() for t in ("assertion_verdicts", "assertion_report")}
    assert after == before


def test_no_criteria_file_materializes_empty_tables_with_a_note(db, tmp_path):
    (tmp_path / "criteria.yaml").unlink()
    con = duckdb.connect(str(db))
    _raw(con, _grades(range(5)), "b1", 1)
    con.close()
    result = _materialize(db)
    assert result.success
    note = result.asset_materializations_for_node("assertion_verdicts")[0].metadata["note"].value
    assert "no criteria file at" in note and "JUDGE_CRITERIA_FILE" in note
    assert _query(db, "SELECT count(*) AS n FROM assertion_report")["n"][0] == 0
    history = result.asset_materializations_for_node("assertion_report_history")[0].metadata
    assert "plot" not in history and history["note"].value.startswith("no history yet")


def test_llm_assertions_use_the_single_output_judge_with_the_criterion_as_its_criterion(db, tmp_path, fake_openai, monkeypatch):
    (tmp_path / "criteria.yaml").write_text(LLM_CRITERIA)
    fake_openai.settings.answer_tokens = {"Y if the answer meets the criterion": ("Y", "N")}
    monkeypatch.setenv("JUDGE_LLM_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("JUDGE_LLM_MODEL", "judge-model")
    con = duckdb.connect(str(db))
    _raw(con, _grades(range(20)), "b1", 1)
    con.close()
    assert _materialize(db).success
    calls = fake_openai.count("chat")
    assert calls == 20  # one request per output (single-output judges are not swapped)
    assert all("The answer is short and to the point." in r.body.decode() for r in fake_openai.requests if r.path.endswith("/chat/completions"))
    verdicts = _query(db, "SELECT * FROM assertion_verdicts WHERE kind = 'llm'")
    assert len(verdicts) == 20 and set(verdicts["status"]) == {"ok"} and set(verdicts["judge"]) == {"pass-fail"}
    report = _query(db, "SELECT * FROM assertion_report WHERE level = 'assertion' AND assertion = 'llm_concise'")
    assert report["n_graded"][0] == 20 and report["coverage"].notna().all()
    assert _materialize(db).success and fake_openai.count("chat") == calls  # cached: no new calls
