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

A declared range (``JUDGE_LABELS=1..8``) is an **ordinal scale**
(:class:`judge_assets.core.scales.OrdinalScale`): ``label_set`` then also stores each class's
``value``, ``ordinal = true`` and, for a pairwise scale (``JUDGE_SCALE_ENDS``), ``low_favours``
(the side the low end prefers), so :func:`stored_scale` rebuilds the scale. A/B/tie and other
class sets store ``ordinal = false`` and NULL values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import duckdb

from judge_assets.core.db import table_columns, table_exists
from judge_assets.core.scales import OrdinalScale

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
    """An ordered class set; ``code(label)`` is the label's position. ``scale``: the ordinal
    scale when the classes are ordered scores (its labels are ``labels``), else None."""

    labels: tuple[str, ...]
    scale: OrdinalScale | None = None

    def __post_init__(self) -> None:
        if len(self.labels) < 2:
            raise ValueError(f"a label set needs at least two classes, got {list(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"duplicate classes in label set {list(self.labels)}")
        if self.scale is not None and tuple(self.scale.labels) != tuple(self.labels):
            raise ValueError(f"the scale's classes {list(self.scale.labels)} are not the label set {list(self.labels)}")

    @property
    def ordinal(self) -> bool:
        return self.scale is not None

    @property
    def k(self) -> int:
        return len(self.labels)

    def code(self, label: str) -> int:
        return self.labels.index(label)

    def as_rows(self) -> list[tuple[str, int]]:
        return [(label, i) for i, label in enumerate(self.labels)]

    def as_table_rows(self) -> list[tuple[str, int, float | None, bool, str | None]]:
        """Rows of the ``label_set`` table: ``label, code, value, ordinal, low_favours``."""
        scale = self.scale
        return [
            (label, i, scale.values[i] if scale else None, scale is not None, scale.low_favours if scale else None)
            for i, label in enumerate(self.labels)
        ]


PAIRWISE = LabelSet(PAIRWISE_LABELS)


def declared_label_set(declared: tuple[str, ...], scale_ends: tuple[str, ...] = ()) -> LabelSet:
    """The class set ``JUDGE_LABELS`` declares: one ``a..b`` entry is an ordinal scale (pairwise
    when ``scale_ends`` is ``("A", "B")`` or ``("B", "A")``: the side the low end favours first);
    anything else is the listed classes in order."""
    scale = OrdinalScale.parse(declared[0], pairwise=bool(scale_ends)) if len(declared) == 1 else None
    if scale is None:
        if scale_ends:
            raise ValueError(f"JUDGE_SCALE_ENDS is set but JUDGE_LABELS={','.join(declared)} is not a scale such as 1..8")
        return LabelSet(tuple(declared))
    if scale_ends and scale_ends[0] != scale.low_favours:
        lo, hi = scale.labels[0], scale.labels[-1]
        scale = replace(scale, low_favours=scale_ends[0], low_name=f"{lo} = strong preference for {scale_ends[0]}",
                        high_name=f"{hi} = strong preference for {scale_ends[1]}")
    return LabelSet(scale.labels, scale)


def stored_label_set(con: duckdb.DuckDBPyConnection, *, missing_ok: bool = False) -> LabelSet | None:
    """The class set stored in the ``label_set`` table (code order).

    Before the first build there is no such table: None when ``missing_ok``, else a ``ValueError``
    saying to materialize ``judgments`` first.
    """
    if not table_exists(con, "label_set"):
        if missing_ok:
            return None
        raise ValueError("label_set does not exist yet: materialize judgments first")
    if "ordinal" not in table_columns(con, "label_set"):  # a label_set written before scales existed
        return LabelSet(tuple(r[0] for r in con.execute("SELECT label FROM label_set ORDER BY code").fetchall()))
    rows = con.execute("SELECT label, value, ordinal, low_favours FROM label_set ORDER BY code").fetchall()
    labels = tuple(r[0] for r in rows)
    if not rows or not all(r[2] for r in rows):
        return LabelSet(labels)
    low_favours = rows[0][3]
    high = {"A": "B", "B": "A"}.get(low_favours)
    scale = OrdinalScale(
        labels,
        tuple(float(r[1]) for r in rows),
        low_name=f"{labels[0]} = strong preference for {low_favours}" if low_favours else labels[0],
        high_name=f"{labels[-1]} = strong preference for {high}" if low_favours else labels[-1],
        low_favours=low_favours,
    )
    return LabelSet(labels, scale)


def stored_scale(con: duckdb.DuckDBPyConnection) -> OrdinalScale | None:
    """The ordinal scale stored in ``label_set``; None when the class set is not ordinal (or not built yet)."""
    stored = stored_label_set(con, missing_ok=True)
    return stored.scale if stored is not None else None
