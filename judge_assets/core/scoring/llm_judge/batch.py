"""The batch path: the OpenAI batch API (upload JSONL, create, poll, download) filling the same cache.

Requests go in chunks of at most ``MAX_BATCH_REQUESTS`` lines, one batch per chunk; each line's
``custom_id`` is the request's cache key. Control-plane calls (upload, create, poll, download)
get the online path's retries.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable, Mapping

import openai

from .cache import CacheWriter
from .client import with_retries
from .config import JudgeConfig
from .prompts import PROMPT_VERSION
from .protocol import MalformedResponse, Request, Result, parse_completion, request_body
from .stats import ScoringStats

log = logging.getLogger(__name__)

MAX_BATCH_REQUESTS = 50_000
BATCH_TERMINAL = ("completed", "failed", "expired", "cancelled")


async def _control(call: Callable[[], Any], config: JudgeConfig, what: str):
    """A batch control-plane call (upload, create, poll, download) with the same retries."""
    value, attempts, failure = await with_retries(call, config, lambda: None)
    if failure is not None:
        raise RuntimeError(f"batch {what} failed after {attempts} attempt(s): {failure.reason} ({failure.detail})")
    return value


def parse_batch_line(line: Mapping, swapped: bool) -> Result:
    """One line of a batch output/error file (``custom_id``, ``response``, ``error``) as a result."""
    response = line.get("response") or {}
    status_code = response.get("status_code")
    if line.get("error") or status_code != 200:
        error = line.get("error") or (response.get("body") or {}).get("error") or {}
        code = status_code or 0
        reason = "rate_limited" if code == 429 else "server_error" if code >= 500 else "batch_request_failed"
        return Result(reason=reason, detail=f"HTTP {code}: {str(error.get('message', ''))[:300]}")
    try:
        return parse_completion(response.get("body") or {}, swapped)
    except MalformedResponse as exc:
        return Result(reason="malformed_response", detail=str(exc))


async def score_batch(
    client: openai.AsyncOpenAI,
    requests: list[Request],
    config: JudgeConfig,
    writer: CacheWriter,
    stats: ScoringStats,
    progress: Callable[[int], None],
) -> None:
    """Submit ``requests`` as batches, wait for each, and hand every result to ``writer`` and
    ``stats``; ``progress(n_done)`` counts requests of this call that have finished."""
    for start in range(0, len(requests), MAX_BATCH_REQUESTS):
        chunk = {r.cache_key: r for r in requests[start : start + MAX_BATCH_REQUESTS]}
        lines = [
            json.dumps(
                {"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": request_body(config, r.messages)},
                ensure_ascii=False,
            )
            for key, r in chunk.items()
        ]
        payload = ("\n".join(lines) + "\n").encode()
        upload = await _control(
            lambda: client.files.create(file=("judge_requests.jsonl", payload, "application/jsonl"), purpose="batch"),
            config,
            "upload",
        )
        batch = await _control(
            lambda: client.batches.create(
                input_file_id=upload.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                metadata={"prompt_version": PROMPT_VERSION},
            ),
            config,
            "create",
        )
        stats.batch_ids.append(batch.id)
        stats.calls_made += len(chunk)
        log.info("submitted batch %s with %d requests", batch.id, len(chunk))
        while batch.status not in BATCH_TERMINAL:
            await asyncio.sleep(config.poll_interval)
            batch = await _control(lambda: client.batches.retrieve(batch.id), config, "poll")
            counts = batch.request_counts
            if counts is not None:
                progress(start + counts.completed + counts.failed)
        results: dict[str, Result] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await _control(lambda: client.files.content(file_id), config, "download")
            for raw in content.text.splitlines():
                if not raw.strip():
                    continue
                line = json.loads(raw)
                request = chunk.get(line.get("custom_id"))
                if request is not None:
                    results[request.cache_key] = parse_batch_line(line, request.swapped)
        missing = "missing_from_batch" if batch.status == "completed" else f"batch_{batch.status}"
        for key, request in chunk.items():
            result = results.get(key) or Result(reason=missing, detail=f"batch {batch.id} ended {batch.status}")
            writer.add(request, result)
            stats.record(result)
        progress(start + len(chunk))
