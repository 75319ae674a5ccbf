"""Resources: the DuckDB database and the pipeline's settings, both read from the environment."""

from __future__ import annotations

import dagster as dg
from dagster_duckdb import DuckDBResource

from judge_assets.config import settings
from judge_assets.core.db import CONNECTION_CONFIG
from judge_assets.core.matrix import DEFAULT_MAX_ANNOTATORS

#: Every asset that writes the DuckDB file runs in this concurrency pool (limit 1 in the
#: instance's dagster.yaml): DuckDB allows one writing process at a time.
DB_POOL = "judge_duckdb"


class PipelineConfig(dg.ConfigurableResource):
    """Which judges are LLMs, the declared class set, and the pivot limit (launchpad-editable)."""

    llm_annotators: list[str]
    labels: list[str] = []
    matrix_max_annotators: int = DEFAULT_MAX_ANNOTATORS


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources built from the environment (``JUDGE_DB``, ``JUDGE_LLM_ANNOTATORS``, ``JUDGE_LABELS``...)."""
    s = settings()
    s.db_path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "duckdb": DuckDBResource(database=str(s.db_path), connection_config=CONNECTION_CONFIG),
        "pipeline": PipelineConfig(
            llm_annotators=list(s.llm_annotators),
            labels=list(s.labels),
            matrix_max_annotators=s.matrix_max_annotators,
        ),
    }
