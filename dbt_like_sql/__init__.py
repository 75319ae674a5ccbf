"""The shipped SQL models, installed as ``judge_assets.dbt_like_sql``: one ``.sql`` file = one Dagster asset.

Only the ``.sql`` files matter (see ``judge_assets.core.sql.models``); this file makes the folder a
package so ``importlib.resources`` finds it in editable and wheel installs alike.
"""
