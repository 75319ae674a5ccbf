"""One Dagster asset and one grain check per SQL model file in ``dbt_like_sql/`` (see ``judge_assets.core.sql.models``).

The folder ``dbt_like_sql/`` sits at the top of the repository and is shipped inside the package as
``judge_assets.dbt_like_sql`` (``[tool.setuptools.package-dir]`` in pyproject.toml), so an editable
install reads the repository folder and a wheel install reads its copy in site-packages.

Adding a model = dropping a ``.sql`` file into the folder and reloading the code location.
A model reading a table that is neither an upstream asset nor another model, or declaring no
grain, fails here, when the definitions load, not at materialization.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import dagster as dg

from judge_assets.core.sql.models import (
    SqlModel,
    discover_models,
    grain_violations,
    materialize_model,
    order_models,
    validate_models,
)
from judge_assets.defs.metadata import frame_markdown, table_metadata
from judge_assets.defs.resources import JudgeDuckDBResource
from judge_assets.defs.tables import table_asset, table_check

#: The shipped models: package ``judge_assets.dbt_like_sql``, i.e. the repository's ``dbt_like_sql/``.
SQL_MODELS_DIR = Path(files("judge_assets.dbt_like_sql"))


@dataclass(frozen=True)
class SqlModelDefs:
    """What :func:`build_sql_model_defs` returns: the models' assets (dependency order) and their grain checks."""

    assets: list[dg.AssetsDefinition]
    checks: list[dg.AssetChecksDefinition]


def _model_asset(model: SqlModel) -> dg.AssetsDefinition:
    description = f"SQL model `{model.source}` ({model.materialized}); one row per {', '.join(model.grain)}."
    if model.description:
        description += "\n\n" + model.description

    @table_asset(model.group, name=model.name, deps=sorted(model.deps), description=description, kinds=("duckdb", "sql"))
    def _asset(duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
        with duckdb.get_connection() as con:
            materialize_model(con, model)
            metadata = table_metadata(con, model.name)
        metadata["sql"] = dg.MetadataValue.md(f"```sql\n{model.sql}\n```")
        metadata["materialized"] = dg.MetadataValue.text(model.materialized)
        metadata["grain"] = dg.MetadataValue.text(", ".join(model.grain))
        return dg.MaterializeResult(metadata=metadata)

    return _asset


def _grain_check(model: SqlModel) -> dg.AssetChecksDefinition:
    grain = ", ".join(model.grain)

    @table_check(
        asset=model.name,
        name=f"{model.name}_grain_unique",
        blocking=False,
        description=f"No two rows of {model.name} share its grain ({grain}), as declared in `{model.source}`.",
    )
    def _check(duckdb: JudgeDuckDBResource) -> dg.AssetCheckResult:
        with duckdb.get_connection() as con:
            found = grain_violations(con, model)
        metadata = {
            "grain": dg.MetadataValue.text(grain),
            "duplicate_keys": dg.MetadataValue.int(found.n_keys),
            "rows_with_duplicate_keys": dg.MetadataValue.int(found.n_rows),
        }
        if found.n_keys:
            metadata["examples"] = dg.MetadataValue.md(frame_markdown(found.examples))
        return dg.AssetCheckResult(passed=found.n_keys == 0, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)

    return _check


def build_sql_model_defs(sql_dir: Path, upstream_asset_names: set[str]) -> SqlModelDefs:
    """Assets and grain checks for every model under ``sql_dir``, assets in dependency order.

    Asset: key = model name, group = ``sql_models`` or the model's subfolder, ``deps`` = the
    tables the SQL reads, kinds ``duckdb`` + ``sql``, description naming the file relative to the
    project (``dbt_like_sql/<name>.sql``); materializing one writes the table or view through
    resource ``duckdb`` and records row count, a preview, the SQL and the grain. Check
    ``<name>_grain_unique`` (severity ERROR, not blocking) fails with the number of duplicate grain
    keys, the rows holding them and a few examples. Raises ``SqlModelError`` when a model reads an
    unknown table, has a dependency cycle, does not parse or lacks a valid grain.
    """
    models = discover_models(sql_dir)
    validate_models(models, set(upstream_asset_names))
    ordered = order_models(models)
    return SqlModelDefs(assets=[_model_asset(m) for m in ordered], checks=[_grain_check(m) for m in ordered])
