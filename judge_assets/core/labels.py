"""The label set: class names, their integer codes, and how raw answers map onto them.

Pairwise judgments use three classes in this fixed order (code = position):

====  =====  =====================================================
code  label  meaning
====  =====  =====================================================
0     A      the response of ``model_a`` (canonical order) is better
1     B      the response of ``model_b`` is better
2     tie    neither is better
====  =====  =====================================================

The generic long schema declares its classes (``JUDGE_LABELS``) or has them inferred as the
sorted distinct labels. The chosen set is stored in the ``label_set`` table so every later
stage (and every SQL user) reads the same codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from judge_assets.core.db import table_exists

PAIRWISE_LABELS: tuple[str, ...] = ("A", "B", "tie")

#: ``winner`` values of the MT-Bench schema and the label each maps to (before any flip).
WINNER_TO_LABEL: dict[str, str] = {
    "model_a": "A",
    "model_b": "B",
    "tie": "tie",
    "tie (inconsistent)": "tie",
}

#: The label a vote takes when the pair is stored in the other order.
FLIPPED: dict[str, str] = {"A": "B", "B": "A", "tie": "tie"}


@dataclass(frozen=True)
class LabelSet:
    """An ordered class set; ``code(label)`` is the label's position."""

    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.labels) < 2:
            raise ValueError(f"a label set needs at least two classes, got {list(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"duplicate classes in label set {list(self.labels)}")

    @property
    def k(self) -> int:
        return len(self.labels)

    def code(self, label: str) -> int:
        return self.labels.index(label)

    def as_rows(self) -> list[tuple[str, int]]:
        return [(label, i) for i, label in enumerate(self.labels)]


PAIRWISE = LabelSet(PAIRWISE_LABELS)


def stored_label_set(con: duckdb.DuckDBPyConnection, *, missing_ok: bool = False) -> LabelSet | None:
    """The class set stored in the ``label_set`` table (code order).

    Before the first build there is no such table: None when ``missing_ok``, else a ``ValueError``
    saying to materialize ``judgments`` first.
    """
    if not table_exists(con, "label_set"):
        if missing_ok:
            return None
        raise ValueError("label_set does not exist yet: materialize judgments first")
    return LabelSet(tuple(r[0] for r in con.execute("SELECT label FROM label_set ORDER BY code").fetchall()))
