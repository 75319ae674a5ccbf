"""The pairwise prompt ``pairwise-v1``: rendering one ``items`` row as chat messages, mapping the
first token's ``top_logprobs`` to labels, and combining the two answer orders of an item.

The judge sees one conversation and two final answers labelled A and B and must answer with
one token: ``A``, ``B`` or ``C``. ``C`` stands for a tie: a single letter is one token in the common
tokenizers, whereas "tie" may be split or compete with words like "The". The label probabilities
are read from the first token's ``top_logprobs`` candidates (``exp(logprob)`` summed per label).

Position bias: each item is scored in both orders (model_a shown as A, then model_b shown as
A, "swapped"); swapped probabilities are mapped back to canonical labels before averaging.
Nothing here talks to an endpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

PROMPT_VERSION = "pairwise-v1"
"""Bump whenever ``SYSTEM_PROMPT``/``USER_TEMPLATE``/the rendering changes: it is part of the cache key."""

TIE_TOKEN = "C"
LABEL_TOKENS: Mapping[str, str] = {"A": "A", "B": "B", TIE_TOKEN: "tie", "TIE": "tie"}
"""First-token candidate (stripped, upper-cased) → label, in the order the answers are shown."""

SYSTEM_PROMPT = (
    "You are an impartial judge comparing two AI assistants' answers to the same user "
    "conversation. Judge only the final answers: which one follows the user's instructions "
    "and answers the final question better (correctness, helpfulness, relevance, depth, "
    "clarity). When a reference answer is given it is correct; use it to check correctness. "
    "The order in which the answers are shown, their length and the assistants' names must "
    "not influence you.\n"
    f"Reply with exactly one character: A if Assistant A's final answer is better, B if "
    f"Assistant B's final answer is better, {TIE_TOKEN} if they are equally good (a tie). "
    "Output nothing else."
)
USER_TEMPLATE = (
    "[Conversation]\n{conversation}\n\n"
    "{reference}"
    "[Final answer of Assistant A]\n{answer_a}\n\n"
    "[Final answer of Assistant B]\n{answer_b}\n\n"
    f"Which final answer is better? Reply A, B, or {TIE_TOKEN} (tie)."
)
REFERENCE_TEMPLATE = "[Reference answer to the final question]\n{reference}\n\n"


def _texts(item: Mapping, column: str) -> list[str]:
    value = item.get(column)
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return []
    if isinstance(value, str):
        raise ValueError(f"item {item.get('item_id')!r}: {column} must be a list of strings, got a string")
    return [str(v) for v in value]


def render_messages(item: Mapping, swapped: bool) -> list[dict]:
    """Chat messages asking the judge to compare the final answers of one ``items`` row.

    ``item`` needs ``user_turns``, ``answers_a``, ``answers_b`` (equal-length lists: the user
    messages up to and including the judged turn, and each model's answers to them) and may
    carry ``reference`` (per-turn reference answers; the judged turn's one is shown).
    Earlier turns are shown with both assistants' answers so multi-turn context is visible.
    ``swapped=True`` shows model_b's answers as Assistant A and model_a's as Assistant B.
    Returns ``[{"role": "system", ...}, {"role": "user", ...}]``.
    """
    users = _texts(item, "user_turns")
    first, second = _texts(item, "answers_a"), _texts(item, "answers_b")
    if not users or len(first) != len(users) or len(second) != len(users):
        raise ValueError(
            f"item {item.get('item_id')!r}: user_turns, answers_a and answers_b must be non-empty and "
            f"equally long (got {len(users)}, {len(first)}, {len(second)})"
        )
    if swapped:
        first, second = second, first
    blocks = []
    for turn, question in enumerate(users, start=1):
        blocks.append(f"### User (turn {turn})\n{question}")
        if turn < len(users):
            blocks.append(f"### Assistant A (turn {turn})\n{first[turn - 1]}")
            blocks.append(f"### Assistant B (turn {turn})\n{second[turn - 1]}")
    references = _texts(item, "reference")
    reference = references[len(users) - 1] if len(references) >= len(users) else ""
    user = USER_TEMPLATE.format(
        conversation="\n\n".join(blocks),
        reference=REFERENCE_TEMPLATE.format(reference=reference) if reference.strip() else "",
        answer_a=first[-1],
        answer_b=second[-1],
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


@dataclass(frozen=True)
class TokenScore:
    """One request's label probabilities, in canonical orientation (A = model_a).

    ``p_a, p_b, p_tie`` are normalized over the label tokens found (sum to 1; NaN when
    ``status == "no_label_token"``). ``label_mass`` is the raw probability the first token
    put on label tokens (1 − mass went to other tokens or beyond the top-k).
    """

    p_a: float
    p_b: float
    p_tie: float
    label_mass: float
    status: str


def map_top_logprobs(top_logprobs: Sequence[Mapping], swapped: bool) -> TokenScore:
    """Map first-token candidates ``[{"token": str, "logprob": float}, ...]`` to labels.

    Tokens are stripped and upper-cased (``" A"``, ``"A"``, ``"a"`` all mean A; ``C``/``tie``
    mean tie); their ``exp(logprob)`` are summed per label. With ``swapped`` the shown A is
    model_b, so A and B are exchanged back. No label token among the candidates gives status
    ``no_label_token`` with NaN probabilities — never a uniform guess.
    """
    mass = {"A": 0.0, "B": 0.0, "tie": 0.0}
    for candidate in top_logprobs:
        label = LABEL_TOKENS.get(str(candidate["token"]).strip().upper())
        if label is not None:
            mass[label] += math.exp(float(candidate["logprob"]))
    total = sum(mass.values())
    if swapped:
        mass["A"], mass["B"] = mass["B"], mass["A"]
    if total <= 0.0:
        return TokenScore(math.nan, math.nan, math.nan, 0.0, "no_label_token")
    return TokenScore(mass["A"] / total, mass["B"] / total, mass["tie"] / total, min(total, 1.0), "ok")


def combine_orders(per_order: pd.DataFrame) -> pd.DataFrame:
    """Combine each item's per-order scores into one score.

    ``per_order``: one row per (item, order) with ``item_id``, ``swapped`` (bool), ``status``
    ('ok' | 'no_label_token' | 'rejected' | 'error'), ``error`` (reason or None), ``p_a, p_b, p_tie``
    (canonical orientation), ``label_mass``.

    Returns one row per item (first-appearance order): ``p_a, p_b, p_tie`` = mean of the
    orders with status ``ok``; ``label_mass`` = their mean; ``n_orders`` = how many orders are
    ``ok``; ``position_consistency`` = 1 − total variation distance between the two orders'
    distributions (1 = the judge gives the same probabilities whichever answer is shown first,
    0 = disjoint; NaN unless both orders are ``ok``); per-order ``p_*_ab`` / ``p_*_ba``; and
    ``status``: ``error:<reason>`` if any order failed (rerun to fill it), else ``ok`` if any
    order found a label token, else ``rejected:<reason>`` if the endpoint refused an order for
    good (e.g. ``context_overflow``), else ``no_label_token``.
    """
    frame = per_order.copy()
    frame["order"] = np.where(frame["swapped"].astype(bool), "ba", "ab")
    ok = frame["status"].eq("ok")
    items = pd.Index(pd.unique(frame["item_id"]), name="item_id")
    wide = frame.pivot(index="item_id", columns="order", values=["p_a", "p_b", "p_tie"]).reindex(items)
    out = pd.DataFrame(index=items)
    for order in ("ab", "ba"):
        for col in ("p_a", "p_b", "p_tie"):
            out[f"{col}_{order}"] = wide[(col, order)] if (col, order) in wide.columns else np.nan
    okf = frame[ok]
    means = okf.groupby("item_id")[["p_a", "p_b", "p_tie", "label_mass"]].mean().reindex(items)
    out[["p_a", "p_b", "p_tie", "label_mass"]] = means
    out["n_orders"] = okf.groupby("item_id").size().reindex(items).fillna(0).astype("int64")
    ab = out[["p_a_ab", "p_b_ab", "p_tie_ab"]].to_numpy(float)
    ba = out[["p_a_ba", "p_b_ba", "p_tie_ba"]].to_numpy(float)
    out["position_consistency"] = 1.0 - 0.5 * np.abs(ab - ba).sum(axis=1)
    first_error, first_rejection = (
        frame[frame["status"].eq(status)].groupby("item_id")["error"].first().reindex(items)
        for status in ("error", "rejected")
    )
    any_ok = out["n_orders"] > 0
    out["status"] = np.select(
        [first_error.notna(), any_ok, first_rejection.notna()],
        ["error:" + first_error.fillna("").astype(str), "ok", "rejected:" + first_rejection.fillna("").astype(str)],
        "no_label_token",
    )
    return out.reset_index()


def first_position_preference(scores: pd.DataFrame) -> float:
    """Share of the judge's decisive verdicts that favour whichever answer is shown first.

    ``scores``: the per-item output of :func:`combine_orders` / :func:`score_items` (needs the
    per-order columns ``p_a_ab, p_b_ab, p_tie_ab, p_a_ba, p_b_ba, p_tie_ba``). Each order whose
    argmax is A or B (not tie) is one verdict; in order ab the first-shown answer is A, in
    order ba it is B. 0.5 = no position bias; NaN when there are no decisive verdicts.
    """
    first = []
    for order, shown_first in (("ab", 0), ("ba", 1)):
        probs = scores[[f"p_a_{order}", f"p_b_{order}", f"p_tie_{order}"]].to_numpy(float)
        probs = probs[~np.isnan(probs).any(axis=1)]
        verdict = probs.argmax(axis=1)
        decisive = verdict[verdict < 2]
        first.append(decisive == shown_first)
    decided = np.concatenate(first)
    return float(decided.mean()) if len(decided) else math.nan
