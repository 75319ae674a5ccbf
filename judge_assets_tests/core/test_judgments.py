"""Votes and items: canonical order, flips, ties, the duplicate rule, and the MT-Bench counts."""

from __future__ import annotations

import json

import duckdb
import pytest

from judge_assets.core.keys import item_key, item_key_sql
from judge_assets.core.labels import stored_label_set
from judge_assets.core.votes.judgments import build_items, build_judgments
from judge_assets.core.sources.batches import file_batch, load_batch, validate_batch, write_batch


def test_mt_bench_counts(mt_bench_db):
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    raw = dict(con.execute("SELECT batch_id, count(*) FROM raw_judgments GROUP BY 1").fetchall())
    assert raw == {"mt_bench-human": 3355, "mt_bench-gpt4_pair": 2400}
    kinds = con.execute(
        "SELECT annotator_kind, count(DISTINCT annotator), count(DISTINCT item_id), count(*) FROM judgments GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert kinds == [("human", 65, 1814, 3354), ("llm", 1, 2400, 2400)]
    assert con.execute("SELECT DISTINCT annotator FROM judgments WHERE annotator_kind = 'llm'").fetchall() == [("gpt4_pair",)]
    assert stored_label_set(con).labels == ("A", "B", "tie")
    assert con.execute("SELECT count(*) FROM items").fetchone()[0] == 2400
    assert con.execute("SELECT count(*) FROM items WHERE n_human_votes > 0").fetchone()[0] == 1814
    # every item has a category and the texts a judge needs, up to the judged turn
    assert con.execute(
        "SELECT count(*) FROM items WHERE category IS NULL OR len(user_turns) <> turn OR len(answers_a) <> turn OR len(answers_b) <> turn"
    ).fetchone()[0] == 0


def test_mt_bench_repeated_vote_keeps_one(mt_bench_db):
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    key = item_key(128, 1, "gpt-3.5-turbo", "claude-v1")
    assert con.execute("SELECT label FROM judgments WHERE item_id = ? AND annotator = 'author_0'", [key]).fetchall() == [("tie",)]


def test_items_show_answers_in_canonical_order(mt_bench_db):
    """A row stored as (gpt-4, claude-v1) must show claude-v1's answer as A."""
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    raw = con.execute(
        "SELECT question_id, turn, model_a, model_b, conversation_a, conversation_b FROM raw_judgments "
        "WHERE model_a > model_b AND turn = 2 LIMIT 1"
    ).fetchone()
    qid, turn, ma, mb, conv_a, conv_b = raw
    answers_a, answers_b, model_a = con.execute(
        "SELECT answers_a, answers_b, model_a FROM items WHERE item_id = ?", [item_key(qid, turn, ma, mb)]
    ).fetchone()
    assert model_a == mb
    assert answers_a == [m["content"] for m in conv_b if m["role"] == "assistant"][:2]
    assert answers_b == [m["content"] for m in conv_a if m["role"] == "assistant"][:2]


def _ingest(con, tmp_path, name, rows):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    batch = file_batch(path)
    table = load_batch(batch)
    write_batch(con, batch, table, validate_batch(table, batch.label, allow_duplicates=True))


def test_flip_tie_and_duplicate_rules(tmp_path):
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    _ingest(con, tmp_path, "one.jsonl", [
        # stored in canonical order: winner kept
        {"question_id": 81, "model_a": "alpaca-13b", "model_b": "gpt-4", "winner": "model_b", "judge": "h1", "turn": 1},
        # stored reversed: model_a (gpt-4) wins → canonical B
        {"question_id": 81, "model_a": "gpt-4", "model_b": "alpaca-13b", "winner": "model_a", "judge": "h2", "turn": 1},
        # reversed, model_b (alpaca) wins → canonical A
        {"question_id": 81, "model_a": "gpt-4", "model_b": "alpaca-13b", "winner": "model_b", "judge": "h3", "turn": 1},
        {"question_id": 81, "model_a": "gpt-4", "model_b": "alpaca-13b", "winner": "tie (inconsistent)", "judge": "gpt4_pair", "turn": 1},
        # h1 votes again on the same item (other order, later row): the later vote counts
        {"question_id": 81, "model_a": "gpt-4", "model_b": "alpaca-13b", "winner": "tie", "judge": "h1", "turn": 1},
        # turn defaults to 1 when missing
        {"question_id": 82, "model_a": "alpaca-13b", "model_b": "gpt-4", "winner": "model_a", "judge": "h1"},
    ])
    summary = build_judgments(con, ("gpt4_pair",))
    assert summary.duplicates_dropped == 1 and summary.n_votes == 5 and summary.n_items == 2
    votes = dict(
        con.execute("SELECT annotator, label FROM judgments WHERE item_id = '81:1:alpaca-13b|gpt-4'").fetchall()
    )
    assert votes == {"h1": "tie", "h2": "B", "h3": "A", "gpt4_pair": "tie"}
    assert con.execute("SELECT annotator_kind FROM judgments WHERE annotator = 'gpt4_pair'").fetchone() == ("llm",)
    assert con.execute("SELECT label, turn FROM judgments WHERE question_id = 82").fetchall() == [("A", 1)]
    # a later batch overrides an earlier one for the same (item, annotator)
    _ingest(con, tmp_path, "two.jsonl", [
        {"question_id": 81, "model_a": "alpaca-13b", "model_b": "gpt-4", "winner": "model_a", "judge": "h2", "turn": 1},
    ])
    assert build_judgments(con, ("gpt4_pair",)).duplicates_dropped == 2
    assert con.execute("SELECT label FROM judgments WHERE annotator = 'h2'").fetchall() == [("A",)]


def test_generic_schema_infers_or_checks_the_class_set(tmp_path):
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    _ingest(con, tmp_path, "long.jsonl", [
        {"item_id": "x", "annotator": "a", "label": "pass", "prompt": "2+2?", "response_a": "4"},
        {"item_id": "x", "annotator": "b", "label": "fail"},
        {"item_id": "y", "annotator": "a", "label": "fail"},
    ])
    assert build_judgments(con, ()).labels == ("fail", "pass")
    assert build_judgments(con, (), ("pass", "fail")).labels == ("pass", "fail")
    assert con.execute("SELECT label, label_code FROM judgments WHERE item_id = 'x' AND annotator = 'a'").fetchone() == ("pass", 0)
    with pytest.raises(ValueError, match=r"long.jsonl, row 1, column 'label': 'pass' is not in the class set \['ok', 'fail'\]"):
        build_judgments(con, (), ("ok", "fail"))
    build_judgments(con, ())
    build_items(con)
    assert con.execute("SELECT user_turns, answers_a FROM items WHERE item_id = 'x'").fetchone() == (["2+2?"], ["4"])


HOSTILE_NAMES = ["x|y", "z", "x", "y|z", "a\\", "\\|", "|", "\\\\", "back\\slash", "it's", "ünï|cödé", "q:1:r", "A", "a"]


def test_python_and_sql_item_keys_agree_on_hostile_names():
    pairs = [(a, b) for a in HOSTILE_NAMES for b in HOSTILE_NAMES if a != b]
    con = duckdb.connect()
    con.execute("CREATE TABLE p (question_id BIGINT, turn INTEGER, model_a VARCHAR, model_b VARCHAR)")
    con.executemany("INSERT INTO p VALUES (?, ?, ?, ?)", [(81, 2, a, b) for a, b in pairs])
    sql_keys = [r[0] for r in con.execute(f"SELECT {item_key_sql('question_id', 'turn', 'model_a', 'model_b')} FROM p").fetchall()]
    assert sql_keys == [item_key(81, 2, a, b) for a, b in pairs]
    # one key per unordered pair, and never the same key for two pairs
    assert len(set(sql_keys)) == len(pairs) // 2


def test_names_with_the_separator_are_two_items_end_to_end(tmp_path):
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    _ingest(con, tmp_path, "pipes.jsonl", [
        {"question_id": 81, "model_a": "x|y", "model_b": "z", "winner": "model_a", "judge": "h1", "turn": 1},
        {"question_id": 81, "model_a": "x", "model_b": "y|z", "winner": "model_b", "judge": "h1", "turn": 1},
    ])
    summary = build_judgments(con, ())
    assert summary.n_items == 2 and summary.duplicates_dropped == 0
    rows = con.execute("SELECT item_id, model_a, model_b, label FROM judgments ORDER BY model_a").fetchall()
    assert rows == [(item_key(81, 1, "x", "y|z"), "x", "y|z", "B"), (item_key(81, 1, "x|y", "z"), "x|y", "z", "A")]
    build_items(con)
    assert con.execute("SELECT count(*) FROM items").fetchone()[0] == 2


def test_mt_bench_item_keys_are_unchanged(mt_bench_db):
    """MT-Bench names hold no `|` or `\\`: its keys are the plain "{question_id}:{turn}:{model_a}|{model_b}"."""
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    assert con.execute(
        "SELECT count(*) FROM items WHERE item_id <> question_id || ':' || turn || ':' || model_a || '|' || model_b"
    ).fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM items WHERE item_id = '81:1:alpaca-13b|gpt-4'").fetchone()[0] == 1


def test_items_come_from_the_raw_votes_and_panel_verdicts_join_judgments(tmp_path):
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    _ingest(con, tmp_path, "single.jsonl", [
        {"item_id": "x", "annotator": "h1", "label": "pass", "prompt": "2+2?", "response": "4", "reference": "4", "topic": "math"},
        {"item_id": "x", "annotator": "h2", "label": "fail"},
        {"item_id": "y", "annotator": "h1", "label": "fail", "prompt": "Capital of France?", "response": "Lyon", "criterion": "Correct?"},
    ])
    build_items(con)  # no judgments table needed: items read the canonical raw votes
    assert con.execute("SELECT item_id, user_turns, response, reference, criterion, topic, n_human_votes FROM items ORDER BY 1").fetchall() == [
        ("x", ["2+2?"], ["4"], ["4"], None, "math", 2), ("y", ["Capital of France?"], ["Lyon"], [None], "Correct?", None, 1),
    ]
    con.execute(
        "CREATE TABLE llm_judge_scores AS SELECT * FROM (VALUES "
        "('x', 'pf:m', 'ok', 'pass', ['pass', 'fail']), ('y', 'pf:m', 'error:timeout', NULL, ['pass', 'fail']), "
        "('x', 'likert:m', 'ok', '3', ['1', '2', '3'])) AS t(item_id, annotator, status, verdict, verdict_labels)"
    )
    summary = build_judgments(con, (), ("pass", "fail"))
    assert con.execute("SELECT item_id, annotator, annotator_kind, label, batch_id FROM judgments WHERE annotator_kind = 'llm'").fetchall() == [
        ("x", "pf:m", "llm", "pass", None),
    ]
    assert (summary.panel_votes, summary.panel_voters, summary.scores_only) == (1, ("pf:m",), ("likert:m",))
    assert summary.n_votes == 4 and summary.n_annotators == 3


def test_an_items_text_is_the_newest_among_equally_long_ones(tmp_path):
    """Two batches carry different, equally long responses for one item: the newer batch's is shown,
    on every rebuild (not whichever row the scan meets first)."""
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    _ingest(con, tmp_path, "first.jsonl", [{"item_id": "x", "annotator": "h1", "label": "pass", "prompt": "2+2?", "response": "four"}])
    _ingest(con, tmp_path, "second.jsonl", [{"item_id": "x", "annotator": "h2", "label": "pass", "prompt": "2+2?", "response": "FOUR"}])
    for _ in range(3):
        build_items(con)
        assert con.execute("SELECT response FROM items").fetchall() == [(["FOUR"],)]


def test_an_items_other_columns_are_the_newest_votes_non_null_values(tmp_path):
    """Votes of one item that disagree on its category, reference, criterion or an extra column:
    the item shows the newest vote's value, and an older one where the newest vote has none."""
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    old = {"item_id": "x", "label": "pass", "response": "four", "category": "math", "reference": "4", "criterion": "correct", "source_url": "a"}
    _ingest(con, tmp_path, "first.jsonl", [{**old, "annotator": "h1"}])
    _ingest(con, tmp_path, "second.jsonl", [{**old, "annotator": "h2", "category": "arithmetic", "reference": "four", "source_url": None}])
    for _ in range(3):
        build_items(con)
        row = con.execute("SELECT category, reference, criterion, source_url FROM items").fetchall()
        assert row == [("arithmetic", ["four"], "correct", "a")]
