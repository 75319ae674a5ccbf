"""The EvalGen worked example end to end (benchmarks/evalgen_llmbar.py on a subset): LLMBar Natural
outputs graded by their gold, ingested batch by batch with `judge-assets ingest`, LLM assertions on
the loopback server; milestones, re-grades, selection and the history show."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "llmbar_natural" / "judgments.csv"


def _example():
    spec = importlib.util.spec_from_file_location("evalgen_llmbar", ROOT / "benchmarks" / "evalgen_llmbar.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not DATA.exists(), reason="needs /work/shared/data/llmbar_natural (see PROVENANCE.md)")
def test_the_llmbar_example_shows_milestones_regrades_selection_and_history(tmp_path, fake_openai):
    example = _example()
    fake_openai.settings.answer_tokens = {"Y if the answer meets the criterion": ("Y", "N")}
    lines: list[str] = []
    results = example.run(tmp_path, batch_size=25, limit=70, base_url=fake_openai.base_url, model="loopback-judge",
                          echo=lines.append, first_batch=10)
    assert [r["returncode"] for r in results] == [0, 0, 0, 0], "\n".join(lines)
    cards = [r["card"] for r in results]

    def criterion_statuses(card):
        return set(card.loc[card["level"] == "criterion", "status"])

    assert criterion_statuses(cards[0]) == {"needs 10 more grades"} and cards[0]["coverage"].isna().all()  # 10 graded
    assert criterion_statuses(cards[1]) == {"selection starts at 50 grades"}  # 35 graded: numbers, no selection
    assert cards[1].loc[cards[1]["level"] == "assertion", "coverage"].notna().all()
    assert criterion_statuses(cards[2]) <= {"selected", "no variant within the false failure budget 0.2"}  # 60 graded
    if "selected" in criterion_statuses(cards[2]):
        assert (cards[2]["level"] == "selected set").sum() == 1

    # batch 3 re-grades two outputs of batch 1 with the same grade; batch 4 corrects two hurried grades of batch 1
    assert "re-graded 2 (a newer vote by the same annotator on the same item), label changed 0" in results[2]["stdout"]
    assert "re-graded 2 (a newer vote by the same annotator on the same item), label changed 2" in results[3]["stdout"]
    assert "grades re-graded 2 (same grader, output and criterion), grade changed 2" in results[3]["stdout"]

    con = duckdb.connect(str(tmp_path / "judge.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*), count(*) FILTER (WHERE changed) FROM grades").fetchone() == (70, 2)
        gold = example.single_outputs(limit=70).set_index("item_id")["label"]
        stored = dict(con.execute("SELECT item_id, grade FROM grades").fetchall())
        assert stored == gold.to_dict()  # after the corrections every grade is the gold one
        n_assertions = con.execute("SELECT count(DISTINCT criterion || '/' || assertion) FROM assertion_verdicts").fetchone()[0]
        assert n_assertions == 11
        assert con.execute("SELECT count(*), count(DISTINCT batch_number) FROM assertion_report_history").fetchone() == (4 * 11, 4)
        assert con.execute("SELECT count(*) FROM assertion_verdicts WHERE kind = 'llm' AND status = 'ok'").fetchone()[0] == 4 * 70  # four LLM variants, every output
    finally:
        con.close()
