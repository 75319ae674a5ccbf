"""Scoring a set of items with one judge and one model: build the requests, skip the cached ones,
call the rest, read the answers back as label probabilities."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from pathlib import Path
from typing import Callable

import duckdb
import pandas as pd

from judge_assets.core.db import connect

from .batch import ensure_open_batches, score_batch
from .cache import CacheWriter, cache_key, cached_keys, endpoint_answered, ensure_cache, flush_periodically, read_results
from .client import check_model, make_client, score_online
from .config import JudgeConfig
from .faults import Breaker, EndpointError, scrubbed_library_logs
from .prompts import combine_orders, default_judge, fits, item_values, map_top_logprobs, pick_label, render_messages
from .protocol import Request, request_body
from .specs import OUTPUT_FIELDS, JudgeSpec
from .stats import ScoringStats

log = logging.getLogger(__name__)

SCORE_COLUMNS = (
    "item_id", "judge", "model", "annotator", "shape", "endpoint_host", "status", "predicted_label", "verdict",
    "verdict_labels", "expected_score", "label_mass", "n_requests", "n_answers", "n_orders", "position_consistency",
    "p_a", "p_b", "p_tie", "p_a_ab", "p_b_ab", "p_tie_ab", "p_a_ba", "p_b_ba", "p_tie_ba", "longer_output",
    "attempts", "prompt_tokens", "completion_tokens", "latency_s", "cost_usd",
)
"""Columns of ``llm_judge_scores`` (one row per item × judge × model):

- ``annotator`` = ``<judge>:<model>``, the name the verdicts vote under in ``judgments``;
  ``shape`` the judge's shape; ``endpoint_host`` where the model was asked;
- ``status``: ``ok`` | ``no_label_token`` (answered, but with no label token among the
  candidates) | ``rejected:<reason>`` | ``error:<reason>`` (retried by the next run) |
  ``skipped:<fields>`` (the judge's shape or templates need values this item lacks: not sent);
- ``predicted_label``: the most probable of the judge's labels (ties: :func:`.prompts.pick_label`);
  ``verdict``: the same for non-pairwise judges, ``A``/``B``/``tie`` for pairwise ones (from
  ``p_a, p_b, p_tie``); ``verdict_labels`` the labels a verdict can take;
- ``expected_score``: ordinal judges, Σ rank × P(label) with ranks 1..K; else NULL;
- ``label_mass`` (probability the first token put on label tokens, mean over orders),
  ``n_requests`` (orders sent), ``n_answers`` (orders answered), ``n_orders`` (orders with a
  label token), ``position_consistency`` (1 − TV distance of the two orders; pairwise);
- pairwise only: ``p_a, p_b, p_tie`` (verdict probabilities, swap-averaged), the per-order
  ``p_*_ab`` / ``p_*_ba``, ``longer_output`` (``A``/``B``: the output with more characters, NULL
  when equal);
- cost of the item's requests, whenever they were paid: ``attempts``, ``prompt_tokens``,
  ``completion_tokens``, ``latency_s`` (summed request time), ``cost_usd`` (NULL without prices).

:func:`score_items` also returns ``label_probs`` (dict label → probability), which the scoring
asset writes to ``llm_judge_probs`` in long form.
"""

Progress = Callable[[int, int], None]
_FLOAT_COLUMNS = (
    "expected_score", "label_mass", "position_consistency", "p_a", "p_b", "p_tie", "p_a_ab", "p_b_ab", "p_tie_ab",
    "p_a_ba", "p_b_ba", "p_tie_ba", "latency_s", "cost_usd",
)
_INT_COLUMNS = ("n_requests", "n_answers", "n_orders", "attempts", "prompt_tokens", "completion_tokens")


class MissingColumnError(ValueError):
    """A judge needs a column the data does not have; raised before any call."""


def _has_text(value) -> bool:
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return False
    if isinstance(value, str):
        return bool(value.strip())
    return any(_has_text(v) for v in value)


def check_columns(items: pd.DataFrame, judge: JudgeSpec, data: str = "the items table") -> pd.Series:
    """Which items ``judge`` is sent for (boolean Series aligned with ``items``).

    Items without the outputs the shape needs are left out silently (a pairwise judge is not
    sent for an item without two outputs). Any other value the judge requires (``reference``,
    ``criterion``, an extra column its templates name) must be present on some item: otherwise
    :class:`MissingColumnError` names the judge, its file, the column and ``data``.
    """
    if items.empty:
        return pd.Series([], dtype=bool)
    records = items.to_dict("records")
    values = [item_values(r, judge) for r in records]
    has_outputs = pd.Series(
        [all(v.get(f, "").strip() for f in judge.required_fields if f in OUTPUT_FIELDS) for v in values], index=items.index
    )
    for name in judge.required_fields:
        if name in OUTPUT_FIELDS or not has_outputs.any():
            continue
        if not any(v.get(name, "").strip() for v, ok in zip(values, has_outputs) if ok):
            column = {"prompt": "prompt", "conversation": "prompt"}.get(name, name)
            state = "lacks" if column not in items.columns and name not in ("prompt", "conversation") else "has no value in"
            raise MissingColumnError(
                f"judge {judge.name!r} ({judge.source}) needs column {column!r}, which {data} {state}: add it to the "
                f"data, or give {{{name}}} a default or an optional wrapper in the judge file"
            )
    return pd.Series([fits(r, judge) for r in records], index=items.index) & has_outputs


def build_requests(items: pd.DataFrame, config: JudgeConfig, judge: JudgeSpec) -> list[Request]:
    """One request per fitting item and answer order (pairwise with ``swap``: both), in item order."""
    orders = (False, True) if judge.shape == "pairwise" and judge.swap and config.swap else (False,)
    requests = []
    for item in items.to_dict("records"):
        for swapped in orders:
            messages = render_messages(item, swapped, judge)
            body = request_body(config, judge, messages)
            requests.append(Request(cache_key(config, body), str(item["item_id"]), swapped, messages, body))
    return requests


def _score_frame(items: pd.DataFrame, sent: pd.Series, requests: list[Request], per_order: pd.DataFrame,
                 config: JudgeConfig, judge: JudgeSpec) -> pd.DataFrame:
    """The rows of :data:`SCORE_COLUMNS` (+ ``label_probs``) for every item, in ``items`` order."""
    mapped = [
        map_top_logprobs(json.loads(raw), judge, swapped) if status == "ok" and raw else None
        for raw, status, swapped in zip(per_order["top_logprobs_json"], per_order["status"], per_order["swapped"])
    ]
    per_order = per_order.assign(
        status=[("ok" if m.status == "ok" else m.status) if m else s for m, s in zip(mapped, per_order["status"])],
        probs=[m.probs if m else None for m in mapped],
        label_mass=[m.label_mass if m else math.nan for m in mapped],
        answered=[s == "ok" for s in per_order["status"]],
    )
    combined = combine_orders(per_order, judge).set_index("item_id") if len(per_order) else pd.DataFrame()
    costs = per_order.groupby("item_id").agg(
        n_requests=("swapped", "size"), n_answers=("answered", "sum"), attempts=("attempts", "sum"),
        prompt_tokens=("prompt_tokens", "sum"), completion_tokens=("completion_tokens", "sum"), latency_s=("latency_s", "sum"),
    ) if len(per_order) else pd.DataFrame()
    verdict_labels = list(judge.verdict_labels)
    rows = []
    for item, is_sent in zip(items.to_dict("records"), sent):
        item_id = str(item["item_id"])
        row = dict.fromkeys(SCORE_COLUMNS)
        row.update(item_id=item_id, judge=judge.name, model=config.model, annotator=f"{judge.name}:{config.model}",
                   shape=judge.shape, endpoint_host=config.endpoint_host, verdict_labels=verdict_labels, label_probs=None)
        for col in _INT_COLUMNS:
            row[col] = 0
        if not is_sent:
            values = item_values(item, judge)
            row["status"] = "skipped:" + ",".join(f for f in judge.required_fields if not values.get(f, "").strip())
            rows.append(row)
            continue
        c = combined.loc[item_id].to_dict()
        row.update({k: v for k, v in c.items() if k in row})
        row.update(costs.loc[item_id].to_dict())
        probs = c["label_probs"]
        if probs:
            row["label_probs"] = probs
            row["predicted_label"] = pick_label([probs[label] for label in judge.labels], judge.labels, item_id, judge.name)
            if judge.ordinal:
                row["expected_score"] = float(sum((i + 1) * probs[label] for i, label in enumerate(judge.labels)))
            if judge.shape == "pairwise":
                verdict = {"A": c["p_a"], "B": c["p_b"], "tie": c["p_tie"]}
                row["verdict"] = pick_label([verdict[v] for v in verdict_labels], verdict_labels, item_id, judge.name)
            else:
                row["verdict"] = row["predicted_label"]
        if judge.shape == "pairwise":
            values = item_values(item, judge)
            len_a, len_b = len(values["response_a"]), len(values["response_b"])
            row["longer_output"] = "A" if len_a > len_b else "B" if len_b > len_a else None
        if config.price_in_per_1m is not None or config.price_out_per_1m is not None:
            row["cost_usd"] = (
                row["prompt_tokens"] * (config.price_in_per_1m or 0.0) + row["completion_tokens"] * (config.price_out_per_1m or 0.0)
            ) / 1e6
        rows.append(row)
    out = pd.DataFrame(rows, columns=[*SCORE_COLUMNS, "label_probs"])
    for col in _FLOAT_COLUMNS:
        out[col] = out[col].astype("float64")
    for col in _INT_COLUMNS:
        out[col] = out[col].fillna(0).astype("int64")
    return out


async def ascore_items(
    con: duckdb.DuckDBPyConnection,
    items: pd.DataFrame,
    config: JudgeConfig,
    progress: Progress | None = None,
    judge: JudgeSpec | None = None,
) -> tuple[pd.DataFrame, ScoringStats]:
    """Async :func:`score_items` on an open connection (for callers already in an event loop).

    Raises :class:`~.faults.EndpointError` (with ``stats`` set) when the endpoint cannot be
    used; the results that came back before are kept in the cache.
    """
    judge = judge or default_judge()
    started = time.monotonic()
    stats = ScoringStats(mode=config.mode)
    if "item_id" not in items.columns:
        raise ValueError("items is missing column(s) ['item_id']")
    if items["item_id"].duplicated().any():
        raise ValueError(f"items has duplicate item_id values, e.g. {items['item_id'][items['item_id'].duplicated()].iloc[0]!r}")
    sent = check_columns(items, judge)
    requests = build_requests(items[sent.to_numpy(dtype=bool)] if len(items) else items, config, judge)
    ensure_cache(con)
    unique = list({r.cache_key: r for r in requests}.values())
    cached = cached_keys(con, [r.cache_key for r in unique])
    todo = [r for r in unique if r.cache_key not in cached]
    stats.requests, stats.cache_hits = len(unique), len(cached)
    done = len(cached)
    if progress:
        progress(done, len(unique))

    def step() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, len(unique))

    def batch_progress(n_done: int) -> None:
        if progress:
            progress(len(cached) + n_done, len(unique))

    log.info("LLM judge %s:%s: %d requests, %d cached, %d to call", judge.name, config.model, len(unique), len(cached), len(todo))
    writer = CacheWriter(con, config, judge.name)
    if todo:
        if config.mode == "batch":
            ensure_open_batches(con)
        breaker = Breaker(config, accepts=endpoint_answered(con, config))
        client = make_client(config)
        stop = asyncio.Event()
        flusher = asyncio.create_task(flush_periodically(writer, stop))
        try:
            with scrubbed_library_logs(config.secrets):
                await check_model(client, config, breaker)
                if config.mode == "online":
                    await score_online(client, todo, config, writer, stats, breaker, step)
                else:
                    await score_batch(client, todo, config, writer, stats, breaker, batch_progress)
        except EndpointError as exc:
            stats.wall_s = time.monotonic() - started
            exc.stats = stats
            log.error("LLM judge stopped: %s; %s", exc, stats.as_dict())
            raise
        finally:
            stop.set()
            await flusher
            await client.close()
    per_order = read_results(con, requests)
    scores = _score_frame(items, sent, requests, per_order, config, judge)
    stats.wall_s = time.monotonic() - started
    log.info("LLM judge %s:%s done: %s", judge.name, config.model, stats.as_dict())
    return scores, stats


def score_items(
    con_or_db_path: duckdb.DuckDBPyConnection | str | Path,
    items: pd.DataFrame,
    config: JudgeConfig,
    progress: Progress | None = None,
    judge: JudgeSpec | None = None,
) -> tuple[pd.DataFrame, ScoringStats]:
    """Score every item ``judge`` fits (default: the built-in MT-Bench pairwise judge) with the
    model of ``config``, calling the endpoint only for uncached requests.

    ``items``: rows of the ``items`` table (``item_id`` and the columns the judge reads, see
    :func:`.prompts.item_values`). ``progress(done, total)`` is called as requests finish
    (cache hits count as done). Returns ``(scores, stats)``: ``scores`` has one row per item in
    input order with the columns :data:`SCORE_COLUMNS` plus ``label_probs``; ``stats`` is a
    :class:`ScoringStats`. Raises :class:`MissingColumnError` before any call when the judge
    needs a column the items lack, and :class:`~.faults.EndpointError` when the endpoint cannot
    be used as configured (wrong key, URL or model, unreachable, hanging, failing every request,
    no batch API in batch mode): its message is one line naming the host and the server's
    message, never a secret.
    """
    if isinstance(con_or_db_path, (str, Path)):
        con = connect(con_or_db_path)
        try:
            return asyncio.run(ascore_items(con, items, config, progress, judge))
        finally:
            con.close()
    return asyncio.run(ascore_items(con_or_db_path, items, config, progress, judge))


def label_probs_long(scores: pd.DataFrame) -> pd.DataFrame:
    """``llm_judge_probs`` rows from :func:`score_items` output: one row per (item, judge, model,
    label) of every item with label probabilities: ``item_id, judge, model, annotator, label, p``."""
    rows = [
        (r["item_id"], r["judge"], r["model"], r["annotator"], label, float(p))
        for r in scores[["item_id", "judge", "model", "annotator", "label_probs"]].to_dict("records")
        if r["label_probs"]
        for label, p in r["label_probs"].items()
    ]
    out = pd.DataFrame(rows, columns=["item_id", "judge", "model", "annotator", "label", "p"])
    out["p"] = out["p"].astype("float64")
    return out


