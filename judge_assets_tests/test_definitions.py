"""The code location loads, with every contract asset, check and resource in place."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg

from judge_assets.definitions import defs

CONTRACT = {
    "sources": {"raw_judgments", "mt_bench_questions"},
    "votes": {"judgments", "label_set", "items", "annotator_matrix", "annotator_matrix_columns"},
    "scoring": {"llm_judge_scores", "model_probs"},
    "consensus": {
        "majority_vote_labels", "consensus_labels", "human_consensus_labels", "annotator_stats", "label_quality_detail",
        "annotator_group_summary", "aggregator_comparison", "judge_report_card",
    },
    "reports": {"model_leaderboard", "consensus_benchmark", "annotator_stats_history", "label_next"},
    "sql_models": {"judge_human_agreement", "annotator_leaderboard", "disputed_items", "model_win_rates"},
}


def test_definitions_load_with_every_asset_in_its_group():
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    for group, names in CONTRACT.items():
        for name in names:
            assert groups.get(name) == group, (name, groups.get(name))


def test_each_python_asset_is_defined_in_the_defs_module_named_like_its_group():
    for assets_def in defs.assets:
        if not isinstance(assets_def, dg.AssetsDefinition) or assets_def.group_names_by_key is None:
            continue
        groups = set(assets_def.group_names_by_key.values())
        module = assets_def.op.compute_fn.decorated_fn.__module__
        expected = "sql_models" if module.endswith(".sql_models") else next(iter(groups))
        assert groups == {expected} and module == f"judge_assets.defs.{expected}", (assets_def.keys, module, groups)


def test_importing_the_code_location_creates_nothing_and_raises_nothing_on_bad_settings(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUDGE_", "OPENAI_"))}
    env.update(JUDGE_DB=str(tmp_path / "nested" / "judge.duckdb"), JUDGE_LLM_MODE="sometimes", JUDGE_LLM_CONCURRENCY="lots",
               JUDGE_MATRIX_MAX_ANNOTATORS="many", JUDGE_LLM_BASE_URL="http://127.0.0.1:9/v1", JUDGE_LLM_MODEL="m")
    done = subprocess.run([sys.executable, "-c", "import judge_assets.definitions, judge_assets.cli"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "nested").exists()


def test_raw_judgments_is_partitioned_by_annotation_batch():
    node = defs.resolve_asset_graph().get(dg.AssetKey("raw_judgments"))
    assert isinstance(node.partitions_def, dg.DynamicPartitionsDefinition)
    assert node.partitions_def.name == "annotation_batches"


def test_sql_models_sit_downstream_of_the_python_assets():
    graph = defs.resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("judge_human_agreement")).parent_keys}
    assert parents == {"judgments", "human_consensus_labels", "label_set"}


def test_checks_and_resources():
    checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert {"model_probs_are_probabilities", "llm_judge_scores_valid", "consensus_labels_valid", "consensus_label_coverage"} <= checks
    assert {"duckdb", "pipeline", "llm_judge"} <= set(defs.resources)
    defs.resolve_implicit_global_asset_job_def()  # every asset resolves into one job


def test_cli_runs_name_the_code_location_the_ui_loads():
    """The UI re-executes a run through the location its origin names: the CLI's origin must be workspace.yaml's."""
    import tomllib

    from dagster._core.workspace.load import location_origins_from_yaml_paths

    from judge_assets.config import PACKAGE_DIR
    from judge_assets.runner import BATCH_JOB, DEFINITIONS_MODULE, LOCATION_NAME, REBUILD_JOB, code_location_job

    [workspace] = location_origins_from_yaml_paths([str(PACKAGE_DIR.parent / "workspace.yaml")])
    assert (workspace.location_name, workspace.loadable_target_origin.module_name) == (LOCATION_NAME, DEFINITIONS_MODULE)
    tool = tomllib.loads((PACKAGE_DIR.parent / "pyproject.toml").read_text())["tool"]["dagster"]
    assert (tool["code_location_name"], tool["module_name"]) == (LOCATION_NAME, DEFINITIONS_MODULE)
    for name in (BATCH_JOB, REBUILD_JOB):
        job, origin = code_location_job(name)
        assert (origin.location_name, origin.job_name) == (LOCATION_NAME, name)
        assert job.get_definition().name == name


def test_every_step_that_opens_the_database_waits_in_the_duckdb_pool():
    """DuckDB admits one process per file while one writes: a check of one run must not meet another run's writer."""
    from judge_assets.defs.resources import DB_POOL

    steps = [d for d in [*defs.assets, *defs.asset_checks] if isinstance(d, dg.AssetsDefinition)]  # checks are AssetsDefinitions too
    assert len(defs.asset_checks) >= 11
    assert {d.node_def.name: d.node_def.pool for d in steps if d.node_def.pool != DB_POOL} == {}
