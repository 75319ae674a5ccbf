"""dbt-like SQL models: one ``.sql`` file per model, dependencies parsed with sqlglot.

A model is a single ``SELECT`` (``WITH`` and set operations included) in a file
``<sql_dir>/[<group>/]<name>.sql``; the model name is the file stem and the table or view it
creates has that name. Configuration sits in leading ``--`` comment lines::

    -- materialized: view
    -- grain: model_a, model_b
    -- Per-pair win rates from consensus labels vs raw votes.
    SELECT ...

``grain`` (required) names the output columns that identify a row: no two rows may share their
values (:func:`grain_violations` finds the rows that do). ``materialized`` is ``table`` (default:
a snapshot, fast to query) or ``view`` (recomputed on every query). The other leading comment
lines are the model's description.

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
import pandas as pd
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.scope import traverse_scope

from judge_assets.core.db import quote_ident, table_columns, transaction

MATERIALIZATIONS = ("table", "view")
DEFAULT_GROUP = "sql_models"
_CONFIG_LINE = re.compile(r"^\s*--\s*materialized\s*:\s*(\S+)\s*$", re.IGNORECASE)
_GRAIN_LINE = re.compile(r"^\s*--\s*grain\s*:(.*)$", re.IGNORECASE)
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
    source : str
        The file as users see it: the models folder's name and the path inside it
        (``dbt_like_sql/model_win_rates.sql``), never a machine-specific absolute path.
    group : str
        ``sql_models`` for files directly in the models folder, else the first subfolder name.
    sql : str
        The file text without trailing whitespace and ``;`` (leading comments kept, so line
        numbers in errors are the file's line numbers).
    materialized : str
        ``table`` or ``view``.
    deps : frozenset[str]
        Tables (or other models) the SQL reads.
    grain : tuple[str, ...]
        The output columns that identify a row (the ``-- grain:`` comment).
    description : str
        The leading comment lines other than the configuration, joined by newlines.
    """

    name: str
    path: Path
    source: str
    group: str
    sql: str
    materialized: str
    deps: frozenset[str]
    grain: tuple[str, ...]
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


def _parse_query(sql: str, source: str) -> exp.Expression:
    """The one query of ``sql``; :class:`SqlModelError` naming ``source`` (and the line) otherwise."""
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
    return statements[0]


def parse_dependencies(sql: str, *, source: str = "<sql>") -> set[str]:
    """Names of the tables ``sql`` reads (CTEs and table functions excluded).

    A name qualified with a schema other than ``main`` keeps the qualification
    (``other.t``), so validation reports it as unknown. ``source`` names the file in
    errors. Raises :class:`SqlModelError` naming ``source`` and the line when sqlglot cannot
    parse the SQL or it is not exactly one query.
    """
    return _dependencies(_parse_query(sql, source))


def _dependencies(query: exp.Expression) -> set[str]:
    deps: set[str] = set()
    for scope in traverse_scope(query):
        for table in scope.sources.values():
            if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
                continue
            schema = table.db
            deps.add(table.name if schema in ("", "main") else f"{schema}.{table.name}")
    return deps


def _missing_grain(grain: tuple[str, ...], columns: list[str]) -> list[str]:
    """Grain columns not among ``columns`` (DuckDB names are case-insensitive)."""
    known = {c.casefold() for c in columns}
    return [g for g in grain if g.casefold() not in known]


def read_model(path: Path, group: str = DEFAULT_GROUP, source: str | None = None) -> SqlModel:
    """Parse one model file (configuration comments, description, dependencies).

    ``source`` is the file as shown to users (default: its folder's name and file name).
    Raises :class:`SqlModelError` naming the file when the grain is missing, empty or names a
    column the query does not output (checked here when the query lists its columns; a ``*``
    query is checked when it is materialized).
    """
    path = Path(path)
    sql = path.read_text(encoding="utf-8").rstrip().rstrip(";").rstrip()
    materialized = "table"
    grain: tuple[str, ...] | None = None
    description = []
    for line in _leading_comments(sql):
        match = _CONFIG_LINE.match(line)
        grain_line = _GRAIN_LINE.match(line)
        if match:
            materialized = match.group(1).lower()
            if materialized not in MATERIALIZATIONS:
                raise SqlModelError(
                    f"{path}: materialized must be one of {', '.join(MATERIALIZATIONS)}, got {match.group(1)!r}"
                )
        elif grain_line:
            grain = tuple(c.strip() for c in grain_line.group(1).split(","))
            if not all(grain):
                raise SqlModelError(f"{path}: grain must list column names separated by commas, got {line!r}")
        else:
            description.append(line[2:].strip())
    query = _parse_query(sql, str(path))
    if grain is None:
        raise SqlModelError(
            f"{path}: declare the model's grain (the columns that identify a row) in a leading comment, "
            "e.g. `-- grain: item_id`"
        )
    if not query.is_star:
        missing = _missing_grain(grain, query.named_selects)
        if missing:
            raise SqlModelError(
                f"{path}: grain column(s) {', '.join(missing)} not in the query's output columns "
                f"({', '.join(c for c in query.named_selects if c)}); name each grain column with AS"
            )
    return SqlModel(
        name=path.stem,
        path=path,
        source=source or f"{path.parent.name}/{path.name}",
        group=group,
        sql=sql,
        materialized=materialized,
        deps=frozenset(_dependencies(query)),
        grain=grain,
        description="\n".join(description).strip(),
    )


def discover_models(sql_dir: str | Path) -> list[SqlModel]:
    """Every ``*.sql`` file under ``sql_dir`` as a :class:`SqlModel`, sorted by name.

    Files directly in ``sql_dir`` get group ``sql_models``; files in a subfolder (at any
    depth) get the first subfolder's name as group. A model's ``source`` is
    ``<sql_dir name>/<path inside sql_dir>``. Two files with the same stem are an error.
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
        model = read_model(path, group, f"{sql_dir.name}/{Path(*parts).as_posix()}")
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
    one, the file's line; a grain column the result lacks is a :class:`SqlModelError` naming
    the file. On any error the previous table or view stays as it was.
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
            columns = list(table_columns(con, model.name))
            missing = _missing_grain(model.grain, columns)
            if missing:
                raise SqlModelError(
                    f"{model.path}: grain column(s) {', '.join(missing)} not in the model's columns ({', '.join(columns)})"
                )
    except duckdb.Error as err:
        message = str(err)
        match = _DUCKDB_LINE.search(message)
        where = f":{match.group(1)}" if match else ""
        raise SqlModelError(f"model {model.name} failed at {model.path}{where}: {message}") from err


@dataclass(frozen=True)
class GrainViolations:
    """Rows of a model that share a grain key.

    Attributes
    ----------
    n_keys : int
        Grain values held by more than one row (0 = the grain is unique).
    n_rows : int
        Rows holding those values.
    examples : pd.DataFrame
        Up to ``limit`` of those values, most repeated first: the grain columns and ``n_rows``
        (how many rows share the value).
    """

    n_keys: int
    n_rows: int
    examples: pd.DataFrame


def grain_violations(con: duckdb.DuckDBPyConnection, model: SqlModel, limit: int = 5) -> GrainViolations:
    """The grain keys of ``model``'s table or view held by more than one row (NULLs compare equal)."""
    cols = ", ".join(quote_ident(c) for c in model.grain)
    frame = con.execute(
        f"""
        SELECT {cols}, count(*) AS n_rows,
               count(*) OVER () AS total_keys, sum(count(*)) OVER () AS total_rows
        FROM {quote_ident(model.name)}
        GROUP BY {cols}
        HAVING count(*) > 1
        ORDER BY n_rows DESC, {cols}
        LIMIT {int(limit)}"""
    ).df()
    examples = frame.drop(columns=["total_keys", "total_rows"])
    if frame.empty:
        return GrainViolations(0, 0, examples)
    return GrainViolations(int(frame["total_keys"].iloc[0]), int(frame["total_rows"].iloc[0]), examples)
