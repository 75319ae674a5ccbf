"""The ingest gate helpers, the before/after report, annotator history and the ActiveLab ranking."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from judge_assets.config import BUNDLED_DATA_DIR
from judge_assets.core.consensus.active_learning import active_learning_item_scores, build_label_next, stored_votes
from judge_assets.core.labels import stored_label_set
from judge_assets.core.plots import plot_annotator_drift
from judge_assets.core.reports.changes import changes, snapshot
from judge_assets.core.reports.history import append_annotator_history
from judge_assets.core.sources.gate import admit_files, check_file, quarantine, stage_file, stored_column_types, unresolved_rejections
from judge_assets.core.sources.batches import JudgmentInputError, file_batch, record_batch, registered_batch
from judge_assets.core.consensus.votes import Votes


@pytest.fixture
def human_slice(tmp_path):
    """Forty MT-Bench human votes as a parquet file."""
    path = tmp_path / "inbox" / "slice.parquet"
    path.parent.mkdir()
    pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet").iloc[:40].to_parquet(path)
    return path


def test_check_file_accepts_a_valid_slice_against_the_stored_data(mt_bench_db, human_slice):
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    batch, schema = check_file(human_slice, stored_label_set(con).labels, stored_column_types(con))
    con.close()
    assert schema == "pairwise"
    assert batch.batch_id == file_batch(human_slice).batch_id


def test_check_file_refuses_a_value_that_does_not_fit_the_stored_type(tmp_path):
    path = tmp_path / "votes.jsonl"
    path.write_text('{"item_id": "q1", "annotator": "ann", "label": "yes", "score": "high"}\n')
    with pytest.raises(JudgmentInputError) as err:
        check_file(path, ("no", "yes"), {"score": "DOUBLE"})
    assert err.value.row == 1 and err.value.column == "score"
    assert "stored as DOUBLE" in str(err.value) and "'high'" in str(err.value)


def test_check_file_refuses_pairwise_votes_when_the_stored_classes_are_generic(human_slice):
    with pytest.raises(JudgmentInputError, match="do not fit the stored class set good, bad"):
        check_file(human_slice, ("good", "bad"))


def test_quarantine_moves_the_file_and_writes_the_reason_without_overwriting(tmp_path):
    rejected = tmp_path / "rejected"
    first = tmp_path / "bad.csv"
    first.write_text("x\n")
    moved = quarantine(first, "bad.csv, row 1, column 'judge': is empty", rejected)
    assert not first.exists() and moved == rejected / "bad.csv"
    assert (rejected / "bad.csv.error.txt").read_text().startswith("bad.csv, row 1, column 'judge'")
    first.write_text("y\n")
    again = quarantine(first, "another reason", rejected)
    assert again != moved and again.read_text() == "y\n" and moved.read_text() == "x\n"


def test_stage_file_keeps_the_original_batch_id_and_survives_removal_of_the_original(human_slice, tmp_path):
    original_id = file_batch(human_slice).batch_id
    batch = stage_file(human_slice, tmp_path / "batches")
    human_slice.unlink()
    assert batch.batch_id == original_id
    assert batch.path.name == f"{original_id}.parquet" and batch.path.is_file()
    assert len(pd.read_parquet(batch.path)) == 40


def _state(path, labels: dict[str, str], votes: list[tuple], llm_rows: int | None = None) -> duckdb.DuckDBPyConnection:
    """A database holding consensus_labels, judgments (item_id, annotator, label, batch_id, source_row) and optionally the LLM cache."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE consensus_labels (item_id VARCHAR, consensus_label VARCHAR)")
    con.executemany("INSERT INTO consensus_labels VALUES (?, ?)", list(labels.items()))
    con.execute("CREATE TABLE judgments (item_id VARCHAR, annotator VARCHAR, label VARCHAR, batch_id VARCHAR, source_row BIGINT)")
    con.executemany("INSERT INTO judgments VALUES (?, ?, ?, ?, ?)", votes)
    if llm_rows is not None:
        con.execute(f"CREATE TABLE llm_score_cache AS SELECT range AS n FROM range({llm_rows})")
    return con


def test_changes_reports_new_votes_items_regrades_and_changed_labels(tmp_path):
    old_votes = [("i1", "a1", "A", "b1", 1), ("i2", "a1", "B", "b1", 2), ("i2", "a2", "B", "b1", 3), ("i3", "a2", "A", "b1", 4)]
    con = _state(tmp_path / "before.duckdb", {"i1": "A", "i2": "B", "i3": "A"}, old_votes, llm_rows=8)
    before = snapshot(con, tmp_path / "snapshots")
    con.close()
    new_votes = [("i1", "a1", "A", "b1", 1), ("i2", "a1", "tie", "b2", 1), ("i2", "a2", "B", "b2", 2), ("i3", "a2", "A", "b1", 4),
                 ("i4", "a3", "B", "b2", 3), (*[f"i{n}" for n in (5,)], "a3", "B", "b2", 4)]
    labels = {"i1": "A", "i2": "tie", "i3": "B", "i4": "B", "i5": "B"}
    con = _state(tmp_path / "after.duckdb", labels, new_votes, llm_rows=10)
    report = changes(before, snapshot(con, tmp_path / "snapshots"), max_changes=1)
    con.close()
    assert (report.new_votes, report.new_items, report.new_annotators) == (2, 2, 1)
    assert report.n_changed_labels == 2 and report.changed_labels == [("i2", "B", "tie")]  # the first by item id
    assert (report.regraded, report.regrade_label_changed) == (2, 1)  # a re-grade that repeats its label counts too
    assert report.llm_requests == 2 and report.grades_regraded is None
    text = "\n".join(report.lines())
    assert "items whose label changed (consensus_labels): 2" in text and "i2: B → tie" in text and "… 1 more" in text
    assert "re-graded 2 (a newer vote by the same annotator on the same item), label changed 1" in text


def test_snapshot_of_the_foundation_counts_votes_and_has_no_llm_cache(mt_bench_db, tmp_path):
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    snap = snapshot(con, tmp_path)
    con.close()
    assert snap["votes"] == 5754 and snap["items"] == 2400 and snap["annotators"] == 66
    assert snap["llm_cache_rows"] is None
    assert duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{snap['votes_by_key']}')").fetchone()[0] == 5754


def _annotator_stats(con, quality: dict[str, float]) -> None:
    frame = pd.DataFrame(
        {
            "annotator": list(quality),
            "annotator_kind": "human",
            "annotator_group": "expert",
            "annotator_quality": list(quality.values()),
            "agreement_with_consensus": 0.5,
            "worst_class": 2,
            "num_examples_labeled": [10 * (i + 1) for i in range(len(quality))],
        }
    )
    con.register("stats_frame", frame)
    con.execute("CREATE OR REPLACE TABLE annotator_stats AS SELECT * FROM stats_frame")
    con.unregister("stats_frame")


def test_history_appends_one_snapshot_per_rebuild_keyed_by_the_latest_batch(tmp_path):
    con = duckdb.connect(str(tmp_path / "h.duckdb"))
    from judge_assets.core.sources.batches import Batch

    record_batch(con, Batch("b1", "file", "/x/b1.parquet"), "pairwise", 5)
    _annotator_stats(con, {"ann1": 0.9, "ann2": 0.6})
    assert append_annotator_history(con) == (1, "b1")
    record_batch(con, Batch("b2", "file", "/x/b2.parquet"), "pairwise", 7)
    _annotator_stats(con, {"ann1": 0.7, "ann2": 0.65})
    assert append_annotator_history(con) == (2, "b2")
    drift = con.execute(
        "SELECT snapshot, latest_batch_id, n_batches, annotator_quality FROM annotator_stats_history "
        "WHERE annotator = 'ann1' ORDER BY snapshot"
    ).fetchall()
    assert drift == [(1, "b1", 1, 0.9), (2, "b2", 2, 0.7)]
    fig = plot_annotator_drift(con.execute("SELECT * FROM annotator_stats_history").df(), top=1)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["ann2"]
    con.close()


def test_history_without_annotator_stats_says_what_to_run(tmp_path):
    con = duckdb.connect(str(tmp_path / "h.duckdb"))
    with pytest.raises(ValueError, match="annotator_stats does not exist yet"):
        append_annotator_history(con)


def _votes() -> Votes:
    frame = pd.DataFrame(
        {
            "item_id": ["agreed"] * 4 + ["split"] * 4,
            "annotator": ["a1", "a2", "a3", "a4"] * 2,
            "label": ["A", "A", "A", "A", "A", "B", "tie", "B"],
        }
    )
    return Votes.from_frame(frame, ("A", "B", "tie"), item_ids=["agreed", "split", "unseen"])


def test_active_learning_scores_a_disputed_item_below_a_unanimous_one():
    probs = np.array([[0.8, 0.1, 0.1], [0.4, 0.4, 0.2], [0.34, 0.33, 0.33]])
    scores = dict(zip(_votes().item_ids, active_learning_item_scores(_votes(), probs)))
    assert scores["split"] < scores["agreed"]
    assert all(0 <= s <= 1 for s in scores.values()) and len(scores) == 3


def test_active_learning_refuses_misaligned_or_improper_probabilities():
    with pytest.raises(ValueError, match=r"expected \(n_items, n_classes\) = \(3, 3\)"):
        active_learning_item_scores(_votes(), np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="summing to 1"):
        active_learning_item_scores(_votes(), np.full((3, 3), 0.5))


def test_label_next_ranks_every_mt_bench_item_with_its_text(mt_bench_db):
    con = duckdb.connect(str(mt_bench_db))
    con.execute("CREATE TABLE model_probs AS SELECT item_id, 0.4 AS p_A, 0.4 AS p_B, 0.2 AS p_tie, 'uniform' AS scorer FROM items")
    assert build_label_next(con) == 2400
    first = con.execute("SELECT * FROM label_next ORDER BY label_next_rank LIMIT 1").df().iloc[0]
    assert first["num_annotations"] == first["n_human_votes"] + first["n_llm_votes"] >= 1
    assert len(first["user_turns"]) == first["turn"] and len(first["answers_a"]) == first["turn"]
    ranks = [r[0] for r in con.execute("SELECT label_next_rank FROM label_next ORDER BY active_learning_score, item_id").fetchall()]
    assert ranks == list(range(1, 2401))
    con.execute("DELETE FROM model_probs WHERE item_id = (SELECT min(item_id) FROM items)")
    with pytest.raises(ValueError, match="model_probs has no row for 1 item"):
        build_label_next(con)
    con.close()


def test_label_next_equals_cleanlab_activelab_on_mt_bench_with_unlabelled_items(mt_bench_db):
    """The sparse engine against cleanlab's dense ``get_active_learning_scores``, on real votes with
    a varied prior, plus two items nobody labelled yet (scored from the prior alone)."""
    from cleanlab.multiannotator import get_active_learning_scores

    con = duckdb.connect(str(mt_bench_db))
    con.execute("INSERT INTO items (item_id) VALUES ('zz:unlabelled:1'), ('zz:unlabelled:2')")
    con.execute(
        "CREATE TABLE model_probs AS SELECT item_id, a / (a + b + c) AS p_A, b / (a + b + c) AS p_B, c / (a + b + c) AS p_tie "
        "FROM (SELECT item_id, 1 + hash(item_id) % 7 AS a, 1 + hash(item_id || 'b') % 5 AS b, 1 + hash(item_id || 't') % 3 AS c FROM items)"
    )
    assert build_label_next(con) == 2402
    got = con.execute("SELECT item_id, active_learning_score, num_annotations FROM label_next").df().set_index("item_id")
    probs = con.execute("SELECT item_id, p_A, p_B, p_tie FROM model_probs").df().set_index("item_id")
    votes = stored_votes(con, stored_label_set(con).labels)
    con.close()
    labelled = votes.num_annotations() > 0
    matrix = votes.to_matrix()[labelled]
    ids = list(votes.item_ids)
    ref, ref_unlabelled = get_active_learning_scores(
        matrix, probs.loc[matrix.index].to_numpy(), probs.loc[[i for i, ok in zip(ids, labelled) if not ok]].to_numpy()
    )
    np.testing.assert_array_equal(got.loc[matrix.index, "active_learning_score"].to_numpy(), ref)
    np.testing.assert_array_equal(got.loc[["zz:unlabelled:1", "zz:unlabelled:2"], "active_learning_score"].to_numpy(), ref_unlabelled)
    assert (got.loc[["zz:unlabelled:1", "zz:unlabelled:2"], "num_annotations"] == 0).all()


GENERIC_MESSAGE = (
    "the database holds pairwise votes (A/B/tie); this file holds labels in the generic schema "
    "(item_id, annotator, label): use a separate JUDGE_DB for it"
)


def _fingerprint(con) -> dict[str, tuple]:
    tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()]
    return {t: con.execute(f'SELECT count(*), md5(coalesce(string_agg(x::VARCHAR, \'\' ORDER BY x::VARCHAR), \'\')) FROM "{t}" x').fetchone() for t in tables}


def test_admit_refuses_a_generic_file_into_a_pairwise_database_and_changes_nothing(mt_bench_db, tmp_path):
    """Its labels even fit the stored class set (A, B, tie): only the schema tells it apart."""
    upload = tmp_path / "inbox" / "generic.csv"
    upload.parent.mkdir()
    upload.write_text("item_id,annotator,label\nq1,ann,A\nq1,bob,tie\n")
    con = duckdb.connect(str(mt_bench_db))
    before = _fingerprint(con)
    [admission] = admit_files(con, [upload], tmp_path / "batches", tmp_path / "rejected")
    assert admission.status == "refused"
    assert admission.message.startswith(f"refused: {upload.resolve()}: {GENERIC_MESSAGE}; moved to ")
    assert "\n" not in admission.message
    after = _fingerprint(con)
    assert after.pop("rejected_files")[0] == 1  # the refusal is recorded; nothing else changed
    assert after == before
    assert not upload.exists() and GENERIC_MESSAGE in (tmp_path / "rejected" / "generic.csv.error.txt").read_text()
    assert not (tmp_path / "batches").exists()


def test_admit_keeps_one_schema_per_database_from_the_first_file_on(tmp_path):
    """Into an empty database: a generic file is accepted, a pairwise file after it (same call) is refused."""
    generic, pairwise = tmp_path / "labels.jsonl", tmp_path / "votes.csv"
    generic.write_text('{"item_id": "q1", "annotator": "ann", "label": "good"}\n')
    pairwise.write_text("question_id,model_a,model_b,winner,judge\n81,gpt-4,claude-v1,model_a,ann\n")
    con = duckdb.connect(str(tmp_path / "judge.duckdb"))
    first, second = admit_files(con, [generic, pairwise], tmp_path / "batches", tmp_path / "rejected")
    assert (first.status, first.schema) == ("accepted", "generic")
    assert second.status == "refused"
    assert (
        "the database holds labels in the generic schema (item_id, annotator, label); "
        "this file holds pairwise votes (A/B/tie): use a separate JUDGE_DB for it"
    ) in second.message
    assert con.execute("SELECT batch_id FROM annotation_batches").fetchall() == [(first.batch.batch_id,)]


def test_check_file_reports_the_schema_before_the_labels(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("item_id,annotator,label\nq1,ann,pass\n")
    with pytest.raises(JudgmentInputError, match="this file holds labels in the generic schema") as err:
        check_file(path, ("A", "B", "tie"), schemas=frozenset({"pairwise"}))
    assert err.value.row is None and err.value.column is None


def _rejected_rows(con) -> list[tuple]:
    return con.execute("SELECT file, resolved, resolution FROM rejected_files ORDER BY rejected_at, rowid").fetchall()


def test_a_refused_file_is_recorded_until_a_file_of_its_name_passes_or_it_leaves_rejected(mt_bench_db, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    votes = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet").iloc[:4].drop(columns=["conversation_a", "conversation_b"])
    bad = votes.copy()
    bad.loc[1, "winner"] = "model_c"
    for name in ("typo.jsonl", "other.jsonl"):
        bad.to_json(inbox / name, orient="records", lines=True)
    con = duckdb.connect(str(mt_bench_db))
    admit_files(con, [inbox / "typo.jsonl", inbox / "other.jsonl"], tmp_path / "batches", inbox / "rejected")

    [first, second] = unresolved_rejections(con)
    assert (first.file, second.file) == ("typo.jsonl", "other.jsonl")
    assert first.reason.endswith("typo.jsonl, row 2, column 'winner': is not one of model_a, model_b, tie, tie (inconsistent) (value 'model_c')")
    assert first.moved_to == str(inbox / "rejected" / "typo.jsonl") and first.rejected_at is not None

    votes["judge"] = votes["judge"] + "_fixed"  # the fixed file passes the gate under the same name
    votes.to_json(inbox / "typo.jsonl", orient="records", lines=True)
    admit_files(con, [inbox / "typo.jsonl"], tmp_path / "batches", inbox / "rejected")
    (inbox / "rejected" / "other.jsonl").unlink()  # the user gave up on this one

    assert unresolved_rejections(con) == []
    [(_, typo_resolved, typo_how), (_, other_resolved, other_how)] = _rejected_rows(con)
    assert typo_resolved and typo_how.startswith("a file of that name passed the gate: accepted, batch typo-")
    assert other_resolved and other_how == "removed from rejected/"
    con.close()


def test_a_missing_file_is_refused_but_not_recorded_as_rejected(mt_bench_db, tmp_path):
    con = duckdb.connect(str(mt_bench_db))
    [admission] = admit_files(con, [tmp_path / "nowhere.csv"], tmp_path / "batches", tmp_path / "rejected")
    assert admission.status == "refused" and unresolved_rejections(con) == []
    con.close()


def test_an_unregistered_batch_is_a_one_line_input_error_naming_how_batches_are_added(mt_bench_db):
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    with pytest.raises(JudgmentInputError) as err:
        registered_batch(con, "typed-by-hand")
    con.close()
    assert str(err.value).startswith("annotation batch 'typed-by-hand': no such batch in annotation_batches")
    assert "`judge-assets ingest FILE`" in str(err.value) and "\n" not in str(err.value)
