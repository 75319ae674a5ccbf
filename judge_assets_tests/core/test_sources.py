"""Loading and validating annotation batches: both schemas, local files, HF-style folders, bad input."""

from __future__ import annotations

import json
import sys

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from judge_assets.config import BUNDLED_DATA_DIR
from judge_assets.core.sources.batches import (
    Batch,
    FileScan,
    JudgmentInputError,
    file_batch,
    load_batch,
    source_batches,
    validate_batch,
    write_batch,
)


def _pairwise_rows(n: int = 3) -> list[dict]:
    return [
        {"question_id": 81 + i, "model_a": "gpt-4", "model_b": "claude-v1", "winner": "model_a", "judge": f"expert_{i}", "turn": 1}
        for i in range(n)
    ]


def _write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_bundled_source_has_the_published_row_counts():
    batches = source_batches("bundled:mt_bench")
    assert [b.batch_id for b in batches] == ["mt_bench-human", "mt_bench-gpt4_pair"]
    tables = [load_batch(b) for b in batches]
    assert [t.num_rows for t in tables] == [3355, 2400]
    assert {validate_batch(t, b.label, allow_duplicates=True) for t, b in zip(tables, batches)} == {"pairwise"}


def test_bundled_human_file_holds_one_repeated_vote_which_strict_validation_refuses():
    batch = source_batches("bundled:mt_bench")[0]
    with pytest.raises(JudgmentInputError, match=r"row 1972, column 'judge': duplicate vote.*first at row 1970"):
        validate_batch(load_batch(batch), batch.label)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_local_files_load_through_duckdb_readers(tmp_path, suffix):
    rows = _pairwise_rows()
    path = tmp_path / f"batch{suffix}"
    frame = pd.DataFrame(rows)
    if suffix == ".jsonl":
        _write_jsonl(path, rows)
    elif suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    [batch] = source_batches(str(path))
    assert batch.kind == "file" and batch.batch_id.startswith("batch-")
    table = load_batch(batch)
    assert isinstance(table, FileScan) and table.num_rows == 3 and validate_batch(table, batch.label) == "pairwise"
    assert table.slice(0, 2).to_pylist() == [{k: r[k] for k in table.column_names} for r in rows[:2]]


def test_local_files_stream_into_duckdb_without_datasets_or_a_python_copy(tmp_path, monkeypatch):
    """The bundled parquet files go from DuckDB's reader straight into raw_judgments: the stored
    rows equal the file's, in file order, and `datasets` is never imported for them."""
    monkeypatch.setitem(sys.modules, "datasets", None)  # importing it now raises ImportError
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    for batch in source_batches("bundled:mt_bench"):
        scan = load_batch(batch)
        assert isinstance(scan, FileScan) and "read_parquet" in scan.sql
        assert write_batch(con, batch, scan, validate_batch(scan, batch.label, allow_duplicates=True)) == scan.num_rows
    stored = con.execute(
        "SELECT * EXCLUDE (batch_id, source, source_row, ingested_at) FROM raw_judgments WHERE batch_id = 'mt_bench-human' ORDER BY source_row"
    ).to_arrow_table()
    expected = pq.read_table(BUNDLED_DATA_DIR / "human.parquet")
    assert stored.to_pylist() == expected.to_pylist()
    assert con.execute("SELECT min(source_row), max(source_row), count(DISTINCT source_row) FROM raw_judgments "
                       "WHERE batch_id = 'mt_bench-gpt4_pair'").fetchone() == (1, 2400, 2400)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_text_files_keep_file_order_and_a_late_odd_value_is_named_by_its_row(tmp_path, suffix):
    """DuckDB reads text files in parallel; source_row is still the row in the file. Its sniffer reads
    the whole file, so a bad value far down makes the column text and validation names the row."""
    n = 30_000
    frame = pd.DataFrame({
        "question_id": np.arange(n), "model_a": "gpt-4", "model_b": "claude-v1", "winner": "tie",
        "judge": [f"j{i}" for i in range(n)], "turn": 1,
    })
    path = tmp_path / f"many{suffix}"
    write = (lambda f: f.to_csv(path, index=False)) if suffix == ".csv" else (lambda f: f.to_json(path, orient="records", lines=True))
    write(frame)
    batch = file_batch(path)
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    scan = load_batch(batch)
    write_batch(con, batch, scan, validate_batch(scan, batch.label))
    assert con.execute("SELECT count(*), count(*) FILTER (WHERE source_row = question_id + 1) FROM raw_judgments").fetchone() == (n, n)
    assert con.execute("SELECT column_type FROM (DESCRIBE raw_judgments) WHERE column_name = 'question_id'").fetchone() == ("BIGINT",)
    frame["question_id"] = frame["question_id"].astype(object)
    frame.loc[25_000, "question_id"] = "eighty"
    write(frame)
    with pytest.raises(JudgmentInputError, match=r"row 25001, column 'question_id': is not an integer \(value 'eighty'\)"):
        validate_batch(load_batch(file_batch(path)), str(path))


def test_conversations_of_a_jsonl_batch_join_the_stored_parquet_ones_by_field_name(tmp_path):
    """JSON objects name {role, content} in their own order; the stored column (from parquet) is
    STRUCT(content, role)[]: the insert matches the fields by name."""
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    parquet = tmp_path / "first.parquet"
    pq.write_table(pq.read_table(BUNDLED_DATA_DIR / "human.parquet").slice(0, 3), parquet)
    jsonl = tmp_path / "second.jsonl"
    _write_jsonl(jsonl, [{**r, "conversation_a": [{"role": "user", "content": "hi"}], "conversation_b": [{"role": "user", "content": "yo"}]}
                         for r in _pairwise_rows(2)])
    for path in (parquet, jsonl):
        batch = file_batch(path)
        scan = load_batch(batch)
        write_batch(con, batch, scan, validate_batch(scan, batch.label))
    assert con.execute("SELECT conversation_a[1].content, conversation_a[1].role FROM raw_judgments WHERE source LIKE '%second.jsonl' "
                       "ORDER BY source_row").fetchall() == [("hi", "user"), ("hi", "user")]


def test_a_csv_with_only_a_header_is_refused_with_its_name(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("question_id,model_a,model_b,winner,judge\n")
    with pytest.raises(JudgmentInputError, match="header.csv: contains no rows \\(only a header\\?\\)"):
        load_batch(file_batch(path))


def test_utf8_check_reads_in_chunks_and_names_the_line_past_a_chunk_boundary(tmp_path):
    path = tmp_path / "long.jsonl"
    row = json.dumps({**_pairwise_rows(1)[0], "judge": "Jos\u00e9 " + "x" * 200}, ensure_ascii=False).encode() + b"\n"
    count = (3 << 20) // len(row) + 1  # past three 1 MiB chunks, many characters split by a boundary
    path.write_bytes(row * count + b'{"judge": "Jos\xe9"}\n')
    with pytest.raises(JudgmentInputError, match=f"long.jsonl: line {count + 1} is not valid UTF-8 \\(byte 14\\)"):
        load_batch(file_batch(path))


def test_batch_id_follows_content_not_name(tmp_path):
    rows = _pairwise_rows()
    _write_jsonl(tmp_path / "a.jsonl", rows)
    _write_jsonl(tmp_path / "b.jsonl", rows)
    _write_jsonl(tmp_path / "c.jsonl", rows[:2])
    ids = [file_batch(tmp_path / n).batch_id.split("-")[-1] for n in ("a.jsonl", "b.jsonl", "c.jsonl")]
    assert ids[0] == ids[1] != ids[2]


def test_a_folder_gives_one_batch_per_file_so_files_may_differ(tmp_path):
    """Read as one dataset, these files failed with datasets' DatasetGenerationCastError, naming
    neither file nor column."""
    folder = tmp_path / "votes"
    folder.mkdir()
    pd.DataFrame(_pairwise_rows(2)).drop(columns="turn").to_csv(folder / "b_round.csv", index=False)
    _write_jsonl(folder / "a_round.jsonl", [{**r, "category": "writing"} for r in _pairwise_rows(3)])
    (folder / "notes.txt").write_text("not votes")
    (folder / ".hidden.csv").write_text("x\n")
    (folder / "sub").mkdir()
    pd.DataFrame(_pairwise_rows(1)).to_csv(folder / "sub" / "ignored.csv", index=False)

    batches = source_batches(str(folder))

    assert batches == [file_batch(folder / "a_round.jsonl"), file_batch(folder / "b_round.csv")]
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    for batch in batches:
        table = load_batch(batch)
        write_batch(con, batch, table, validate_batch(table, batch.label))
    assert con.execute("SELECT source, count(*), count(category), count(turn) FROM raw_judgments GROUP BY 1 ORDER BY 1").fetchall() == [
        (str(folder / "a_round.jsonl"), 3, 3, 3),
        (str(folder / "b_round.csv"), 2, 0, 0),
    ]


def test_a_folder_without_supported_files_or_with_splits_is_a_clear_error(tmp_path):
    folder = tmp_path / "dataset"
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text("---\nconfigs: []\n---\n")
    pd.DataFrame(_pairwise_rows()).to_parquet(folder / "data" / "train.parquet")
    with pytest.raises(JudgmentInputError, match=r"dataset: no \.csv, \.json, \.jsonl, \.parquet files in this folder \(sub-folders are not read\)"):
        source_batches(str(folder))
    with pytest.raises(JudgmentInputError, match="splits \\(train\\) apply to Hugging Face dataset ids"):
        source_batches(str(folder / "data"), ("train",))
    assert [b.kind for b in source_batches(str(folder / "data"))] == ["file"]


def test_hub_ids_keep_one_batch_per_split(tmp_path):
    """A Hub id names its splits; they load with `datasets.load_dataset(<id>, split=...)` (here on
    a folder laid out like the Hub repo, the same loader path without a network)."""
    assert source_batches("lmsys/mt_bench_human_judgments", ("human", "gpt4_pair")) == [
        Batch("mt_bench_human_judgments-human", "hf", "lmsys/mt_bench_human_judgments", "human"),
        Batch("mt_bench_human_judgments-gpt4_pair", "hf", "lmsys/mt_bench_human_judgments", "gpt4_pair"),
    ]
    folder = tmp_path / "mt_bench_human_judgments"
    (folder / "data").mkdir(parents=True)
    for split in ("human", "gpt4_pair"):
        table = pq.read_table(BUNDLED_DATA_DIR / f"{split}.parquet").slice(0, 50)
        pq.write_table(table, folder / "data" / f"{split}-00000-of-00001.parquet")
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n"
        "  - split: human\n    path: data/human-*.parquet\n"
        "  - split: gpt4_pair\n    path: data/gpt4_pair-*.parquet\n---\n"
    )
    batch = Batch("mt_bench_human_judgments-human", "hf", str(folder), "human")
    table = load_batch(batch)
    assert table.num_rows == 50 and "conversation_a" in table.column_names
    assert batch.label == f"{folder}[human]"


def test_generic_long_schema_is_detected(tmp_path):
    path = tmp_path / "long.jsonl"
    _write_jsonl(path, [{"item_id": 1, "annotator": "ann one", "label": "good"}, {"item_id": 1, "annotator": "b", "label": "bad"}])
    batch = file_batch(path)
    assert validate_batch(load_batch(batch), batch.label, ("good", "bad")) == "generic"
    with pytest.raises(JudgmentInputError, match=r"row 2, column 'label': is not in the class set good, ok \(value 'bad'\)"):
        validate_batch(load_batch(batch), batch.label, ("good", "ok"))


BAD_CASES = [
    ("missing column", lambda r: [{k: v for k, v in x.items() if k != "winner"} for x in r], None, "winner", "missing required column"),
    ("unknown winner", lambda r: r[:1] + [{**r[1], "winner": "model_c"}] + r[2:], 2, "winner", "is not one of model_a, model_b, tie"),
    ("wrong type", lambda r: r[:2] + [{**r[2], "question_id": "eighty"}], 3, "question_id", "is not an integer"),
    ("bad turn", lambda r: [{**r[0], "turn": 0}] + r[1:], 1, "turn", "is not an integer ≥ 1"),
    ("empty judge", lambda r: r[:1] + [{**r[1], "judge": ""}] + r[2:], 2, "judge", "is empty"),
    ("same model", lambda r: r[:2] + [{**r[2], "model_b": "gpt-4"}], 3, "model_b", "same model"),
]


@pytest.mark.parametrize("name,mutate,row,column,message", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_names_file_row_and_column(tmp_path, name, mutate, row, column, message):
    path = tmp_path / "bad.jsonl"
    _write_jsonl(path, mutate(_pairwise_rows()))
    batch = file_batch(path)
    with pytest.raises(JudgmentInputError) as info:
        validate_batch(load_batch(batch), batch.label)
    err = info.value
    assert err.source == str(path) and err.row == row and err.column == column
    assert str(path) in str(err) and message in str(err)
    if row is not None:
        assert f"row {row}, column '{column}'" in str(err)


def test_unreadable_and_empty_files_are_refused_with_their_name(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(JudgmentInputError, match="empty.jsonl: the file is empty"):
        load_batch(file_batch(empty))
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(_pairwise_rows(1)[0]).encode() + b"\n" + '{"judge": "Jos\xe9"}\n'.encode("latin-1"))
    with pytest.raises(JudgmentInputError, match="latin.jsonl: line 2 is not valid UTF-8"):
        load_batch(file_batch(latin))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question_id": 81, "model_a": \n')
    with pytest.raises(JudgmentInputError, match="broken.jsonl: cannot be read"):
        load_batch(file_batch(broken))


def test_a_failed_write_leaves_stored_rows_untouched(tmp_path):
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    path = tmp_path / "good.jsonl"
    _write_jsonl(path, _pairwise_rows())
    good = file_batch(path)
    write_batch(con, good, load_batch(good), "pairwise")
    before = con.execute("SELECT * FROM raw_judgments ORDER BY source_row").fetchall()
    clash = pa.table({"question_id": ["not-a-number"], "model_a": ["a"], "model_b": ["b"], "winner": ["tie"], "judge": ["x"]})
    bad = Batch("clash-1", "file", str(tmp_path / "clash.jsonl"))
    with pytest.raises(JudgmentInputError, match="clash.jsonl.*column 'question_id'.*type does not match"):
        write_batch(con, bad, clash, "pairwise")
    assert con.execute("SELECT * FROM raw_judgments ORDER BY source_row").fetchall() == before
    assert con.execute("SELECT batch_id FROM annotation_batches").fetchall() == [(good.batch_id,)]


def test_a_batch_of_the_other_schema_is_refused_at_the_write(tmp_path):
    """`judge-assets run` with a generic JUDGE_SOURCE on a pairwise database: the same one line as the gate."""
    con = duckdb.connect(str(tmp_path / "db.duckdb"))
    path = tmp_path / "good.jsonl"
    _write_jsonl(path, _pairwise_rows())
    good = file_batch(path)
    write_batch(con, good, load_batch(good), "pairwise")
    write_batch(con, good, load_batch(good), "pairwise")  # the same batch again is fine
    before = con.execute("SELECT * FROM raw_judgments ORDER BY source_row").fetchall()
    generic = tmp_path / "labels.jsonl"
    _write_jsonl(generic, [{"item_id": "q1", "annotator": "ann", "label": "A"}])
    batch = file_batch(generic)
    with pytest.raises(JudgmentInputError, match=r"labels.jsonl: the database holds pairwise votes \(A/B/tie\); this file holds labels in the generic schema"):
        write_batch(con, batch, load_batch(batch), "generic")
    assert con.execute("SELECT * FROM raw_judgments ORDER BY source_row").fetchall() == before
    assert con.execute("SELECT batch_id FROM annotation_batches").fetchall() == [(good.batch_id,)]


def test_one_grader_may_grade_several_criteria_of_one_output_but_not_one_criterion_twice(tmp_path):
    path = tmp_path / "grades.csv"
    path.write_text("item_id,annotator,label,criterion\no1,ann,good,concise\no1,ann,bad,on_topic\n")
    batch = file_batch(path)
    assert validate_batch(load_batch(batch), batch.label) == "generic"
    path.write_text("item_id,annotator,label,criterion\no1,ann,good,concise\no1,ann,bad,concise\n")
    batch = file_batch(path)
    with pytest.raises(JudgmentInputError, match="row 2, column 'annotator': duplicate vote"):
        validate_batch(load_batch(batch), batch.label)
