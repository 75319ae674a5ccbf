"""The Dagster code location: every asset, check, sensor and resource of judge-assets.

``workspace.yaml`` and ``[tool.dagster]`` in pyproject point here. One module of ``defs/`` per
asset group the UI shows (sources → votes → scoring → consensus → reports → SQL models). Steps
run in one process (DuckDB admits one writing process per file) and every writer sits in the
``judge_duckdb`` concurrency pool, limited to 1 in the project's dagster.yaml.

New annotation batches arrive through the ``annotation_inbox`` sensor or ``judge-assets ingest``;
every unpartitioned asset carries an eager automation condition that rebuilds it once after a new
batch lands (``judge_assets_automation`` sensor; both sensors start stopped, see the README).
"""

import warnings
from pathlib import Path

import dagster as dg

from judge_assets.core.sql.models import discover_models
from judge_assets.defs.automation import judge_assets_automation, load_annotation_batch, rebuild, with_automation
from judge_assets.defs.consensus import consensus, consensus_checks, majority_vote_labels, ordinal_agreement, ordinal_consensus
from judge_assets.defs.criteria import CRITERIA_ASSETS
from judge_assets.defs.reports import (
    annotator_stats_history,
    consensus_benchmark,
    ground_truth_accuracy,
    judged_classifier_report,
    label_next,
    model_leaderboard,
    reports_checks,
)
from judge_assets.defs.resources import project_resources
from judge_assets.defs.scoring import llm_judge_scores, model_probs, scoring_checks
from judge_assets.defs.sources import annotation_inbox, mt_bench_questions, no_unresolved_rejected_files, raw_judgments
from judge_assets.defs.sql_models import SQL_MODELS_DIR, build_sql_model_defs
from judge_assets.defs.votes import annotator_matrix, items, judgments

PYTHON_ASSETS = [
    raw_judgments,
    mt_bench_questions,
    judgments,
    items,
    annotator_matrix,
    llm_judge_scores,
    model_probs,
    majority_vote_labels,
    consensus,
    ordinal_consensus,
    ordinal_agreement,
    model_leaderboard,
    consensus_benchmark,
    ground_truth_accuracy,
    judged_classifier_report,
    annotator_stats_history,
    label_next,
    *CRITERIA_ASSETS,
]

#: Every table a SQL model may read: the Python assets' keys (SQL models may also read each other).
PYTHON_TABLES = {key.to_user_string() for asset in PYTHON_ASSETS for key in asset.keys}

SQL_MODELS = build_sql_model_defs(SQL_MODELS_DIR, PYTHON_TABLES)

ASSETS = [*PYTHON_ASSETS, *SQL_MODELS.assets]


def _project_relative(reference: dg.LocalFileCodeReference) -> dg.LocalFileCodeReference:
    """``reference`` labelled with its path from the project root (the UI shows the label; the link keeps the file)."""
    project = dg.AnchorBasedFilePathMapping(local_file_anchor=Path(__file__), file_anchor_path_in_repository="judge_assets/definitions.py")
    path = project.convert_to_source_control_path(Path(reference.file_path))
    label = f"{path}:{reference.line_number}" if reference.line_number else path
    return dg.LocalFileCodeReference(file_path=reference.file_path, line_number=reference.line_number, label=label)


def with_code_references(assets: list[dg.AssetsDefinition], sql_dir: Path) -> list[dg.AssetsDefinition]:
    """Every asset with a code reference to the function that builds it and, for a SQL model, its
    ``.sql`` file first; labelled with paths from the project root."""
    with warnings.catch_warnings():  # code references are beta in Dagster 1.13
        warnings.simplefilter("ignore", dg.BetaWarning)
        sql_files = {m.name: dg.LocalFileCodeReference(file_path=str(m.path)) for m in discover_models(sql_dir)}

        def relabel(spec: dg.AssetSpec) -> dg.AssetSpec:
            name = spec.key.to_user_string()
            found = [*([sql_files[name]] if name in sql_files else []), *spec.metadata["dagster/code_references"].code_references]
            references = dg.CodeReferencesMetadataValue(code_references=[_project_relative(r) for r in found])
            return spec.replace_attributes(metadata={**spec.metadata, "dagster/code_references": references})

        return [asset.map_asset_specs(relabel) for asset in dg.with_source_code_references(assets)]


defs = dg.Definitions(
    assets=with_automation(with_code_references(ASSETS, SQL_MODELS_DIR)),
    jobs=[load_annotation_batch, rebuild],
    sensors=[annotation_inbox, judge_assets_automation],
    asset_checks=[no_unresolved_rejected_files, *scoring_checks, *consensus_checks, *reports_checks, *SQL_MODELS.checks],
    resources=project_resources(),
    executor=dg.in_process_executor,
)
