"""One Dagster asset per SQL model file in ``dbt_like_sql/`` (see ``judge_assets.core.sql.models``).

Adding a model = dropping a ``.sql`` file into the folder and reloading the code location.
A model reading a table that is neither an upstream asset nor another model fails here, when
the definitions load, not at materialization.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from judge_assets.core.sql.models import SqlModel, discover_models, materialize_model, order_models, validate_models
from judge_assets.defs.metadata import table_metadata
from judge_assets.defs.resources import DB_POOL, JudgeDuckDBResource

SQL_MODELS_DIR = Path(__file__).resolve().parents[2] / "dbt_like_sql"


def _model_asset(model: SqlModel) -> dg.AssetsDefinition:
    description = f"SQL model `{model.path}` ({model.materialized})."
    if model.description:
        description += "\n\n" + model.description

    @dg.asset(
        name=model.name,
        group_name=model.group,
        deps=sorted(model.deps),
        description=description,
        kinds={"duckdb", "sql"},
        pool=DB_POOL,
    )
    def _asset(duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
        with duckdb.get_connection() as con:
            materialize_model(con, model)
            metadata = table_metadata(con, model.name)
        metadata["sql"] = dg.MetadataValue.md(f"```sql\n{model.sql}\n```")
        metadata["materialized"] = dg.MetadataValue.text(model.materialized)
        return dg.MaterializeResult(metadata=metadata)

    return _asset


def build_sql_model_assets(sql_dir: Path, upstream_asset_names: set[str]) -> list[dg.AssetsDefinition]:
    """Assets for every model under ``sql_dir``, in dependency order.

    Key = model name, group = ``sql_models`` or the model's subfolder, ``deps`` = the tables
    the SQL reads, kinds ``duckdb`` + ``sql``; materializing one writes the table or view
    through resource ``duckdb`` and records row count, a preview and the SQL. Raises
    ``SqlModelError`` when a model reads an unknown table, has a dependency cycle or does not
    parse.
    """
    models = discover_models(sql_dir)
    validate_models(models, set(upstream_asset_names))
    return [_model_asset(m) for m in order_models(models)]
