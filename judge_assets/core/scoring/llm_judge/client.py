"""The online path: concurrent chat-completion calls with retries, backoff and failure reasons.

Every call asks for one token with its ``top_logprobs`` (see :func:`.protocol.request_body`).
At most ``concurrency`` requests are in flight; a failed call is retried up to
``max_attempts`` times when its failure is transient (429, 408, 5xx, timeouts, connection
errors), sleeping ``Retry-After`` or an exponential backoff with jitter in between.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable

import openai

from .cache import CacheWriter
from .config import JudgeConfig
from .protocol import MalformedResponse, Request, Result, parse_completion, request_body
from .stats import ScoringStats


@dataclass(frozen=True)
class Failure:
    """Why a call failed: ``reason`` (short, stored), ``detail`` (redacted server message),
    whether a retry may help, and the server's ``Retry-After`` in seconds."""

    reason: str
    detail: str
    retryable: bool
    retry_after: float | None = None


def retry_after_s(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (seconds or HTTP date), else None."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(float(value) / divisor, 0.0)
        except ValueError:
            try:
                return max((parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds(), 0.0)
            except (TypeError, ValueError):
                return None
    return None


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def classify(exc: BaseException, api_key: str) -> Failure | None:
    """Failure reason for a known API/transport error, None for anything else (a bug)."""
    if isinstance(exc, openai.APITimeoutError):
        return Failure("timeout", "request timed out", True)
    if isinstance(exc, openai.APIConnectionError):
        return Failure("connection_error", redact(str(exc), api_key)[:300], True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = retry_after_s(exc.response.headers)
        if status in (401, 403):  # messages may echo a masked key: keep none of it
            return Failure("auth_error", f"HTTP {status}", False)
        detail = f"HTTP {status}: {redact(str(exc.message), api_key)[:300]}"
        if status == 429:
            return Failure("rate_limited", detail, True, retry_after)
        if status >= 500 or status == 408:
            return Failure("server_error", detail, True, retry_after)
        return Failure("bad_request" if status in (400, 422) else f"http_{status}", detail, False)
    if isinstance(exc, (MalformedResponse, openai.APIResponseValidationError, json.JSONDecodeError)):
        return Failure("malformed_response", redact(str(exc), api_key)[:300], False)
    return None


async def with_retries(call: Callable[[], Any], config: JudgeConfig, on_attempt: Callable[[], None]):
    """Await ``call()`` up to ``max_attempts`` times; returns ``(value, attempts, failure)``."""
    attempt = 0
    while True:
        attempt += 1
        on_attempt()
        try:
            return await call(), attempt, None
        except Exception as exc:  # noqa: BLE001 - classify returns None for unknown errors: re-raised
            failure = classify(exc, config.api_key)
            if failure is None:
                raise
            if not failure.retryable or attempt >= config.max_attempts:
                return None, attempt, failure
            if failure.retry_after is not None:
                delay = failure.retry_after
            else:
                delay = random.uniform(0, min(config.backoff_max_s, config.backoff_base_s * 2 ** (attempt - 1)))
            await asyncio.sleep(delay)


def make_client(config: JudgeConfig) -> openai.AsyncOpenAI:
    """An async client without the SDK's own retries (:func:`with_retries` does them)."""
    # Local servers (vLLM, Ollama, llama.cpp) accept any key; the SDK refuses an empty one.
    return openai.AsyncOpenAI(
        base_url=config.base_url, api_key=config.api_key or "no-key", max_retries=0, timeout=config.timeout
    )


async def score_online(
    client: openai.AsyncOpenAI,
    requests: list[Request],
    config: JudgeConfig,
    writer: CacheWriter,
    stats: ScoringStats,
    progress: Callable[[], None],
) -> None:
    """Call the endpoint once per request (plus retries), ``concurrency`` at a time; each
    result goes to ``writer`` and ``stats`` and then ``progress()`` is called."""
    semaphore = asyncio.Semaphore(config.concurrency)

    def count_call() -> None:
        stats.calls_made += 1

    async def one(request: Request) -> None:
        async with semaphore:
            started = time.monotonic()

            async def call() -> Result:
                # The client's generic POST (documented for raw requests) returns the JSON as a
                # dict: same errors, auth and timeouts as ``chat.completions.create`` without its
                # ~2 ms/call of request transformation and response-model building.
                body = await client.post("/chat/completions", cast_to=dict, body=request_body(config, request.messages))
                return parse_completion(body, request.swapped)

            result, attempts, failure = await with_retries(call, config, count_call)
            if failure is not None:
                result = Result(reason=failure.reason, detail=failure.detail)
            result.attempts = attempts
            result.latency_s = time.monotonic() - started
        writer.add(request, result)
        stats.record(result)
        progress()

    tasks = [asyncio.create_task(one(r)) for r in requests]
    try:
        await asyncio.gather(*tasks)
    finally:  # on a failure (or cancellation) stop the calls still queued or in flight
        for task in tasks:
            task.cancel()
