"""Ordinal scales: a label set whose classes are ordered scores, and how a pairwise scale maps to outcomes.

A scale is declared as ``JUDGE_LABELS=1..8`` (or a judge file's label set marked ordinal). Its
classes keep their order (code 0 = the low end) and each has a numeric value, so a 7 against an 8
counts as near agreement and consensus and metrics can use distances.

Pairwise scales (Anthropic's 1–8 Likert recipe): 1 = strong preference for the first output
(A), 4 = a close call for A, 5 = a close call for B, 8 = strong preference for B. The low end
favours A. :meth:`OrdinalScale.outcome` maps a score to ``A`` / ``B`` / ``tie``:

- without ties (default): the lower half → A, the upper half → B (1–4 → A, 5–8 → B);
- with ties: the two middle values → tie (4 and 5 on 1–8); on an odd scale the middle value
  is a tie either way (3 on 1–5).

A fractional score (an expected score from LLM probabilities, a mean) is mapped by the same cut
points: below the lower middle → A, above the upper middle → B, in between → tie (with ties) or
to the nearer side (without ties; the exact midpoint is a tie).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")


@dataclass(frozen=True)
class OrdinalScale:
    """Ordered numeric classes.

    ``labels``: class names in order (code = position), e.g. ``("1", …, "8")``; ``values``: the
    number of each class (same length, strictly increasing); ``low_name`` / ``high_name``: what
    the ends mean (for reports); ``low_favours``: for a pairwise scale, the side the low end
    prefers (``"A"``), else None.
    """

    labels: tuple[str, ...]
    values: tuple[float, ...]
    low_name: str = "low"
    high_name: str = "high"
    low_favours: str | None = None

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.values) or len(self.labels) < 2:
            raise ValueError("an ordinal scale needs at least two classes, each with a value")
        if any(b <= a for a, b in zip(self.values, self.values[1:])):
            raise ValueError(f"scale values must increase strictly: {list(self.values)}")
        if self.low_favours not in (None, "A", "B"):
            raise ValueError(f"low_favours must be 'A', 'B' or None, got {self.low_favours!r}")

    @classmethod
    def parse(cls, text: str, *, pairwise: bool = False) -> "OrdinalScale | None":
        """``"1..8"`` → the scale 1, 2, …, 8 (pairwise: low end favours A); anything else → None."""
        match = _RANGE.match(text or "")
        if not match:
            return None
        lo, hi = int(match.group(1)), int(match.group(2))
        if hi <= lo:
            raise ValueError(f"scale {text!r}: the high end must be above the low end")
        numbers = range(lo, hi + 1)
        return cls(
            tuple(str(n) for n in numbers),
            tuple(float(n) for n in numbers),
            low_name=f"{lo} = strong preference for A" if pairwise else str(lo),
            high_name=f"{hi} = strong preference for B" if pairwise else str(hi),
            low_favours="A" if pairwise else None,
        )

    @property
    def value_array(self) -> np.ndarray:
        """Shape (K,): the value of each class code."""
        return np.asarray(self.values, dtype=float)

    @property
    def span(self) -> float:
        """High value − low value (for normalised distances)."""
        return self.values[-1] - self.values[0]

    def expected_score(self, probs: np.ndarray) -> np.ndarray:
        """Shape (N,) expected value of rows of ``probs`` (shape (N, K), columns in class order)."""
        return np.asarray(probs, dtype=float) @ self.value_array

    def _cut_points(self) -> tuple[float, float]:
        """(lower middle, upper middle) values: 4 and 5 on 1–8; 3 and 3 on 1–5."""
        k = len(self.values)
        return self.values[(k - 1) // 2], self.values[k // 2]

    def outcome(self, scores: np.ndarray, *, ties: bool = False) -> np.ndarray:
        """Map scores (shape (N,), values or fractional scores) to ``A`` / ``B`` / ``tie``.

        Needs a pairwise scale (``low_favours`` set). See the module docstring for the rule.
        """
        if self.low_favours is None:
            raise ValueError("outcome() needs a pairwise scale (low_favours = 'A' or 'B')")
        scores = np.asarray(scores, dtype=float)
        lo_mid, hi_mid = self._cut_points()
        low, high = self.low_favours, ("B" if self.low_favours == "A" else "A")
        if ties:  # [lower middle, upper middle] is the tie band
            low_side, high_side = scores < lo_mid, scores > hi_mid
        else:
            middle = (lo_mid + hi_mid) / 2.0
            low_side, high_side = scores < middle, scores > middle
        out = np.full(scores.shape, "tie", dtype=object)
        out[low_side] = low
        out[high_side] = high
        return out

    def outcome_probabilities(self, probs: np.ndarray, *, ties: bool = True) -> np.ndarray:
        """P(A), P(B), P(tie) per row from a distribution over the scale (shape (N, K) → (N, 3)).

        Each class's mass goes to the outcome :meth:`outcome` gives its value; without ties the
        tie column is 0 unless the scale is odd (its middle class)."""
        probs = np.asarray(probs, dtype=float)
        per_class = self.outcome(self.value_array, ties=ties)
        return np.stack([probs[:, per_class == side].sum(axis=1) for side in ("A", "B", "tie")], axis=1)
