"""How every asset of the project is declared: a table in DuckDB, in one group, in the write pool.

Each ``defs/<group>.py`` declares its assets with :func:`table_asset` / :func:`tables_asset`, so
the group, the ``judge_duckdb`` pool and the kinds are stated once, here, and every asset says
only what it reads and what its table holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from judge_assets.defs.resources import DB_POOL


def table_asset(group: str, *, deps: Sequence[str] = (), description: str | None = None, kinds: Sequence[str] = ("duckdb",), **kwargs):
    """``@dg.asset`` for one table of ``group`` written in the DuckDB pool (no ``description``: the function's docstring)."""
    return dg.asset(group_name=group, deps=list(deps), description=description, kinds=set(kinds), pool=DB_POOL, **kwargs)


def tables_asset(group: str, tables: dict[str, tuple[Sequence[str], str]], *, kinds: Sequence[str] = ("duckdb",), **kwargs):
    """``@dg.multi_asset`` writing several tables of ``group`` in one step: ``tables`` maps each
    table to (the tables it reads, its description)."""
    specs = [
        dg.AssetSpec(name, deps=list(deps), group_name=group, kinds=set(kinds), description=description)
        for name, (deps, description) in tables.items()
    ]
    return dg.multi_asset(specs=specs, pool=DB_POOL, **kwargs)
