"""The Dagster code location: every asset, check, sensor and resource of judge-assets.

``workspace.yaml`` and ``[tool.dagster]`` in pyproject point here. Steps run in one process
(DuckDB admits one writing process per file) and every writer sits in the ``judge_duckdb``
concurrency pool, limited to 1 in the project's dagster.yaml, so runs never fight for the lock.
"""

from __future__ import annotations

import dagster as dg

from judge_assets.defs.judgments import items, judgments
from judge_assets.defs.majority import majority_vote_labels
from judge_assets.defs.matrix import annotator_matrix
from judge_assets.defs.resources import default_resources
from judge_assets.defs.sources import mt_bench_questions, raw_judgments

ASSETS = [
    raw_judgments,
    mt_bench_questions,
    judgments,
    items,
    annotator_matrix,
    majority_vote_labels,
]

defs = dg.Definitions(
    assets=ASSETS,
    resources=default_resources(),
    executor=dg.in_process_executor,
)
