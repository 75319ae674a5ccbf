"""The online path: the model check, then concurrent chat-completion calls with retries.

Every call asks for one token with its ``top_logprobs`` (see :func:`.protocol.request_body`).
At most ``concurrency`` requests are in flight; a failed call is retried up to
``max_attempts`` times when its failure is transient (429, 408, 5xx, timeouts, connection
errors), sleeping ``Retry-After`` or an exponential backoff with jitter in between. Endpoint
faults trip the run's :class:`~.faults.Breaker`, which stops every call (see :mod:`.faults`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Callable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from .cache import CacheWriter
from .config import JudgeConfig
from .faults import Breaker, EndpointError, Failure, classify, redact, with_retries
from .protocol import Request, Result, parse_completion
from .stats import ScoringStats

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)


def make_client(config: JudgeConfig) -> openai.AsyncOpenAI:
    """An async client without the SDK's own retries (:func:`.faults.with_retries` does them).

    A query string on ``base_url`` (e.g. ``?api-version=…``) is sent with every request: the
    SDK would otherwise glue the request path onto it.
    """
    import openai  # imported on use: loading the graph without scoring does not pay for the SDK

    parts = urlsplit(config.base_url)
    # Local servers (vLLM, Ollama, llama.cpp) accept any key; the SDK refuses an empty one.
    return openai.AsyncOpenAI(
        base_url=urlunsplit(parts._replace(query="", fragment="")),
        default_query=dict(parse_qsl(parts.query)) or None,
        api_key=config.api_key or "no-key",
        max_retries=0,
        timeout=config.timeout,
    )


def serves(listed: str, model: str) -> bool:
    """Whether a model id of a ``GET /models`` listing serves ``model``: the same id, Ollama's
    ``<model>:latest``, or a proxy's wildcard route (LiteLLM's ``openai/*`` serves ``openai/gpt-4o``)."""
    return listed in (model, f"{model}:latest") or ("*" in listed and fnmatchcase(model, listed))


async def check_model(client: openai.AsyncOpenAI, config: JudgeConfig, breaker: Breaker) -> None:
    """Refuse a model the endpoint does not serve, before any scoring call.

    ``GET /models``: a listing without ``config.model`` (see :func:`serves`) raises
    :class:`~.faults.EndpointError` naming the models served; 401 raises one too (the key is
    refused). A connection error or timeout counts as one strike of ``breaker``. Anything else
    (404, 403, 5xx, an unreadable listing) skips the check: many servers do not list models.
    """
    failure = None
    try:
        body = await client.get("/models", cast_to=dict)
    except Exception as exc:  # noqa: BLE001 - classify returns None for unknown errors: re-raised
        failure = classify(exc, config)
        if failure is None:
            raise
    host = config.endpoint_host
    if failure is not None:
        if failure.status == 401:
            raise EndpointError(
                f"LLM judge at {host} refused the API key ({failure.detail}): check JUDGE_LLM_API_KEY (or OPENAI_API_KEY)",
                failure.reason,
            )
        if failure.reason in ("connection_error", "timeout"):
            breaker.strike(failure)
        log.info("model check skipped: GET /models at %s failed (%s)", host, failure.detail)
        return
    listed = body.get("data") if isinstance(body, dict) else None
    served = [str(m["id"]) for m in listed or [] if isinstance(m, dict) and m.get("id")]
    if served and not any(serves(route, config.model) for route in served):
        shown = ", ".join(served[:20]) + (f", … ({len(served)} in all)" if len(served) > 20 else "")
        raise EndpointError(
            redact(f"model {config.model!r} is not served by {host}; it serves: {shown} (set JUDGE_LLM_MODEL)", config.secrets),
            "unknown_model",
        )


def unusable_answer(result: Result) -> Failure | None:
    """The failure a parsed answer stands for when the judge cannot use it (``invalid_logprobs``): a strike."""
    return Failure(result.reason, result.detail or "", False) if result.reason else None


async def score_online(
    client: openai.AsyncOpenAI,
    requests: list[Request],
    config: JudgeConfig,
    writer: CacheWriter,
    stats: ScoringStats,
    breaker: Breaker,
    progress: Callable[[], None],
) -> None:
    """Call the endpoint once per request (plus retries), ``concurrency`` at a time; each
    result goes to ``writer`` and ``stats`` and then ``progress()`` is called. Raises
    :class:`~.faults.EndpointError` when ``breaker`` trips; calls in flight are then cancelled."""
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
                body = await client.post("/chat/completions", cast_to=dict, body=request.body)
                return parse_completion(body)

            result, attempts, failure = await with_retries(call, config, breaker, count_call, unusable_answer)
            if failure is not None:  # a rejection is final only once the endpoint has shown it takes our requests
                result = Result(reason=failure.reason, detail=failure.detail, permanent=failure.permanent and breaker.accepts)
            elif not result.reason:  # a usable answer
                breaker.accepts = True
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
