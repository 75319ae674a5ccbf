"""The batch path: the OpenAI batch API (upload JSONL, create, poll, download) filling the same cache.

Requests go in chunks of at most ``MAX_BATCH_REQUESTS`` lines, one batch per chunk; each line's
``custom_id`` is the request's cache key. Control-plane calls (upload, create, poll, download)
get the online path's retries and breaker.

A batch is recorded in ``llm_open_batches`` as soon as it is created, before waiting for it: a
run that dies while a batch is in flight leaves the row, and the next run with the same requests
(same endpoint, model and set of cache keys) resumes polling that batch instead of paying for a
new one. Once its results are in ``llm_score_cache`` the row's status becomes ``collected``.

An endpoint without the batch API (404/405 on ``POST /files`` or ``POST /batches``) stops the run
with an :class:`~.faults.EndpointError` saying so; there is no silent fallback to online calls,
which are priced and rate-limited differently.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Mapping

import duckdb

from .cache import CacheWriter
from .config import JudgeConfig
from .faults import Breaker, EndpointError, error_code, redact, status_failure, with_retries
from .protocol import MalformedResponse, Request, Result, parse_completion
from .stats import ScoringStats

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

MAX_BATCH_REQUESTS = 50_000
BATCH_TERMINAL = ("completed", "failed", "expired", "cancelled")
OPEN_BATCHES_TABLE = "llm_open_batches"
OPEN_BATCHES_COLUMNS = (
    "batch_id VARCHAR PRIMARY KEY, input_file_id VARCHAR, request_keys_hash VARCHAR, endpoint_host VARCHAR, "
    "model VARCHAR, n_requests INTEGER, created_at TIMESTAMPTZ, status VARCHAR"
)


def ensure_open_batches(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``llm_open_batches`` if it does not exist.

    One row per submitted batch: ``batch_id``, ``input_file_id``, ``request_keys_hash``
    (sha256 of the batch's sorted cache keys), ``endpoint_host``, ``model``, ``n_requests``,
    ``created_at``, ``status`` (``open`` while its results are not in ``llm_score_cache``,
    then ``collected``; ``gone`` when the endpoint no longer knows it).
    """
    con.execute(f"CREATE TABLE IF NOT EXISTS {OPEN_BATCHES_TABLE} ({OPEN_BATCHES_COLUMNS})")


def keys_hash(keys) -> str:
    """sha256 hex of the sorted cache keys: which requests a batch holds."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


async def _control(call: Callable[[], Any], config: JudgeConfig, breaker: Breaker, what: str):
    """A batch control-plane call (upload, create, poll, download) with the same retries."""
    value, attempts, failure = await with_retries(call, config, breaker, lambda: None)
    if failure is None:
        return value
    host = config.endpoint_host
    if what in ("upload", "create") and failure.status in (404, 405):
        raise EndpointError(
            f"the endpoint {host} does not offer the OpenAI batch API ({what} answered {failure.detail}); "
            "set JUDGE_LLM_MODE=online",
            "no_batch_api",
        )
    raise EndpointError(
        f"LLM judge at {host}: batch {what} failed after {attempts} attempt(s): {failure.reason} ({failure.detail})",
        failure.reason,
    )


def parse_batch_line(line: Mapping, config: JudgeConfig) -> Result:
    """One line of a batch output/error file (``custom_id``, ``response``, ``error``) as a result;
    a failed line gets the reason :func:`.faults.status_failure` gives its status code."""
    response = line.get("response") or {}
    status_code = response.get("status_code")
    if line.get("error") or status_code != 200:
        error = line.get("error") or (response.get("body") or {}).get("error") or {}
        message = str(error.get("message", ""))
        if not status_code:
            return Result(reason="batch_request_failed", detail=redact(f"batch line error: {message}", config.secrets))
        failure = status_failure(status_code, message, config.secrets, code=error_code(error))
        return Result(reason=failure.reason, detail=failure.detail, permanent=failure.permanent)
    try:
        return parse_completion(response.get("body") or {})
    except MalformedResponse as exc:
        return Result(reason="malformed_response", detail=str(exc))


async def _resume_or_submit(
    client: openai.AsyncOpenAI, chunk: dict[str, Request], config: JudgeConfig, writer: CacheWriter,
    stats: ScoringStats, breaker: Breaker,
):
    """The batch for this chunk: the open one recorded by an earlier run, else a new one (recorded)."""
    digest = keys_hash(chunk)
    rows = await asyncio.to_thread(
        writer.execute,
        f"SELECT batch_id FROM {OPEN_BATCHES_TABLE} WHERE request_keys_hash = ? AND endpoint_host = ? AND model = ? "
        f"AND status = 'open' ORDER BY created_at DESC LIMIT 1",
        [digest, config.endpoint_host, config.model],
    )
    if rows:
        batch_id = rows[0][0]
        batch, _, failure = await with_retries(lambda: client.batches.retrieve(batch_id), config, breaker, lambda: None)
        if failure is None:
            log.info("resuming batch %s (%s) submitted by an earlier run", batch_id, batch.status)
            return batch
        if failure.status != 404:
            raise EndpointError(f"LLM judge at {config.endpoint_host}: cannot resume batch {batch_id}: {failure.detail}", failure.reason)
        log.warning("batch %s is unknown to %s: submitting its requests again", batch_id, config.endpoint_host)
        await asyncio.to_thread(writer.execute, f"UPDATE {OPEN_BATCHES_TABLE} SET status = 'gone' WHERE batch_id = ?", [batch_id])
    lines = [
        json.dumps(
            {"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": r.body},
            ensure_ascii=False,
        )
        for key, r in chunk.items()
    ]
    payload = ("\n".join(lines) + "\n").encode()
    upload = await _control(
        lambda: client.files.create(file=("judge_requests.jsonl", payload, "application/jsonl"), purpose="batch"),
        config,
        breaker,
        "upload",
    )
    batch = await _control(
        lambda: client.batches.create(
            input_file_id=upload.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
        ),
        config,
        breaker,
        "create",
    )
    await asyncio.to_thread(
        writer.execute,
        f"INSERT INTO {OPEN_BATCHES_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [batch.id, upload.id, digest, config.endpoint_host, config.model, len(chunk), datetime.now(timezone.utc), "open"],
    )
    stats.calls_made += len(chunk)
    log.info("submitted batch %s with %d requests", batch.id, len(chunk))
    return batch


async def score_batch(
    client: openai.AsyncOpenAI,
    requests: list[Request],
    config: JudgeConfig,
    writer: CacheWriter,
    stats: ScoringStats,
    breaker: Breaker,
    progress: Callable[[int], None],
) -> None:
    """Submit (or resume) ``requests`` as batches, wait for each, and hand every result to
    ``writer`` and ``stats``; ``progress(n_done)`` counts requests of this call that have finished.
    Needs ``llm_open_batches`` (:func:`ensure_open_batches`).

    Raises :class:`~.faults.EndpointError` when the endpoint has no batch API, a control call
    keeps failing, or every line of a batch was rejected by an endpoint that has never answered.
    """
    for start in range(0, len(requests), MAX_BATCH_REQUESTS):
        chunk = {r.cache_key: r for r in requests[start : start + MAX_BATCH_REQUESTS]}
        batch = await _resume_or_submit(client, chunk, config, writer, stats, breaker)
        stats.batch_ids.append(batch.id)
        while batch.status not in BATCH_TERMINAL:
            await asyncio.sleep(config.poll_interval)
            batch = await _control(lambda: client.batches.retrieve(batch.id), config, breaker, "poll")
            counts = batch.request_counts
            if counts is not None:
                progress(start + counts.completed + counts.failed)
        results: dict[str, Result] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await _control(lambda: client.files.content(file_id), config, breaker, "download")
            for raw in content.text.splitlines():
                if not raw.strip():
                    continue
                line = json.loads(raw)
                request = chunk.get(line.get("custom_id"))
                if request is not None:
                    results[request.cache_key] = parse_batch_line(line, config)
        breaker.accepts = breaker.accepts or any(r.answered for r in results.values())
        missing = "missing_from_batch" if batch.status == "completed" else f"batch_{batch.status}"
        rejections = []
        for key, request in chunk.items():
            result = results.get(key) or Result(reason=missing, detail=f"batch {batch.id} ended {batch.status}")
            if result.permanent and not breaker.accepts:  # final only once the endpoint has answered
                result.permanent = False
                rejections.append(result)
            writer.add(request, result)
            stats.record(result)
        await writer.flush()
        await asyncio.to_thread(
            writer.execute, f"UPDATE {OPEN_BATCHES_TABLE} SET status = 'collected' WHERE batch_id = ?", [batch.id]
        )
        progress(start + len(chunk))
        if rejections and len(rejections) == len(chunk):
            first = rejections[0]
            raise EndpointError(
                f"LLM judge at {config.endpoint_host}: every request of batch {batch.id} was rejected "
                f"({first.reason}: {first.detail})",
                first.reason,
            )
