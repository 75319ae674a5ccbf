"""Criteria and their assertions (the EvalGen loop): parsing the criteria file and running code assertions.

A criteria file (YAML, ``criteria.yaml`` beside the judges folder) names criteria, each with
one or more assertion variants::

    criteria:
      - name: concise
        description: The answer is short enough to read at a glance.
        assertions:
          - name: under_280_chars
            sql: length(response) <= 280
          - name: under_600_chars
            sql: length(response) <= 600
          - name: llm_concise
            judge: single_pass_fail        # an LLM assertion: a single-output pass/fail judge
      - name: no_ai_disclaimer
        assertions:
          - name: no_as_an_ai
            sql: NOT regexp_matches(response, '(?i)as an ai')

A **code assertion** is one DuckDB SQL boolean expression over the columns of ``items`` (true =
the output passes). An **LLM assertion** names a judge (a single-output pass/fail judge file)
that receives the criterion's description as its ``{criterion}``; its verdicts come from the
judge's scores. An assertion *fails* an output when the expression is false (NULL counts as not
failing: the check could not apply).

Everything is checked before anything runs: a malformed file, a duplicate name, an expression
that is not one boolean expression (statements, subqueries and ``;`` are refused) or that names
an unknown column is a :class:`CriteriaError` naming the criterion and the assertion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import sqlglot
from sqlglot import exp

from judge_assets.core.db import quote_ident, table_columns


class CriteriaError(ValueError):
    """A criteria file the project cannot use; the message names the file, criterion and assertion."""


@dataclass(frozen=True)
class Assertion:
    """One variant of a criterion: ``sql`` (a code assertion) or ``judge`` (an LLM assertion)."""

    criterion: str
    name: str
    sql: str | None = None
    judge: str | None = None

    @property
    def kind(self) -> str:
        return "code" if self.sql is not None else "llm"


@dataclass(frozen=True)
class Criterion:
    name: str
    description: str
    assertions: tuple[Assertion, ...]


def _fail(source: str, where: str, problem: str) -> CriteriaError:
    return CriteriaError(f"{source}, {where}: {problem}")


def parse_criteria(data: object, source: str = "<criteria>") -> list[Criterion]:
    """Criteria from the parsed YAML document ``data`` (see the module docstring); ``source`` names the file in errors."""
    if not isinstance(data, dict) or not isinstance(data.get("criteria"), list) or not data["criteria"]:
        raise _fail(source, "top level", "expected a mapping with a non-empty list 'criteria'")
    criteria: list[Criterion] = []
    seen: set[str] = set()
    for position, entry in enumerate(data["criteria"], start=1):
        if not isinstance(entry, dict) or not str(entry.get("name") or "").strip():
            raise _fail(source, f"criterion {position}", "needs a 'name'")
        name = str(entry["name"]).strip()
        if name in seen:
            raise _fail(source, f"criterion {name!r}", "the name is used twice")
        seen.add(name)
        raw = entry.get("assertions")
        if not isinstance(raw, list) or not raw:
            raise _fail(source, f"criterion {name!r}", "needs a non-empty list 'assertions'")
        assertions, names = [], set()
        for number, item in enumerate(raw, start=1):
            label = f"criterion {name!r}, assertion {number}"
            if not isinstance(item, dict) or not str(item.get("name") or "").strip():
                raise _fail(source, label, "needs a 'name'")
            a_name = str(item["name"]).strip()
            label = f"criterion {name!r}, assertion {a_name!r}"
            if a_name in names:
                raise _fail(source, label, "the name is used twice in this criterion")
            names.add(a_name)
            has_sql, has_judge = item.get("sql") is not None, item.get("judge") is not None
            if has_sql == has_judge:
                raise _fail(source, label, "give exactly one of 'sql' (a code assertion) or 'judge' (an LLM assertion)")
            if has_sql:
                assertions.append(Assertion(name, a_name, sql=check_expression(str(item["sql"]), source, label)))
            else:
                assertions.append(Assertion(name, a_name, judge=str(item["judge"]).strip()))
        criteria.append(Criterion(name, str(entry.get("description") or name), tuple(assertions)))
    return criteria


def load_criteria(path: str | Path) -> list[Criterion]:
    """Read and parse a criteria YAML file (errors name the file)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CriteriaError(f"{path}: no such criteria file") from None
    except yaml.YAMLError as exc:
        raise CriteriaError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_criteria(data, str(path))


def check_expression(sql: str, source: str, where: str) -> str:
    """``sql`` if it is one boolean expression for DuckDB, else a :class:`CriteriaError`."""
    text = sql.strip()
    if not text or ";" in text:
        raise _fail(source, where, f"'sql' must be one expression without ';' (got {sql!r})")
    try:
        tree = sqlglot.parse_one(text, read="duckdb", into=exp.Condition)
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError) as error:
        raise _fail(source, where, f"'sql' is not a valid expression ({str(error).splitlines()[0]})") from None
    if tree.find(exp.Select, exp.Subquery, exp.Query) is not None:
        raise _fail(source, where, "'sql' may not contain a query or subquery: use the item's columns")
    return text


def referenced_columns(sql: str) -> set[str]:
    """Column names a code assertion reads."""
    return {column.name for column in sqlglot.parse_one(sql, read="duckdb").find_all(exp.Column)}


def validate_against_table(con: duckdb.DuckDBPyConnection, criteria: list[Criterion], table: str, source: str) -> None:
    """Every code assertion names only columns of ``table`` and runs there (checked with ``LIMIT 0``)."""
    columns = set(table_columns(con, table))
    for criterion in criteria:
        for assertion in criterion.assertions:
            if assertion.sql is None:
                continue
            where = f"criterion {criterion.name!r}, assertion {assertion.name!r}"
            unknown = sorted(referenced_columns(assertion.sql) - columns)
            if unknown:
                raise _fail(source, where, f"unknown column(s) {', '.join(unknown)} (the {table} table has: {', '.join(sorted(columns))})")
            try:
                con.execute(f"SELECT CAST(({assertion.sql}) AS BOOLEAN) FROM {quote_ident(table)} LIMIT 0").fetchall()
            except duckdb.Error as error:
                raise _fail(source, where, f"DuckDB cannot run it: {str(error).splitlines()[0]}") from None


def run_code_assertions(con: duckdb.DuckDBPyConnection, criteria: list[Criterion], table: str = "items") -> pd.DataFrame:
    """Verdicts of every code assertion on every row of ``table``, in DuckDB.

    Returns one row per (item, assertion): ``item_id``, ``criterion``, ``assertion``, ``kind``
    ('code'), ``passed`` (bool; NULL where the expression is NULL), ``failed`` (``passed`` is false; never NULL).
    """
    parts = []
    for criterion in criteria:
        for assertion in criterion.assertions:
            if assertion.sql is None:
                continue
            parts.append(
                f"SELECT item_id, ? AS criterion, ? AS assertion, 'code' AS kind, passed, coalesce(NOT passed, false) AS failed "
                f"FROM (SELECT item_id, CAST(({assertion.sql}) AS BOOLEAN) AS passed FROM {quote_ident(table)})"
            )
    if not parts:
        return pd.DataFrame(columns=["item_id", "criterion", "assertion", "kind", "passed", "failed"])
    params = [v for c in criteria for a in c.assertions if a.sql is not None for v in (c.name, a.name)]
    return con.execute(" UNION ALL ".join(parts), params).df()


#: the temporary view code assertions read (see :func:`create_assertion_view`)
ASSERTION_VIEW = "assertion_items"
VERDICT_COLUMNS = ["item_id", "criterion", "assertion", "kind", "judge", "model", "status", "passed", "failed"]


def create_assertion_view(con: duckdb.DuckDBPyConnection, table: str = "items", view: str = ASSERTION_VIEW) -> list[str]:
    """A TEMP view of ``table`` where code assertions read plain text: every list column
    (``items`` keeps texts per turn: ``user_turns``, ``response``, ``answers_a``, ``reference`` …)
    becomes its last element (the judged turn's text), and ``prompt`` / ``response_a`` /
    ``response_b`` are added from ``user_turns`` / ``answers_a`` / ``answers_b`` when absent. So
    ``length(response) <= 280`` measures the output's characters, not a list's length.
    Returns the view's columns."""
    columns = table_columns(con, table)
    select = []
    for name, dtype in columns.items():
        flat = f"CAST({quote_ident(name)}[-1] AS VARCHAR)" if dtype.endswith("[]") else quote_ident(name)
        select.append(f"{flat} AS {quote_ident(name)}")
    for alias, source in (("prompt", "user_turns"), ("response_a", "answers_a"), ("response_b", "answers_b")):
        if alias not in columns and source in columns:
            select.append(f"CAST({quote_ident(source)}[-1] AS VARCHAR) AS {quote_ident(alias)}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(view)} AS SELECT {', '.join(select)} FROM {quote_ident(table)}")
    return list(table_columns(con, view))


def validate_llm_assertions(criteria: list[Criterion], judges: dict, source: str, good: tuple[str, ...], bad: tuple[str, ...]) -> None:
    """Every LLM assertion names a judge of ``judges`` (name → :class:`JudgeSpec`) that grades one
    output (shape ``single`` or ``reference``) with labels that read as good or bad."""
    for criterion in criteria:
        for assertion in criterion.assertions:
            if assertion.judge is None:
                continue
            where = f"criterion {criterion.name!r}, assertion {assertion.name!r}"
            spec = judges.get(assertion.judge)
            if spec is None:
                raise _fail(source, where, f"no judge named {assertion.judge!r} (there are: {', '.join(sorted(judges))})")
            if spec.shape not in ("single", "reference"):
                raise _fail(source, where, f"judge {assertion.judge!r} has shape {spec.shape!r}; an LLM assertion needs a single-output judge (shape single or reference)")
            unknown = [label for label in spec.labels if label.lower() not in good + bad]
            if unknown:
                raise _fail(source, where, f"judge {assertion.judge!r} answers {unknown}, which are neither pass/good nor fail/bad")


def llm_verdicts(scores: pd.DataFrame, criterion: str, assertion: str, bad: tuple[str, ...]) -> pd.DataFrame:
    """Verdict rows (:data:`VERDICT_COLUMNS`) of one LLM assertion from the judge's scores: an
    output fails when the judge's most probable label is a bad one; rows not scored ``ok``
    (skipped, no label token, errors) have ``passed`` / ``failed`` NULL and keep their status."""
    ok = scores["status"] == "ok"
    failed = scores["predicted_label"].astype(str).str.lower().isin(bad)
    return pd.DataFrame({
        "item_id": scores["item_id"].astype(str), "criterion": criterion, "assertion": assertion, "kind": "llm",
        "judge": scores["judge"], "model": scores["model"], "status": scores["status"],
        "passed": (~failed).where(ok).astype("boolean"), "failed": failed.where(ok).astype("boolean"),
    })
