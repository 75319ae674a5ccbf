"""dbt-like SQL models: one ``.sql`` file per model, dependencies parsed with sqlglot.

A model is a single ``SELECT`` (``WITH`` and set operations included) in a file
``<sql_dir>/[<group>/]<name>.sql``; the model name is the file stem and the table or view it
creates has that name. Optional configuration sits in leading ``--`` comment lines::

    -- materialized: view
    -- Per-pair win rates from consensus labels vs raw votes.
    SELECT ...

``materialized`` is ``table`` (default: a snapshot, fast to query) or ``view`` (recomputed
on every query). The other leading comment lines are the model's description.

Dependencies are the tables a model reads, found by walking sqlglot's scopes (dialect
duckdb): CTE names are not dependencies, subqueries and joins are walked, quoted names keep
their spelling, table functions such as ``read_parquet(...)`` are not tables, and a model
may read another model (it is then materialized after it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.scope import traverse_scope

from judge_assets.core.db import quote_ident, transaction

MATERIALIZATIONS = ("table", "view")
DEFAULT_GROUP = "sql_models"
_CONFIG_LINE = re.compile(r"^\s*--\s*materialized\s*:\s*(\S+)\s*$", re.IGNORECASE)
_DUCKDB_LINE = re.compile(r"\bLINE (\d+):")
_GROUP_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_QUERY_TYPES = (exp.Select, exp.Union, exp.Intersect, exp.Except)


class SqlModelError(ValueError):
    """A model file that cannot be parsed, ordered, validated or materialized."""


@dataclass(frozen=True)
class SqlModel:
    """One SQL model file.

    Attributes
    ----------
    name : str
        The file stem; the table or view created.
    path : Path
        The ``.sql`` file.
    group : str
        ``sql_models`` for files directly in the models folder, else the first subfolder name.
    sql : str
        The file text without trailing whitespace and ``;`` (leading comments kept, so line
        numbers in errors are the file's line numbers).
    materialized : str
        ``table`` or ``view``.
    deps : frozenset[str]
        Tables (or other models) the SQL reads.
    description : str
        The leading comment lines other than the configuration, joined by newlines.
    """

    name: str
    path: Path
    group: str
    sql: str
    materialized: str
    deps: frozenset[str]
    description: str = ""


def _leading_comments(sql: str) -> list[str]:
    lines = []
    for line in sql.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        lines.append(stripped)
    return lines


def parse_dependencies(sql: str, *, source: str = "<sql>") -> set[str]:
    """Names of the tables ``sql`` reads (CTEs and table functions excluded).

    A name qualified with a schema other than ``main`` keeps the qualification
    (``other.t``), so validation reports it as unknown. ``source`` names the file in
    errors. Raises :class:`SqlModelError` naming ``source`` and the line when sqlglot cannot
    parse the SQL or it is not exactly one query.
    """
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except sqlglot.ParseError as err:
        first = err.errors[0] if err.errors else {}
        where = f" line {first['line']}" if first.get("line") else ""
        detail = first.get("description", str(err))
        raise SqlModelError(f"{source}:{where}: SQL parse error: {detail}") from err
    if len(statements) != 1 or not isinstance(statements[0], _QUERY_TYPES):
        kinds = ", ".join(type(s).__name__.upper() for s in statements) or "nothing"
        raise SqlModelError(f"{source}: a model must be exactly one SELECT query, found {kinds}")
    deps: set[str] = set()
    for scope in traverse_scope(statements[0]):
        for table in scope.sources.values():
            if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
                continue
            schema = table.db
            deps.add(table.name if schema in ("", "main") else f"{schema}.{table.name}")
    return deps


def read_model(path: Path, group: str = DEFAULT_GROUP) -> SqlModel:
    """Parse one model file (configuration comment, description, dependencies)."""
    path = Path(path)
    sql = path.read_text(encoding="utf-8").rstrip().rstrip(";").rstrip()
    comments = _leading_comments(sql)
    materialized = "table"
    description = []
    for line in comments:
        match = _CONFIG_LINE.match(line)
        if match:
            materialized = match.group(1).lower()
            if materialized not in MATERIALIZATIONS:
                raise SqlModelError(
                    f"{path}: materialized must be one of {', '.join(MATERIALIZATIONS)}, got {match.group(1)!r}"
                )
        else:
            description.append(line[2:].strip())
    return SqlModel(
        name=path.stem,
        path=path,
        group=group,
        sql=sql,
        materialized=materialized,
        deps=frozenset(parse_dependencies(sql, source=str(path))),
        description="\n".join(description).strip(),
    )


def discover_models(sql_dir: str | Path) -> list[SqlModel]:
    """Every ``*.sql`` file under ``sql_dir`` as a :class:`SqlModel`, sorted by name.

    Files directly in ``sql_dir`` get group ``sql_models``; files in a subfolder (at any
    depth) get the first subfolder's name as group. Two files with the same stem are an error.
    """
    sql_dir = Path(sql_dir)
    if not sql_dir.is_dir():
        raise SqlModelError(f"SQL models folder {sql_dir} does not exist")
    models: dict[str, SqlModel] = {}
    for path in sorted(sql_dir.rglob("*.sql")):
        parts = path.relative_to(sql_dir).parts
        group = parts[0] if len(parts) > 1 else DEFAULT_GROUP
        if not _GROUP_NAME.match(group):
            raise SqlModelError(f"{path}: folder name {group!r} is not a valid group name (letters, digits, _)")
        model = read_model(path, group)
        if model.name in models:
            raise SqlModelError(f"two models named {model.name!r}: {models[model.name].path} and {path}")
        models[model.name] = model
    return sorted(models.values(), key=lambda m: m.name)


def order_models(models: list[SqlModel]) -> list[SqlModel]:
    """Models in dependency order (a model after the models it reads); ties by name.

    Raises :class:`SqlModelError` naming the models of a dependency cycle.
    """
    by_name = {m.name: m for m in models}
    pending = {m.name: {d for d in m.deps if d in by_name and d != m.name} for m in models}
    for m in models:
        if m.name in m.deps:
            raise SqlModelError(f"dependency cycle: model {m.name} ({m.path}) reads itself")
    ordered: list[SqlModel] = []
    while pending:
        ready = sorted(name for name, deps in pending.items() if not deps)
        if not ready:
            raise SqlModelError(f"dependency cycle among models: {_cycle(pending)}")
        for name in ready:
            ordered.append(by_name[name])
            del pending[name]
        for deps in pending.values():
            deps.difference_update(ready)
    return ordered


def _cycle(pending: dict[str, set[str]]) -> str:
    """One cycle of the remaining graph (every node left has an unresolved dependency)."""
    node = min(pending)
    path: list[str] = []
    while node not in path:
        path.append(node)
        node = min(pending[node])
    cycle = path[path.index(node):] + [node]
    return " -> ".join(cycle)


def validate_models(models: list[SqlModel], known_tables: set[str]) -> None:
    """Raise :class:`SqlModelError` when a model reads a table that is neither in
    ``known_tables`` nor another model (names every such file and table)."""
    names = {m.name for m in models}
    problems = [
        f"{m.path} reads unknown table {dep!r}"
        for m in models
        for dep in sorted(m.deps - names - set(known_tables))
    ]
    if problems:
        known = ", ".join(sorted(set(known_tables) | names))
        raise SqlModelError("; ".join(problems) + f" (known tables: {known})")


def materialize_model(con: duckdb.DuckDBPyConnection, model: SqlModel) -> None:
    """``CREATE OR REPLACE TABLE|VIEW <name> AS <sql>`` in one transaction.

    An existing table or view of the other kind is dropped in the same transaction. A DuckDB
    error is re-raised as :class:`SqlModelError` naming the file and, when DuckDB reports
    one, the file's line.
    """
    kind = model.materialized.upper()
    other = "VIEW" if kind == "TABLE" else "TABLE"
    existing = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?",
        [model.name],
    ).fetchone()
    # No newline before the SQL: DuckDB's ``LINE n`` then counts the file's lines.
    statement = f"CREATE OR REPLACE {kind} {quote_ident(model.name)} AS {model.sql}"
    try:
        with transaction(con):
            if existing and (existing[0] == "VIEW") != (kind == "VIEW"):
                con.execute(f"DROP {other} {quote_ident(model.name)}")
            con.execute(statement)
    except duckdb.Error as err:
        message = str(err)
        match = _DUCKDB_LINE.search(message)
        where = f":{match.group(1)}" if match else ""
        raise SqlModelError(f"model {model.name} failed at {model.path}{where}: {message}") from err
