"""Declarative automation: a batch rebuilds every layer it can change in one evaluation; the
evaluation assets follow their own cadence (daily after new data, 10% growth, or on demand)."""

from __future__ import annotations

import warnings

import dagster as dg
import duckdb
import pandas as pd
import pytest

from judge_assets.config import BUNDLED_DATA_DIR
from judge_assets.core.sources.batches import Batch, record_batch
from judge_assets.defs.automation import (
    EVALUATION_GROWTH,
    INGEST_SELECTION,
    ROWS_SEEN_METADATA,
    RawJudgmentsGrew,
    evaluation_cadence,
    judge_assets_automation,
    with_automation,
)
from judge_assets.defs.resources import JudgeDuckDBResource
from judge_assets.defs.sources import annotation_batches, raw_judgments

RAW = dg.AssetKey("raw_judgments")
EVALUATION_ASSETS = {"consensus_benchmark", "annotator_stats_history"}


@pytest.fixture(scope="module")
def project():
    from judge_assets.definitions import defs

    return defs


class Instance:
    """An ephemeral instance where runs are stood in for by reported materializations."""

    def __init__(self, defs: dg.Definitions):
        self.defs = defs
        self.instance = dg.DagsterInstance.ephemeral()
        self.keys = sorted(defs.resolve_asset_graph().get_all_asset_keys(), key=lambda k: k.to_user_string())
        self.cursor = None
        self.rows = 0

    def report(self, key: dg.AssetKey, partition: str | None = None, **metadata) -> None:
        self.instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition, metadata=metadata))

    def evaluate(self) -> set[str]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = dg.evaluate_automation_conditions(self.defs, self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        return {k.to_user_string() for k in self.keys if result.get_num_requested(k)}

    def batch(self, name: str, rows: int) -> None:
        self.rows = rows
        self.instance.add_dynamic_partitions(annotation_batches.name, [name])
        self.report(RAW, name, rows_all_batches=rows)

    def run(self, requested: set[str]) -> None:
        """What the requested run does: every requested asset materializes (on the current rows)."""
        for key in self.keys:
            if key.to_user_string() in requested:
                self.report(key, **{ROWS_SEEN_METADATA: self.rows})


def test_a_batch_rebuilds_every_layer_at_once_but_not_the_evaluation_assets(project):
    world = Instance(project)
    world.batch("b1", 10_000)
    world.run({k.to_user_string() for k in world.keys if k != RAW})
    assert world.evaluate() == set()

    world.batch("b2", 10_500)  # +5%: below the evaluation cadence's growth
    requested = world.evaluate()
    downstream = {k.to_user_string() for k in world.keys} - {"raw_judgments", "mt_bench_questions"}
    assert requested == downstream - EVALUATION_ASSETS  # votes → scoring → consensus → reports → SQL models, one evaluation
    world.run(requested)
    assert world.evaluate() == set()  # settled: one rebuild per batch, not one layer per tick

    world.batch("b3", 11_200)  # 12% more rows than the evaluation assets were built on
    requested = world.evaluate()
    assert requested == downstream
    world.run(requested)
    assert world.evaluate() == set()
    world.batch("b4", 11_300)  # <10% since they were rebuilt on 11,200 rows
    assert EVALUATION_ASSETS.isdisjoint(world.evaluate())


def test_evaluation_assets_carry_the_cadence_tag_and_a_label_that_says_why_they_did_not_run(project):
    graph = project.resolve_asset_graph()
    for name in EVALUATION_ASSETS:
        node = graph.get(dg.AssetKey(name))
        assert node.tags.get("cadence") == "evaluation"
        label = node.automation_condition.get_label()
        assert label.startswith("evaluation cadence: daily") and "never on every batch" in label
        children = {c.get_label() for c in node.automation_condition.children}
        assert f"data grew ≥{EVALUATION_GROWTH:.0%} since the last build" in children
    judgments = graph.get(dg.AssetKey("judgments")).automation_condition
    assert judgments.get_label() == "eager"


def test_the_ingest_selection_is_everything_downstream_but_the_evaluation_assets(project):
    graph = project.resolve_asset_graph()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chosen = {k.to_user_string() for k in dg.AssetSelection.from_string(INGEST_SELECTION).resolve(graph)}
        downstream = {k.to_user_string() for k in dg.AssetSelection.from_string("key:raw_judgments+").resolve(graph)}
    assert chosen == downstream - EVALUATION_ASSETS
    assert {"raw_judgments", "judgments", "consensus_labels", "label_next", "model_leaderboard", "judge_human_agreement"} <= chosen


def test_the_automation_sensor_runs_in_the_code_location_for_the_python_growth_condition():
    assert not evaluation_cadence().is_serializable  # RawJudgmentsGrew is Python code
    assert judge_assets_automation._use_user_code_server  # noqa: SLF001 - no public accessor in Dagster 1.13
    assert judge_assets_automation.default_status == dg.DefaultSensorStatus.STOPPED


def test_growth_is_read_from_the_real_raw_judgments_metadata(tmp_path):
    """The condition reads ``rows_all_batches`` that the raw_judgments asset records on each load."""
    db = tmp_path / "judge.duckdb"
    human = pd.read_parquet(BUNDLED_DATA_DIR / "human.parquet")
    con = duckdb.connect(str(db))
    for name, frame in (("b1", human.iloc[:1000]), ("b2", human.iloc[1000:1050]), ("b3", human.iloc[1050:1200])):
        frame.to_parquet(tmp_path / f"{name}.parquet")
        record_batch(con, Batch(name, "file", str(tmp_path / f"{name}.parquet")))
    con.close()

    @dg.asset(deps=[raw_judgments], automation_condition=evaluation_cadence())
    def evaluation(duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
        with duckdb.get_connection() as con:
            return dg.MaterializeResult(metadata={ROWS_SEEN_METADATA: con.execute("SELECT count(*) FROM raw_judgments").fetchone()[0]})

    assets = with_automation([raw_judgments, evaluation])
    resources = {"duckdb": JudgeDuckDBResource(database=str(db))}
    instance = dg.DagsterInstance.ephemeral()
    defs = dg.Definitions(assets=assets, resources=resources)
    grew = RawJudgmentsGrew(EVALUATION_GROWTH)
    cursor = None
    requested = []
    for name in ("b1", "b2", "b3"):
        instance.add_dynamic_partitions(annotation_batches.name, [name])
        assert dg.materialize(assets, instance=instance, resources=resources, selection="key:raw_judgments", partition_key=name).success
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = dg.evaluate_automation_conditions(defs, instance, cursor=cursor)
        cursor = result.cursor
        requested.append(result.get_num_requested(evaluation.key))
        assert bool(requested[-1]) == grew.grew(instance, evaluation.key)
        if requested[-1]:
            assert dg.materialize(assets, instance=instance, resources=resources, selection="key:evaluation").success
    # b1: never built; b2: 1,050 rows < 1.1 × 1,000; b3: 1,200 rows ≥ 1.1 × 1,000
    assert requested == [1, 0, 1]


def test_the_benchmark_runs_on_a_bounded_sample_of_whole_items_and_says_so(tmp_path):
    """Its cost must not grow with the data: above max_votes it evaluates whole items in item-id hash
    order up to that many votes; below, everything (as on MT-Bench)."""
    from judge_assets.defs.reports import consensus_benchmark
    from judge_assets_tests.core.test_consensus_benchmark import noisy_pairwise

    judgments = noisy_pairwise(120)
    db = tmp_path / "judge.duckdb"
    con = duckdb.connect(str(db))
    con.register("j", judgments)
    con.execute("CREATE TABLE judgments AS SELECT * FROM j")
    con.execute("CREATE TABLE items AS SELECT DISTINCT item_id FROM judgments")
    con.execute("CREATE TABLE llm_judge_scores (item_id VARCHAR, p_a DOUBLE, p_b DOUBLE, p_tie DOUBLE, status VARCHAR)")
    con.execute("CREATE TABLE label_set AS SELECT * FROM (VALUES ('A', 0), ('B', 1), ('tie', 2)) t(label, code)")
    con.close()
    resources = {"duckdb": JudgeDuckDBResource(database=str(db))}

    def run(max_votes: int) -> tuple[dict, int]:
        config = {"ops": {"consensus_benchmark": {"config": {"seeds": [0], "max_votes": max_votes}}}}
        result = dg.materialize([consensus_benchmark], resources=resources, run_config=config)
        assert result.success
        [event] = result.get_asset_materialization_events()
        metadata = {k: v.value for k, v in event.materialization.metadata.items()}
        return metadata, metadata["n_items"]

    full, n_full = run(10_000)
    assert full["sample"] == f"all {len(judgments):,} votes"
    half, n_half = run(len(judgments) // 2)
    votes = int(half["sample"].split(" of ")[0].replace(",", ""))
    assert len(judgments) // 2 - 5 <= votes <= len(judgments) // 2 and "whole items in item-id hash order" in half["sample"]
    assert 0 < n_half < n_full
    assert run(len(judgments) // 2)[0]["sample"] == half["sample"]  # the same items every time
