"""The code location loads, with every contract asset, check and resource in place."""

from __future__ import annotations

import dagster as dg

from judge_assets.definitions import defs

CONTRACT = {
    "sources": {"raw_judgments", "mt_bench_questions"},
    "items": {"judgments", "label_set", "items"},
    "matrix": {"annotator_matrix", "annotator_matrix_columns", "majority_vote_labels"},
    "scoring": {"llm_judge_scores", "model_probs"},
    "consensus": {
        "consensus_labels", "human_consensus_labels", "annotator_stats", "label_quality_detail",
        "annotator_group_summary", "aggregator_comparison",
    },
    "reports": {"judge_report_card", "model_leaderboard", "consensus_benchmark", "annotator_stats_history", "label_next"},
    "sql_models": {"judge_human_agreement", "annotator_leaderboard", "disputed_items", "model_win_rates"},
}


def test_definitions_load_with_every_asset_in_its_group():
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    for group, names in CONTRACT.items():
        for name in names:
            assert groups.get(name) == group, (name, groups.get(name))


def test_raw_judgments_is_partitioned_by_annotation_batch():
    node = defs.resolve_asset_graph().get(dg.AssetKey("raw_judgments"))
    assert isinstance(node.partitions_def, dg.DynamicPartitionsDefinition)
    assert node.partitions_def.name == "annotation_batches"


def test_sql_models_sit_downstream_of_the_python_assets():
    graph = defs.resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("judge_human_agreement")).parent_keys}
    assert parents == {"judgments", "human_consensus_labels"}


def test_checks_and_resources():
    checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert {"model_probs_are_probabilities", "llm_judge_scores_valid", "consensus_labels_valid", "consensus_label_coverage"} <= checks
    assert {"duckdb", "pipeline", "llm_judge"} <= set(defs.resources)
    defs.resolve_implicit_global_asset_job_def()  # every asset resolves into one job
