"""The inbox sensor, eager automation of the downstream assets, and the wiring of the ingest assets."""

from __future__ import annotations

import json
import os
import time

import dagster as dg
import duckdb
import pandas as pd
import pytest

from judge_assets.config import BUNDLED_DATA_DIR
from judge_assets.core.sources.batches import Batch, file_batch, record_batch
from judge_assets.definitions import defs as project_defs
from judge_assets.defs.automation import judge_assets_automation, with_automation
from judge_assets.defs.consensus import majority_vote_labels
from judge_assets.defs.reports import annotator_stats_history, label_next
from judge_assets.defs.resources import JudgeDuckDBResource, PipelineResource
from judge_assets.defs.sources import annotation_batches, annotation_inbox, mt_bench_questions, raw_judgments
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
    assert list(json.loads(result.cursor)) == ["fine.jsonl"]  # the refused file left the inbox
    assert not (inbox / "typo.jsonl").exists()
    reason = (inbox / "rejected" / "typo.jsonl.error.txt").read_text()
    assert "typo.jsonl, row 4, column 'winner': is not one of" in reason and "'model_c'" in reason
    con = duckdb.connect(str(mt_bench_db), read_only=True)
    assert con.execute("SELECT count(*) FROM annotation_batches").fetchone()[0] == batches_before + 1
    con.close()


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
