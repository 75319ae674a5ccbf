"""The item key: the one definition of which votes are about the same item.

Pairwise: ``"{question_id}:{turn}:{model_a}|{model_b}"`` with the two models sorted, so the same
comparison shown in either order is one item. In each model name ``\\`` is written ``\\\\`` and
``|`` is written ``\\|``, so the key is unambiguous for any name ("x|y" vs "z" and "x" vs "y|z"
are two items); names without those characters appear as they are. Generic items keep their
``item_id``.

:func:`item_key_sql` builds the key in DuckDB SQL (every table), :func:`item_key` in Python (tests,
the CLI and files made by users); both give the same string.
"""

from __future__ import annotations


def _escape_sql(name: str) -> str:
    return f"replace(replace(CAST({name} AS VARCHAR), '\\', '\\\\'), '|', '\\|')"


def _escape(name: str) -> str:
    return str(name).replace("\\", "\\\\").replace("|", "\\|")


def item_key_sql(question_id: str, turn: str, model_a: str, model_b: str) -> str:
    """SQL expression of the pairwise item key over the given column expressions."""
    return (
        f"CAST({question_id} AS VARCHAR) || ':' || CAST({turn} AS VARCHAR) || ':' || "
        f"{_escape_sql(f'least({model_a}, {model_b})')} || '|' || {_escape_sql(f'greatest({model_a}, {model_b})')}"
    )


def item_key(question_id: int, turn: int, model_a: str, model_b: str) -> str:
    """Python twin of :func:`item_key_sql`."""
    lo, hi = sorted((model_a, model_b))
    return f"{question_id}:{turn}:{_escape(lo)}|{_escape(hi)}"


def pairwise_vote_key_sql(has_turn: bool) -> str:
    """Columns identifying one pairwise vote in a raw batch: the item key and the judge."""
    turn = "coalesce(TRY_CAST(turn AS BIGINT), 1)" if has_turn else "1"
    return f"{item_key_sql('question_id', turn, 'model_a', 'model_b')}, judge"
