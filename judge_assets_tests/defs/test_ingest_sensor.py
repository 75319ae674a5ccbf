"""The inbox sensor, eager automation of the downstream assets, the wiring of the ingest assets (one run for a range of
batches, clear failures, the rejected-files check) and what every asset shows in the catalog (owner, code reference,
column schema, Markdown previews)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from judge_assets.config import BUNDLED_DATA_DIR
from judge_assets.core.sources.batches import Batch, file_batch, record_batch
from judge_assets.definitions import defs as project_defs
from judge_assets.defs.automation import judge_assets_automation, load_annotation_batch, with_automation
from judge_assets.defs.consensus import majority_vote_labels
from judge_assets.defs.metadata import frame_markdown, significant, table_metadata
from judge_assets.defs.reports import annotator_stats_history, label_next
from judge_assets.defs.resources import JudgeDuckDBResource, PipelineResource
from judge_assets.defs.sources import (
    annotation_batches,
    annotation_inbox,
    mt_bench_questions,
    no_unresolved_rejected_files,
    raw_judgments,
)
from judge_assets.defs.tables import COLUMN_DESCRIPTIONS
from judge_assets.defs.votes import annotator_matrix, items, judgments


def _skipped(result) -> str | None:
    """The skip message of a tick that requested nothing (a SkipReason or a SensorResult carrying one)."""
    if isinstance(result, dg.SkipReason):
        return result.skip_message
    if isinstance(result, dg.SensorResult) and not result.run_requests and result.skip_reason:
        return result.skip_reason.skip_message
    return None


def _drop(inbox, name: str, frame: pd.DataFrame):
    """Write ``frame`` into the inbox as a file old enough for the sensor to pick up."""
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


def _tick(instance, db, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"duckdb": JudgeDuckDBResource(database=str(db))})
    return annotation_inbox(context)


@pytest.fixture
def inbox(project_env):
    return project_env / "inbox"


def test_a_new_file_becomes_a_partition_and_a_run_once(inbox, mt_bench_db):
    votes = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet").iloc[:30]
    votes["judge"] = votes["judge"] + "_round2"
    path = _drop(inbox, "round2.parquet", votes)
    batch_id = file_batch(path).batch_id
    instance = dg.DagsterInstance.ephemeral()

    result = _tick(instance, mt_bench_db)
    assert isinstance(result, dg.SensorResult)
    assert [r.partition_key for r in result.run_requests] == [batch_id]
    assert [(r.partitions_def_name, list(r.partition_keys)) for r in result.dynamic_partitions_requests] == [
        (annotation_batches.name, [batch_id])
    ]
    assert list(json.loads(result.cursor)) == ["round2.parquet"]  # only files in the inbox: bounded
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    location = con.execute("SELECT location FROM annotation_batches WHERE batch_id = ?", [batch_id]).fetchone()[0]
    con.close()
    assert location == str(mt_bench_db.parent / "batches" / f"{batch_id}.parquet")
    assert len(pd.read_parquet(location)) == 30

    again = _tick(instance, mt_bench_db, cursor=result.cursor)
    assert _skipped(again)
    copy = inbox / "same_votes_other_name.parquet"
    copy.write_bytes(path.read_bytes())
    os.utime(copy, (time.time() - 60,) * 2)
    third = _tick(instance, mt_bench_db, cursor=result.cursor)
    assert _skipped(third) and path.exists()


def test_a_bad_file_is_quarantined_with_its_reason_and_nothing_is_registered(inbox, mt_bench_db):
    votes = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet").iloc[:5].drop(columns=["conversation_a", "conversation_b"])
    votes.loc[3, "winner"] = "model_c"
    _drop(inbox, "typo.jsonl", votes)
    good = _drop(inbox, "fine.jsonl", votes.iloc[:3])
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    batches_before = con.execute("SELECT count(*) FROM annotation_batches").fetchone()[0]
    con.close()

    result = _tick(dg.DagsterInstance.ephemeral(), mt_bench_db)

    good_id = file_batch(good).batch_id
    assert [r.partition_key for r in result.run_requests] == [good_id]
    cursor = json.loads(result.cursor)  # the refused file left the inbox; rejected/ is watched too
    assert sorted(cursor) == ["fine.jsonl", "rejected/typo.jsonl", "rejected/typo.jsonl.error.txt"]
    assert not (inbox / "typo.jsonl").exists()
    reason = (inbox / "rejected" / "typo.jsonl.error.txt").read_text()
    assert "typo.jsonl, row 4, column 'winner': is not one of" in reason and "'model_c'" in reason
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    assert con.execute("SELECT count(*) FROM annotation_batches").fetchone()[0] == batches_before + 1
    assert con.execute("SELECT file, resolved FROM rejected_files").fetchall() == [("typo.jsonl", False)]
    con.close()
    [check] = result.asset_events  # the inbox turns red in the UI at once, without a run
    assert (check.check_name, check.passed) == ("no_unresolved_rejected_files", False)


def test_a_refused_file_is_named_on_the_tick_and_turns_the_check_red_until_it_leaves_rejected(inbox, mt_bench_db):
    votes = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet").iloc[:5].drop(columns=["conversation_a", "conversation_b"])
    votes.loc[1, "turn"] = 0
    _drop(inbox, "round3.jsonl", votes)
    instance = dg.DagsterInstance.ephemeral()

    refused = _tick(instance, mt_bench_db)

    said = _skipped(refused)
    assert said.startswith(f"refused: {inbox / 'round3.jsonl'}, row 2, column 'turn': is not an integer ≥ 1 (value '0')")
    assert f"moved to {inbox / 'rejected' / 'round3.jsonl'} (reason in round3.jsonl.error.txt); none of its votes were stored. " \
        "1 refused annotation file(s) wait in rejected/: round3.jsonl — fix each and drop it into the inbox again" in said
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    [(file, why, resolved)] = con.execute("SELECT file, reason, resolved FROM rejected_files").fetchall()
    con.close()
    assert (file, resolved) == ("round3.jsonl", False) and "row 2, column 'turn'" in why
    [check] = refused.asset_events
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "round3.jsonl" in check.metadata["rejected_files"].value and "row 2, column 'turn'" in check.metadata["rejected_files"].value

    assert _tick(instance, mt_bench_db, cursor=refused.cursor).asset_events == []  # nothing changed: the database is not opened
    (inbox / "rejected" / "round3.jsonl").unlink()
    cleared = _tick(instance, mt_bench_db, cursor=refused.cursor)
    assert _skipped(cleared) == f"no new files in {inbox}. no refused annotation file waits in rejected/"
    [check] = cleared.asset_events
    assert check.passed
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    assert con.execute("SELECT resolved, resolution FROM rejected_files").fetchall() == [(True, "removed from rejected/")]
    con.close()


def test_the_rejections_check_runs_with_the_batch_load(inbox, mt_bench_db):
    votes = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet").iloc[:5].drop(columns=["conversation_a", "conversation_b"])
    votes.loc[2, "judge"] = ""
    _drop(inbox, "empty_judge.jsonl", votes)
    instance = dg.DagsterInstance.ephemeral()
    _tick(instance, mt_bench_db)
    instance.add_dynamic_partitions(annotation_batches.name, ["mt_bench-human"])
    wiring = dg.Definitions(  # the job `judge-assets ingest` and the sensor's runs execute, on this database
        assets=[raw_judgments], asset_checks=[no_unresolved_rejected_files], jobs=[load_annotation_batch],
        resources={"duckdb": JudgeDuckDBResource(database=str(mt_bench_db))},
    )
    result = wiring.resolve_job_def("load_annotation_batch").execute_in_process(instance=instance, partition_key="mt_bench-human")
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.description.startswith("1 refused annotation file(s) wait in rejected/: empty_judge.jsonl")


def test_files_still_being_written_are_left_for_the_next_tick(inbox, mt_bench_db):
    inbox.mkdir(parents=True)
    (inbox / "half.parquet").write_bytes(b"PAR1 not yet complete")
    (inbox / "upload.csv.partial").write_text("question_id\n")
    result = _tick(dg.DagsterInstance.ephemeral(), mt_bench_db)
    assert _skipped(result)
    assert (inbox / "half.parquet").exists() and not (inbox / "rejected").exists()


def test_project_assets_are_eager_and_partitions_are_left_to_the_sensor():
    graph = project_defs.resolve_asset_graph()
    conditions = {key.to_user_string(): graph.get(key).automation_condition for key in graph.get_all_asset_keys()}
    assert conditions["raw_judgments"] is None
    assert conditions["judgments"].get_label() == "eager" and conditions["label_next"].get_label() == "eager"
    dg.Definitions.validate_loadable(project_defs)
    assert {s.name for s in project_defs.sensors} == {"annotation_inbox", "judge_assets_automation"}
    assert all(s.default_status == dg.DefaultSensorStatus.STOPPED for s in (annotation_inbox, judge_assets_automation))


def test_a_new_partition_triggers_the_downstream_rebuild_once(tmp_path):
    db = tmp_path / "judge.duckdb"
    resources = {"duckdb": JudgeDuckDBResource(database=str(db)), "pipeline": PipelineResource(llm_annotators="gpt4_pair")}
    assets = with_automation([raw_judgments, mt_bench_questions, judgments, items, annotator_matrix, majority_vote_labels])
    first = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet").iloc[:200]
    second = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet").iloc[200:260]
    instance = dg.DagsterInstance.ephemeral()
    con = duckdb.connect(str(db))
    for name, frame in (("b1", first), ("b2", second)):
        frame.to_parquet(tmp_path / f"{name}.parquet")
        record_batch(con, Batch(name, "file", str(tmp_path / f"{name}.parquet")))
    con.close()
    instance.add_dynamic_partitions(annotation_batches.name, ["b1"])
    assert dg.materialize(assets, instance=instance, resources=resources, selection="key:raw_judgments", partition_key="b1").success
    assert dg.materialize(assets, instance=instance, resources=resources, selection="not key:raw_judgments").success

    automation_defs = dg.Definitions(assets=assets, resources=resources)
    settled = dg.evaluate_automation_conditions(automation_defs, instance)
    assert settled.total_requested == 0

    instance.add_dynamic_partitions(annotation_batches.name, ["never_loaded", "b2"])  # a failed batch does not block
    assert dg.materialize(assets, instance=instance, resources=resources, selection="key:raw_judgments", partition_key="b2").success
    after = dg.evaluate_automation_conditions(automation_defs, instance, cursor=settled.cursor)
    requested = {key.to_user_string() for a in assets for key in a.keys if after.get_num_requested(key)}
    downstream = {key.to_user_string() for a in assets for key in a.keys} - {"raw_judgments", "mt_bench_questions"}
    assert requested == downstream and after.get_num_requested(dg.AssetKey("judgments")) == 1
    repeat = dg.evaluate_automation_conditions(automation_defs, instance, cursor=after.cursor)
    assert repeat.total_requested == 0


def test_the_sensor_skips_the_tick_while_another_process_writes_the_database(inbox, mt_bench_db, monkeypatch):
    import subprocess
    import sys

    import judge_assets.defs.sources as ingest_defs

    monkeypatch.setattr(ingest_defs, "SENSOR_DB_WAIT_S", 0.3)
    path = _drop(inbox, "later.parquet", pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet").iloc[:3])
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys; con = duckdb.connect({str(mt_bench_db)!r}); print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = _tick(dg.DagsterInstance.ephemeral(), mt_bench_db)
    finally:
        holder.communicate("", timeout=30)
    assert _skipped(result) and "locked by another process" in _skipped(result)
    assert path.exists()
    retry = _tick(dg.DagsterInstance.ephemeral(), mt_bench_db)
    assert [r.partition_key for r in retry.run_requests] == [file_batch(path).batch_id]


def test_history_and_label_next_assets_materialize_with_a_drift_plot(mt_bench_db):
    con = duckdb.connect(str(mt_bench_db))
    con.execute(
        "CREATE TABLE annotator_stats AS SELECT annotator, any_value(annotator_kind) AS annotator_kind, 'expert' AS annotator_group, "
        "0.8 AS annotator_quality, 0.7 AS agreement_with_consensus, 0 AS worst_class, count(*) AS num_examples_labeled "
        "FROM judgments GROUP BY annotator"
    )
    con.execute("CREATE TABLE model_probs AS SELECT item_id, 0.45 AS p_A, 0.45 AS p_B, 0.1 AS p_tie, 'uniform' AS scorer FROM items")
    con.close()
    resources = {"duckdb": JudgeDuckDBResource(database=str(mt_bench_db))}
    for _ in range(2):
        result = dg.materialize([annotator_stats_history, label_next], resources=resources)
        assert result.success
    history = result.asset_materializations_for_node("annotator_stats_history")[0].metadata
    assert history["snapshot"].value == 2 and history["latest_batch_id"].value == "mt_bench-gpt4_pair"
    assert history["quality_over_batches"].value.startswith("![plot](data:image/png;base64,")
    ranked = result.asset_materializations_for_node("label_next")[0].metadata
    assert ranked["items"].value == 2400 and ranked["unlabelled_items"].value == 0


def _two_batches(tmp_path) -> tuple[Path, dg.DagsterInstance]:
    """A database with two registered file batches (MT-Bench questions 81-85 and 86-90), both partitions on an instance."""
    db = tmp_path / "judge.duckdb"
    human = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet")
    con = duckdb.connect(str(db))
    for name, questions in (("b1", (81, 85)), ("b2", (86, 90))):
        human[human.question_id.between(*questions)].to_parquet(tmp_path / f"{name}.parquet")
        record_batch(con, Batch(name, "file", str(tmp_path / f"{name}.parquet")))
    con.close()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(annotation_batches.name, ["b1", "b2"])
    return db, instance


def test_one_run_loads_every_batch_of_a_partition_range(tmp_path):
    db, instance = _two_batches(tmp_path)
    assert raw_judgments.backfill_policy == dg.BackfillPolicy.single_run()  # a backfill of all batches is one run
    result = dg.materialize(
        [raw_judgments], instance=instance, resources={"duckdb": JudgeDuckDBResource(database=str(db))},
        tags={"dagster/asset_partition_range_start": "b1", "dagster/asset_partition_range_end": "b2"},
    )
    assert result.success
    con = duckdb.connect(str(db), read_only=True)
    counts = dict(con.execute("SELECT batch_id, count(*) FROM raw_judgments GROUP BY 1").fetchall())
    con.close()
    human = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet")
    assert counts == {"b1": int(human.question_id.between(81, 85).sum()), "b2": int(human.question_id.between(86, 90).sum())}
    assert instance.get_materialized_partitions(raw_judgments.key) == {"b1", "b2"}
    metadata = result.asset_materializations_for_node("raw_judgments")[0].metadata
    assert "| b1 |" in metadata["rows_by_batch"].value and "| b2 |" in metadata["rows_by_batch"].value
    assert "batch_id" in {c.name for c in metadata["dagster/column_schema"].value.columns}


def test_a_partition_added_by_hand_fails_with_one_line_and_writes_nothing(tmp_path):
    db, instance = _two_batches(tmp_path)
    instance.add_dynamic_partitions(annotation_batches.name, ["typed-by-hand"])  # the UI's "Add a partition"
    result = dg.materialize(
        [raw_judgments], instance=instance, resources={"duckdb": JudgeDuckDBResource(database=str(db))}, raise_on_error=False,
        tags={"dagster/asset_partition_range_start": "b1", "dagster/asset_partition_range_end": "typed-by-hand"},
    )
    assert not result.success
    [failure] = result.get_step_failure_events()
    error = failure.step_failure_data.error
    description = failure.step_failure_data.user_failure_data.description
    assert description == (
        "annotation batch 'typed-by-hand': no such batch in annotation_batches, so there is no file to load; batches are added "
        "by `judge-assets run` (the configured JUDGE_SOURCE), `judge-assets ingest FILE` or a file in the inbox; remove a "
        "partition added by mistake on the raw_judgments page: ▾ beside Materialize… → Delete partitions"
    )
    assert error.cls_name == "Failure" and error.cause is None and error.context is None  # no KeyError trace behind it
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'raw_judgments'").fetchone()[0] == 0
    con.close()


def test_a_bad_batch_fails_the_run_with_the_gate_message(tmp_path):
    db, instance = _two_batches(tmp_path)
    frame = pd.read_parquet(tmp_path / "b2.parquet")
    frame.loc[frame.index[0], "winner"] = "model_c"
    frame.to_parquet(tmp_path / "b2.parquet")
    result = dg.materialize(
        [raw_judgments], instance=instance, resources={"duckdb": JudgeDuckDBResource(database=str(db))}, raise_on_error=False,
        partition_key="b2",
    )
    [failure] = result.get_step_failure_events()
    assert failure.step_failure_data.user_failure_data.description.startswith(
        f"{tmp_path / 'b2.parquet'}, row 1, column 'winner': is not one of model_a, model_b, tie"
    )
    assert failure.step_failure_data.error.cause is None


# --- every asset reads like a table in a catalog -------------------------------------------------------------


def test_every_asset_has_an_owner_and_a_code_reference_relative_to_the_project():
    graph = project_defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners == ["team:judge-assets"], key
        labels = [r.label for r in node.metadata["dagster/code_references"].code_references]
        assert labels and all(not label.startswith("/") for label in labels), (key, labels)
        assert all(Path(r.file_path).is_file() for r in node.metadata["dagster/code_references"].code_references)
        assert "/work/" not in (node.description or "") and str(Path.home()) not in (node.description or "")
    references = lambda name: [r.label for r in graph.get(dg.AssetKey(name)).metadata["dagster/code_references"].code_references]  # noqa: E731
    assert re.fullmatch(r"judge_assets/defs/votes\.py:\d+", references("judgments")[0])
    assert references("judge_human_agreement")[0] == "dbt_like_sql/judge_human_agreement.sql"


def test_table_metadata_has_the_column_schema_with_the_declared_descriptions(mt_bench_db):
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    metadata = table_metadata(con, "judgments", preview_rows=3)
    con.close()
    columns = {c.name: c for c in metadata["dagster/column_schema"].value.columns}
    assert columns["label_code"].type == "INTEGER" and columns["flipped"].type == "BOOLEAN"
    assert columns["flipped"].description.startswith("true when the vote named the models in the other order")
    assert all(columns[c].description for c in ("item_id", "annotator", "label", "batch_id"))
    for table in ("judgments", "items", "consensus_labels", "annotator_stats", "model_probs", "judge_report_card"):
        assert len(COLUMN_DESCRIPTIONS[table]) >= 4, table


def test_markdown_previews_escape_item_ids_and_line_breaks_and_round_floats():
    frame = pd.DataFrame({
        "item_id": ["81:1:alpaca-13b|gpt-4", "82:2:a\\|b|c"],
        "answer": ["first line\nsecond | line", "*not bold* <b>"],
        "quality": [0.123456789, 12345.678],
        "n": [3, None],
    })
    lines = frame_markdown(frame).splitlines()
    assert lines[0] == "| item\\_id | answer | quality | n |" and lines[1] == "|---|---|---|---|"
    assert lines[2] == "| 81:1:alpaca-13b\\|gpt-4 | first line second \\| line | 0.1235 | 3 |"
    assert lines[3] == "| 82:2:a\\\\\\|b\\|c | \\*not bold\\* \\<b\\> | 12350 |  |"
    assert all(line.count("|") - line.count("\\|") == 5 for line in lines)  # every row has its four cells
    assert significant(0.000123456) == 0.0001235 and significant(98765.4) == 98770.0
