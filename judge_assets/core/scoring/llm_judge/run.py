"""Scoring a set of items: build the requests, skip the cached ones, call the rest, read the scores."""

from __future__ import annotations

import asyncio
import logging
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
from .prompts import PROMPT_VERSION, combine_orders, render_messages
from .protocol import Request
from .stats import ScoringStats

log = logging.getLogger(__name__)

ITEM_COLUMNS = ("item_id", "user_turns", "answers_a", "answers_b")
SCORE_COLUMNS = (
    "item_id", "p_a", "p_b", "p_tie", "label_mass", "position_consistency", "n_orders", "model",
    "prompt_version", "status", "p_a_ab", "p_b_ab", "p_tie_ab", "p_a_ba", "p_b_ba", "p_tie_ba",
)

Progress = Callable[[int, int], None]


def build_requests(items: pd.DataFrame, config: JudgeConfig) -> list[Request]:
    """One request per item and answer order (both orders when ``config.swap``), in item order."""
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise ValueError(f"items is missing column(s) {missing}; needs {list(ITEM_COLUMNS)}")
    if items["item_id"].duplicated().any():
        raise ValueError(f"items has duplicate item_id values, e.g. {items['item_id'][items['item_id'].duplicated()].iloc[0]!r}")
    orders = (False, True) if config.swap else (False,)
    requests = []
    for item in items.to_dict("records"):
        for swapped in orders:
            messages = render_messages(item, swapped)
            requests.append(Request(cache_key(config, messages), str(item["item_id"]), swapped, messages))
    return requests


async def ascore_items(
    con: duckdb.DuckDBPyConnection,
    items: pd.DataFrame,
    config: JudgeConfig,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, ScoringStats]:
    """Async :func:`score_items` on an open connection (for callers already in an event loop).

    Raises :class:`~.faults.EndpointError` (with ``stats`` set) when the endpoint cannot be
    used; the results that came back before are kept in the cache.
    """
    started = time.monotonic()
    stats = ScoringStats(mode=config.mode)
    requests = build_requests(items, config)
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

    log.info("LLM judge %s: %d requests, %d cached, %d to call", config.model, len(unique), len(cached), len(todo))
    writer = CacheWriter(con, config)
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
    scores = combine_orders(read_results(con, requests))
    scores["model"], scores["prompt_version"] = config.model, PROMPT_VERSION
    stats.wall_s = time.monotonic() - started
    log.info("LLM judge done: %s", stats.as_dict())
    return scores[list(SCORE_COLUMNS)], stats


def score_items(
    con_or_db_path: duckdb.DuckDBPyConnection | str | Path,
    items: pd.DataFrame,
    config: JudgeConfig,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, ScoringStats]:
    """Score every item with the LLM judge, calling the endpoint only for uncached requests.

    ``items``: rows of the ``items`` table (``item_id``, ``user_turns``, ``answers_a``,
    ``answers_b``, optional ``reference``). ``progress(done, total)`` is called as requests
    finish (cache hits count as done). Returns ``(scores, stats)``: ``scores`` has one row per
    item in input order with the columns ``SCORE_COLUMNS`` (see :func:`combine_orders`; status
    'ok' | 'no_label_token' | 'rejected:<reason>' | 'error:<reason>'), ``stats`` is a
    :class:`ScoringStats`. Raises :class:`~.faults.EndpointError` when the endpoint cannot be
    used as configured (wrong key, URL or model, unreachable, hanging, failing every request,
    no batch API in batch mode): its message is one line naming the host and the server's
    message, never a secret.
    """
    if isinstance(con_or_db_path, (str, Path)):
        con = connect(con_or_db_path)
        try:
            return asyncio.run(ascore_items(con, items, config, progress))
        finally:
            con.close()
    return asyncio.run(ascore_items(con_or_db_path, items, config, progress))
