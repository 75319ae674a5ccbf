"""The call-once cache: the DuckDB table ``llm_score_cache``, its keys, and the periodic writer.

Each request's result is stored under ``sha256(endpoint host, request body)`` — the body holds
the model, the rendered messages and the judge's parameters — so the cache follows the content:
editing a judge's template re-scores exactly the requests whose text changed, and an unchanged
judge costs no call (there is no version constant to bump). Rows are written in small batches
flushed every ``FLUSH_INTERVAL_S`` seconds while the run proceeds. ``ok`` and ``rejected`` rows
are reused (a rejected request is not sent again until it changes, and so its key); ``error``
rows are retried by the next run. The raw first-token candidates are stored, and mapped to the
judge's labels when read, so a new label mapping needs no call either.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
from datetime import datetime, timezone
from typing import Mapping

import duckdb
import pandas as pd

from .config import JudgeConfig
from .protocol import Request, Result, estimate_tokens

CACHE_TABLE = "llm_score_cache"
CACHE_COLUMNS = (
    "cache_key VARCHAR PRIMARY KEY, item_id VARCHAR, swapped BOOLEAN, endpoint_host VARCHAR, "
    "model VARCHAR, judge VARCHAR, mode VARCHAR, status VARCHAR, error VARCHAR, "
    "error_detail VARCHAR, top_logprobs_json VARCHAR, latency_s DOUBLE, prompt_tokens INTEGER, "
    "completion_tokens INTEGER, attempts INTEGER, created_at TIMESTAMPTZ, prompt_tokens_est INTEGER"
)
ADDED_COLUMNS = ("prompt_tokens_est INTEGER", "judge VARCHAR")
"""Columns newer than the first release of the table: added to an existing cache on open
(columns an older release wrote and this one does not, such as ``p_a``, stay NULL)."""
REUSABLE_STATUSES = ("ok", "rejected")
FLUSH_INTERVAL_S = 0.2


def cache_key(config: JudgeConfig, body: Mapping) -> str:
    """sha256 hex of the endpoint host and the request body (model, messages, parameters)."""
    payload = json.dumps([config.endpoint_host, dict(body)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def ensure_cache(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``llm_score_cache`` if it does not exist.

    One row per request (item × order × judge × model): ``cache_key`` (see :func:`cache_key`),
    ``item_id``, ``swapped``, ``endpoint_host``, ``model``, ``judge`` (the judge's name), ``mode``
    (online | batch), ``status`` ('ok': answered with first-token candidates | 'rejected': the
    endpoint refused this request for good, reused like ok | 'error': retried by the next run), ``error`` (reason, see
    :mod:`.faults`: rate_limited, server_error, timeout, connection_error, auth_error,
    not_found, http_<code>, context_overflow, invalid_request, malformed_response,
    invalid_logprobs, batch_request_failed, missing_from_batch, batch_<status>),
    ``error_detail`` (HTTP status and server message, secrets redacted), ``top_logprobs_json``
    (the raw candidates, as answered: mapped to labels when read), ``latency_s`` (online: request time including retries), ``prompt_tokens``,
    ``completion_tokens`` (as the server counted them), ``attempts``, ``created_at``,
    ``prompt_tokens_est`` (characters / 4, known even when the server refused the prompt).
    """
    con.execute(f"CREATE TABLE IF NOT EXISTS {CACHE_TABLE} ({CACHE_COLUMNS})")
    for column in ADDED_COLUMNS:
        con.execute(f"ALTER TABLE {CACHE_TABLE} ADD COLUMN IF NOT EXISTS {column}")


def endpoint_answered(con: duckdb.DuckDBPyConnection, config: JudgeConfig) -> bool:
    """Whether the cache holds an ``ok`` row from this endpoint host and model."""
    return con.execute(
        f"SELECT count(*) > 0 FROM {CACHE_TABLE} WHERE status = 'ok' AND endpoint_host = ? AND model = ?",
        [config.endpoint_host, config.model],
    ).fetchall()[0][0]


class CacheWriter:
    """Buffers result rows; :meth:`write` upserts a batch in one statement (its own transaction).

    :func:`flush_periodically` writes the buffer every ``FLUSH_INTERVAL_S`` and once more at
    the end of a run (also on errors), so a crash loses at most the calls in flight and the
    last 0.2 s of results. One statement per row costs ~8 ms in DuckDB, more than a call to a
    fast endpoint: hence small batches, written off the event loop. Every statement of a run
    goes through :meth:`execute` (one at a time: the connection is shared with a worker thread).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, config: JudgeConfig, judge_name: str) -> None:
        self.con, self.config, self.judge_name = con, config, judge_name
        self.rows: list[dict] = []
        self.lock = threading.Lock()

    def execute(self, sql: str, params: list | None = None) -> list[tuple]:
        """Run one statement on the run's connection; returns its rows."""
        with self.lock:
            return self.con.execute(sql, params or []).fetchall()

    def add(self, request: Request, result: Result) -> None:
        self.rows.append(
            {
                "cache_key": request.cache_key,
                "item_id": request.item_id,
                "swapped": request.swapped,
                "endpoint_host": self.config.endpoint_host,
                "model": self.config.model,
                "judge": self.judge_name,
                "mode": self.config.mode,
                "status": "ok" if result.answered else "rejected" if result.permanent else "error",
                "error": result.reason,
                "error_detail": result.detail,
                "top_logprobs_json": json.dumps(result.top_logprobs) if result.top_logprobs is not None else None,
                "latency_s": result.latency_s,
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "attempts": result.attempts,
                "created_at": datetime.now(timezone.utc),
                "prompt_tokens_est": estimate_tokens(request.messages),
            }
        )

    def take(self) -> list[dict]:
        rows, self.rows = self.rows, []
        return rows

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        frame = pd.DataFrame(rows).drop_duplicates("cache_key", keep="last")
        frame["latency_s"] = frame["latency_s"].astype("float64")
        for col in ("prompt_tokens", "completion_tokens", "attempts", "prompt_tokens_est"):
            frame[col] = frame[col].astype("Int64")
        with self.lock:
            self.con.register("__llm_cache_rows", frame)
            try:
                self.con.execute(f"INSERT OR REPLACE INTO {CACHE_TABLE} BY NAME SELECT * FROM __llm_cache_rows")
            finally:
                self.con.unregister("__llm_cache_rows")

    async def flush(self) -> None:
        """Write the buffered rows now (in a worker thread)."""
        await asyncio.to_thread(self.write, self.take())


async def flush_periodically(writer: CacheWriter, stop: asyncio.Event) -> None:
    """Every ``FLUSH_INTERVAL_S`` until ``stop`` is set, then once more: write the buffered rows
    in a worker thread (one write at a time) while the event loop keeps serving responses."""
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), FLUSH_INTERVAL_S)
        await asyncio.to_thread(writer.write, writer.take())
    await asyncio.to_thread(writer.write, writer.take())


def cached_keys(con: duckdb.DuckDBPyConnection, keys: list[str]) -> set[str]:
    """The keys among ``keys`` whose cached row is reusable (status in ``REUSABLE_STATUSES``)."""
    frame = pd.DataFrame({"cache_key": keys})
    con.register("__llm_keys", frame)
    try:
        rows = con.execute(
            f"SELECT c.cache_key FROM {CACHE_TABLE} c JOIN __llm_keys k USING (cache_key) "
            f"WHERE c.status IN {REUSABLE_STATUSES}"
        ).fetchall()
    finally:
        con.unregister("__llm_keys")
    return {r[0] for r in rows}


def read_results(con: duckdb.DuckDBPyConnection, requests: list[Request]) -> pd.DataFrame:
    """One row per request, in order: ``item_id, swapped, status, error, top_logprobs_json,
    attempts, prompt_tokens, completion_tokens, latency_s`` from the cache; a request without a
    row is ``error`` / ``not_scored``."""
    frame = pd.DataFrame(
        {"pos": range(len(requests)), "cache_key": [r.cache_key for r in requests],
         "item_id": [r.item_id for r in requests], "swapped": [r.swapped for r in requests]}
    )
    con.register("__llm_requests", frame)
    try:
        return con.execute(
            f"SELECT r.item_id, r.swapped, coalesce(c.status, 'error') AS status, "
            f"CASE WHEN c.status IS NULL THEN 'not_scored' ELSE c.error END AS error, "
            f"c.top_logprobs_json, c.attempts, c.prompt_tokens, c.completion_tokens, c.latency_s "
            f"FROM __llm_requests r LEFT JOIN {CACHE_TABLE} c USING (cache_key) ORDER BY r.pos"
        ).df()
    finally:
        con.unregister("__llm_requests")
