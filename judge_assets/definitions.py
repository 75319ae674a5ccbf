"""The Dagster code location: every asset, check, sensor and resource of judge-assets.

``workspace.yaml`` and ``[tool.dagster]`` in pyproject point here. Steps run in one process
(DuckDB admits one writing process per file) and every writer sits in the ``judge_duckdb``
concurrency pool, limited to 1 in the project's dagster.yaml, so runs never fight for the lock.

New annotation batches arrive through the ``annotation_inbox`` sensor or ``judge-assets ingest``;
every unpartitioned asset carries an eager automation condition that rebuilds it once after a new
batch lands (``judge_assets_automation`` sensor; both sensors start stopped, see the README).
"""

import dagster as dg

from judge_assets.defs.benchmark import consensus_benchmark
from judge_assets.defs.consensus import consensus_assets
from judge_assets.defs.consensus_checks import consensus_checks
from judge_assets.defs.ingest import automation_sensors, ingest_assets, with_automation
from judge_assets.defs.judgments import items, judgments
from judge_assets.defs.leaderboard import model_leaderboard
from judge_assets.defs.llm_resource import llm_judge_resource_from_env
from judge_assets.defs.majority import majority_vote_labels
from judge_assets.defs.matrix import annotator_matrix
from judge_assets.defs.resources import default_resources
from judge_assets.defs.scoring import llm_judge_scores, llm_judge_scores_valid, model_probs
from judge_assets.defs.sources import mt_bench_questions, raw_judgments
from judge_assets.defs.sql_models import SQL_MODELS_DIR, build_sql_model_assets

PYTHON_ASSETS = [
    raw_judgments,
    mt_bench_questions,
    judgments,
    items,
    annotator_matrix,
    majority_vote_labels,
    llm_judge_scores,
    model_probs,
    *consensus_assets,
    model_leaderboard,
    consensus_benchmark,
    *ingest_assets,
]

#: Every table a SQL model may read: the Python assets' keys (SQL models may also read each other).
PYTHON_TABLES = {key.to_user_string() for asset in PYTHON_ASSETS for key in asset.keys}

ASSETS = [*PYTHON_ASSETS, *build_sql_model_assets(SQL_MODELS_DIR, PYTHON_TABLES)]

defs = dg.Definitions(
    assets=with_automation(ASSETS),
    sensors=automation_sensors,
    asset_checks=[*consensus_checks, llm_judge_scores_valid],
    resources={**default_resources(), "llm_judge": llm_judge_resource_from_env()},
    executor=dg.in_process_executor,
)
