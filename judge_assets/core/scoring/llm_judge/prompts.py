"""A judge's side of one request, without transport: rendering an ``items`` row as chat messages
from the judge's templates, mapping the first token's ``top_logprobs`` to the judge's labels,
combining an item's answer orders, and picking a label without first-position bias.

Label probabilities are read from the first token's ``top_logprobs`` candidates
(``exp(logprob)`` summed per label, then normalised over the labels found). A pairwise judge
is asked in both orders (output A shown first, then output B shown first, "swapped"); the
swapped answer is mapped back to canonical labels (:meth:`.specs.JudgeSpec.swapped_label`)
before the orders are averaged.

Ties: when two or more labels share the highest probability (within ``TIE_EPS``) the label is
``tie`` if the judge has a ``tie`` label (pairwise verdicts: if ``tie`` is a verdict), else one
of the tied labels drawn with a seed from sha256(item id, judge name), so the same inputs always
give the same label and no position or label order is favoured.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .specs import BUILTIN_DIR, DEFAULT_JUDGE, TIE_LABEL, JudgeSpec, load_judge

TIE_EPS = 1e-9
"""Probabilities closer than this count as equal when picking a label."""


@lru_cache(maxsize=1)
def default_judge() -> JudgeSpec:
    """The built-in MT-Bench pairwise judge (``judge_assets/judges/mt-bench-pairwise.yaml``)."""
    return load_judge(BUILTIN_DIR / f"{DEFAULT_JUDGE}.yaml")


def _missing(value) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and pd.isna(value))


def _texts(item: Mapping, column: str) -> list[str]:
    value = item.get(column)
    if _missing(value):
        return []
    if isinstance(value, str):
        raise ValueError(f"item {item.get('item_id')!r}: {column} must be a list of strings, got a string")
    return ["" if _missing(v) else str(v) for v in value]


def _last(values: list[str]) -> str:
    return values[-1] if values else ""


def _conversation(users: list[str], first: list[str], second: list[str] | None) -> str:
    """Earlier turns with their outputs (both for pairwise, labelled A/B), then the judged user turn."""
    blocks = []
    for turn, question in enumerate(users, start=1):
        blocks.append(f"### User (turn {turn})\n{question}")
        if turn < len(users):
            if second is None:
                if turn <= len(first):
                    blocks.append(f"### Assistant (turn {turn})\n{first[turn - 1]}")
            else:
                blocks.append(f"### Assistant A (turn {turn})\n{first[turn - 1]}")
                blocks.append(f"### Assistant B (turn {turn})\n{second[turn - 1]}")
    return "\n\n".join(blocks)


def item_values(item: Mapping, judge: JudgeSpec, swapped: bool = False) -> dict[str, str]:
    """Every placeholder value of ``judge`` for one ``items`` row ("" when the item has none).

    ``item`` may carry ``user_turns``, ``answers_a``, ``answers_b``, ``response``, ``reference``
    (lists, one entry per turn; the judged turn is the last), ``criterion``, ``category`` and any
    other column. Pairwise items need equally long ``user_turns``, ``answers_a``, ``answers_b``
    (else ValueError naming the item). ``swapped`` shows ``answers_b`` as the first output.
    """
    users = _texts(item, "user_turns")
    values: dict[str, str] = {}
    if judge.shape == "pairwise":
        first, second = _texts(item, "answers_a"), _texts(item, "answers_b")
        if first and second:
            if not users or len(first) != len(users) or len(second) != len(users):
                raise ValueError(
                    f"item {item.get('item_id')!r}: user_turns, answers_a and answers_b must be non-empty and "
                    f"equally long (got {len(users)}, {len(first)}, {len(second)})"
                )
        if swapped:
            first, second = second, first
        values.update(conversation=_conversation(users, first, second), response_a=_last(first), response_b=_last(second))
    else:
        response = _texts(item, "response")
        values["conversation"] = _conversation(users, response if judge.shape != "classify" else [], None)
        if judge.shape != "classify":
            values["response"] = _last(response)
    references = _texts(item, "reference")
    judged = max(len(users), 1) - 1
    values["reference"] = references[judged] if len(references) > judged else ""
    values["prompt"] = _last(users)
    for name in judge.placeholders:
        if name not in values:
            value = item.get(name)
            values[name] = "" if _missing(value) else str(value)
    for name, text in judge.defaults.items():
        if not values.get(name, "").strip():
            values[name] = text
    return values


def fits(item: Mapping, judge: JudgeSpec) -> bool:
    """Whether ``judge`` is sent for this item: every value it requires is non-empty (pairwise:
    two outputs; single: one; reference: an output and a reference)."""
    values = item_values(item, judge)
    return all(values.get(name, "").strip() for name in judge.required_fields)


def render_messages(item: Mapping, swapped: bool = False, judge: JudgeSpec | None = None) -> list[dict]:
    """Chat messages asking ``judge`` (default: the built-in MT-Bench pairwise judge) about one
    ``items`` row: ``[{"role": "system", ...}, {"role": "user", ...}]``. An ``optional``
    placeholder renders as its wrapper (itself filled in) when the item has the value, else "".
    ``swapped=True`` (pairwise) shows output B first."""
    judge = judge or default_judge()
    values = item_values(item, judge, swapped)
    filled = dict(values)
    for name, wrapper in judge.optional.items():
        filled[name] = wrapper.format_map(values) if values.get(name, "").strip() else ""
    return [
        {"role": "system", "content": judge.system.format_map(filled)},
        {"role": "user", "content": judge.user.format_map(filled)},
    ]


@dataclass(frozen=True)
class TokenScore:
    """One request's label probabilities in canonical orientation: ``probs`` in
    ``judge.labels`` order, normalised over the label tokens found (None when ``status ==
    'no_label_token'``); ``label_mass`` the raw probability the first token put on label tokens."""

    probs: tuple[float, ...] | None
    label_mass: float
    status: str


def map_top_logprobs(top_logprobs: Sequence[Mapping], judge: JudgeSpec, swapped: bool = False) -> TokenScore:
    """Map first-token candidates ``[{"token": str, "logprob": float}, ...]`` to ``judge``'s labels.

    Tokens are stripped and upper-cased before lookup; their ``exp(logprob)`` are summed per
    label. With ``swapped`` a pairwise answer is mapped back to canonical labels. No label token
    among the candidates gives status ``no_label_token`` — never a uniform guess.
    """
    back = judge.swapped_label() if swapped else None
    mass = dict.fromkeys(judge.labels, 0.0)
    for candidate in top_logprobs:
        label = judge.tokens.get(str(candidate["token"]).strip().upper())
        if label is not None:
            mass[back[label] if back else label] += math.exp(float(candidate["logprob"]))
    total = sum(mass.values())
    if total <= 0.0:
        return TokenScore(None, 0.0, "no_label_token")
    return TokenScore(tuple(mass[label] / total for label in judge.labels), min(total, 1.0), "ok")


def pick_label(probs: Sequence[float], labels: Sequence[str], item_id: str, judge_name: str) -> str | None:
    """The most probable label; ties as in the module docstring. None when ``probs`` has a NaN."""
    p = np.asarray(probs, dtype=float)
    if len(p) == 0 or np.isnan(p).any():
        return None
    best = np.flatnonzero(p >= p.max() - TIE_EPS)
    if len(best) == 1:
        return labels[best[0]]
    if TIE_LABEL in labels:
        return TIE_LABEL
    seed = int.from_bytes(hashlib.sha256(f"{item_id}\x1f{judge_name}".encode()).digest()[:8], "big")
    return labels[best[np.random.default_rng(seed).integers(len(best))]]


def verdict_probs(probs: Sequence[float] | None, judge: JudgeSpec) -> tuple[float, float, float]:
    """Pairwise: ``(P(A), P(B), P(tie))`` from label probabilities (see :mod:`.specs` for the
    ordinal mapping); NaNs when ``probs`` is None."""
    if probs is None:
        return (math.nan, math.nan, math.nan)
    out = {"A": 0.0, "B": 0.0, TIE_LABEL: 0.0}
    for label, verdict in judge.verdict_of_label().items():
        out[verdict] += probs[judge.labels.index(label)]
    return (out["A"], out["B"], out[TIE_LABEL])


def combine_orders(per_order: pd.DataFrame, judge: JudgeSpec) -> pd.DataFrame:
    """Combine each item's per-order results into one row per item (first-appearance order).

    ``per_order``: one row per (item, order) with ``item_id``, ``swapped`` (bool), ``status``
    ('ok' | 'no_label_token' | 'rejected' | 'error'), ``error`` (reason or None), ``probs``
    (tuple in ``judge.labels`` order, canonical orientation, or None), ``label_mass``.

    Returns ``item_id``; ``label_probs`` (dict label → mean probability over the ``ok`` orders,
    None when there are none); ``label_mass`` (their mean); ``n_orders`` (orders ``ok``);
    ``position_consistency`` (1 − total variation distance between the two orders' label
    distributions; NaN unless both are ``ok``); ``status``: ``error:<reason>`` if any order
    failed (rerun to fill it), else ``ok`` if any order found a label token, else
    ``rejected:<reason>`` if the endpoint refused an order for good (e.g. context_overflow), else
    ``no_label_token``. Pairwise judges add ``p_a, p_b, p_tie`` (verdict probabilities of the
    mean) and the per-order ``p_a_ab, p_b_ab, p_tie_ab, p_a_ba, p_b_ba, p_tie_ba``.
    """
    rows = []
    for item_id, group in per_order.groupby("item_id", sort=False):
        by_order = {bool(s): r for s, r in zip(group["swapped"], group.to_dict("records"))}
        ok = [r for r in by_order.values() if r["status"] == "ok"]
        mean = tuple(np.mean([r["probs"] for r in ok], axis=0)) if ok else None
        row = {
            "item_id": item_id,
            "label_probs": dict(zip(judge.labels, map(float, mean))) if mean else None,
            "label_mass": float(np.mean([r["label_mass"] for r in ok])) if ok else math.nan,
            "n_orders": len(ok),
            "position_consistency": math.nan,
        }
        both = [by_order.get(False), by_order.get(True)]
        if all(r is not None and r["status"] == "ok" for r in both):
            row["position_consistency"] = 1.0 - 0.5 * float(np.abs(np.subtract(both[0]["probs"], both[1]["probs"])).sum())
        errors = [r["error"] for r in group.to_dict("records") if r["status"] == "error"]
        rejections = [r["error"] for r in group.to_dict("records") if r["status"] == "rejected"]
        row["status"] = (
            f"error:{errors[0]}" if errors else "ok" if ok else f"rejected:{rejections[0]}" if rejections else "no_label_token"
        )
        if judge.shape == "pairwise":
            row["p_a"], row["p_b"], row["p_tie"] = verdict_probs(mean, judge)
            for order, swapped in (("ab", False), ("ba", True)):
                r = by_order.get(swapped)
                probs = r["probs"] if r is not None and r["status"] == "ok" else None
                row[f"p_a_{order}"], row[f"p_b_{order}"], row[f"p_tie_{order}"] = verdict_probs(probs, judge)
        rows.append(row)
    return pd.DataFrame(rows)


def first_position_preference(scores: pd.DataFrame) -> float:
    """Share of a pairwise judge's decisive verdicts that favour whichever output is shown first.

    ``scores``: rows with the per-order columns ``p_a_ab, p_b_ab, p_tie_ab, p_a_ba, p_b_ba,
    p_tie_ba``. Each order whose verdict is A or B (not a tie, and not a draw between A and B) is
    one verdict; in order ab the first-shown output is A, in order ba it is B. 0.5 = no position
    bias; NaN when there are no decisive verdicts.
    """
    first = []
    for order, shown_first in (("ab", 0), ("ba", 1)):
        probs = scores[[f"p_a_{order}", f"p_b_{order}", f"p_tie_{order}"]].to_numpy(float)
        probs = probs[~np.isnan(probs).any(axis=1)]
        top = probs.max(axis=1, keepdims=True) if len(probs) else probs
        winners = probs >= top - TIE_EPS
        decisive = winners[:, :2].sum(axis=1) == 1
        decisive &= ~winners[:, 2]
        first.append(winners[decisive, shown_first])
    decided = np.concatenate(first)
    return float(decided.mean()) if len(decided) else math.nan
