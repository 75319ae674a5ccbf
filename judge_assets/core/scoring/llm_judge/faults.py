"""What went wrong with a call, whether to retry it, and when to stop calling the endpoint at all.

Every failed call becomes a :class:`Failure` with a short ``reason`` (stored in
``llm_score_cache.error``) and a ``detail`` (the server's own message, secrets redacted):

- endpoint faults — ``auth_error`` (401/403), ``not_found`` (404), ``quota_exceeded`` (a 429
  whose error code is OpenAI's ``insufficient_quota``: billing, not a rate), ``http_<code>``
  (other 4xx except 400/408/413/422/429), ``connection_error``, ``timeout``: they say the endpoint
  or its configuration is wrong, not the request. Connection errors and timeouts are retried.
- permanent rejections of one request — ``context_overflow`` (400/413/422, or 5xx whose message
  speaks of the context length) and ``invalid_request`` (other 400/422): never retried; stored as
  ``rejected`` and reused until the request (its cache key) changes.
- transient — ``rate_limited`` (429), ``server_error`` (408, 5xx): retried with backoff.
- ``malformed_response`` (a 2xx without usable ``top_logprobs``) and ``invalid_logprobs`` (NaN,
  infinite or positive logprobs, see :func:`.protocol.parse_completion`): not retried in the
  run, stored as ``error`` and so retried by the next run.

:class:`Breaker` counts endpoint faults in a row (each failed attempt; a request that still
fails with ``server_error`` after all its attempts; a permanent rejection while the endpoint has
not yet answered any request of ours; an answer the judge cannot use — ``malformed_response``,
``invalid_logprobs`` — since a server that gives only those is as broken as one that refuses)
and, at ``JudgeConfig.breaker_threshold``, raises :class:`EndpointError`: the remaining requests
are never sent. A usable answer resets the count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .config import JudgeConfig
from .protocol import MalformedResponse

if TYPE_CHECKING:
    from .stats import ScoringStats

CONTEXT_OVERFLOW = re.compile(
    r"context[ _-]?(length|window|size|limit)|maximum context|too long|too many tokens|exceeds?\b.{0,40}\bcontext", re.I
)
"""A server message saying the prompt does not fit the model (OpenAI, vLLM, llama.cpp, Ollama wordings)."""
MASKED_SECRET = re.compile(r"[\w-]*\*{3,}[\w-]*")
"""A masked key echoed by a server (``sk-abc***********wxyz``): its visible ends are redacted too."""
DETAIL_CHARS = 300
LIBRARY_LOGGERS = ("openai", "httpx", "httpcore")
"""Name prefixes of the HTTP stack's loggers (the ``httpx2``/``httpcore2`` forks included): they log full URLs."""

HINTS = {
    "auth_error": "the endpoint refused the API key; check JUDGE_LLM_API_KEY (or OPENAI_API_KEY) and its access to the model",
    "quota_exceeded": "the account of the API key has no quota left; add credit or raise its limit (or use another key), then run again",
    "not_found": "check JUDGE_LLM_BASE_URL (OpenAI-compatible servers usually end in /v1) and JUDGE_LLM_MODEL",
    "connection_error": "cannot connect; is the server running, and is JUDGE_LLM_BASE_URL right?",
    "timeout": "no answer in time; check the server, or raise JUDGE_LLM_TIMEOUT / lower JUDGE_LLM_CONCURRENCY",
    "server_error": "the server fails every request even after retries; check its logs",
    "context_overflow": "no request fits the model's context; use a model with a longer context",
    "invalid_request": "the endpoint rejects every request; check that it serves logprobs/top_logprobs for this model",
    "malformed_response": "the endpoint answers without first-token top_logprobs; check that it serves logprobs for this model",
    "invalid_logprobs": "the endpoint answers with logprobs that are not log-probabilities (NaN, infinite or > 0); check the server and model",
}


class EndpointError(RuntimeError):
    """The endpoint cannot be used as configured; nothing more is sent in this run.

    ``str(error)`` is one line naming the endpoint host and the server's own message (secrets
    redacted). ``reason`` is the failure reason that stopped the run; ``stats`` (set by the
    scoring run) is the :class:`~.stats.ScoringStats` up to the stop.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.stats: ScoringStats | None = None


@dataclass(frozen=True)
class Failure:
    """Why a call failed: ``reason`` (short, stored), ``detail`` (one line, secrets redacted),
    whether a retry may help, the server's ``Retry-After`` in seconds, the HTTP ``status``
    (None without a response), whether it is an endpoint fault, and whether it is a permanent
    verdict on the request."""

    reason: str
    detail: str
    retryable: bool
    retry_after: float | None = None
    status: int | None = None
    endpoint_fault: bool = False
    permanent: bool = False


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret and every masked key (``sk-ab****wxyz``) as ``***``."""
    text = MASKED_SECRET.sub("***", text)  # first: the secrets' own *** must not widen to their token
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def redact(text: str, secrets: Sequence[str]) -> str:
    """:func:`scrub` ``text`` and put it on one line of at most ``DETAIL_CHARS`` characters."""
    return " ".join(scrub(text, secrets).split())[:DETAIL_CHARS]


class _ScrubFilter(logging.Filter):
    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub(record.getMessage(), self.secrets), None
        return True


@contextlib.contextmanager
def scrubbed_library_logs(secrets: Sequence[str]):
    """While open, the HTTP stack's log records (``LIBRARY_LOGGERS``, e.g. ``HTTP Request: POST
    <url>``) have ``secrets`` scrubbed: a key in the base URL's query or user info never reaches a log."""
    if not secrets:
        yield
        return
    scrub_filter = _ScrubFilter(secrets)
    names = [name for name in list(logging.root.manager.loggerDict) if name.startswith(LIBRARY_LOGGERS)]
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addFilter(scrub_filter)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(scrub_filter)


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


def server_message(body: Any, fallback: str) -> str:
    """The human part of an error body (``{"error": {"message": ...}}``, ``{"message": ...}``,
    ``{"detail": ...}`` or a string), else ``fallback``."""
    for _ in range(3):
        if isinstance(body, str) and body.strip():
            return body
        if not isinstance(body, dict):
            break
        body = next((body[k] for k in ("message", "detail", "error") if body.get(k)), None)
    return fallback


def error_code(body: Any) -> str | None:
    """The machine-readable code of an error body (``{"error": {"code": ...}}``, else its ``type``), if any."""
    error = body.get("error", body) if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    code = error.get("code") or error.get("type")
    return code if isinstance(code, str) else None


#: Error codes of a 429 that no retry cures.
QUOTA_CODES = ("insufficient_quota",)


def status_failure(
    status: int, message: str, secrets: Sequence[str], retry_after: float | None = None, code: str | None = None
) -> Failure:
    """The failure for an HTTP error ``status`` whose server message is ``message`` (error ``code``, if any)."""
    detail = redact(f"HTTP {status}: {message}", secrets)
    overflow = bool(CONTEXT_OVERFLOW.search(message))
    if status == 429 and code in QUOTA_CODES:
        return Failure("quota_exceeded", detail, False, None, status, endpoint_fault=True)
    if status == 429:
        return Failure("rate_limited", detail, True, retry_after, status)
    if status >= 500 or status == 408:
        if overflow:
            return Failure("context_overflow", detail, False, None, status, permanent=True)
        return Failure("server_error", detail, True, retry_after, status)
    if status in (400, 413, 422):
        reason = "context_overflow" if overflow or status == 413 else "invalid_request"
        return Failure(reason, detail, False, None, status, permanent=True)
    reason = {401: "auth_error", 403: "auth_error", 404: "not_found"}.get(status, f"http_{status}")
    return Failure(reason, detail, False, None, status, endpoint_fault=True)


def _innermost(exc: BaseException) -> BaseException:
    for _ in range(8):
        inner = exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc = inner
    return exc


def classify(exc: BaseException, config: JudgeConfig) -> Failure | None:
    """Failure for a known API/transport error, None for anything else (a bug)."""
    import openai  # imported on use: loading the graph without scoring does not pay for the SDK

    secrets = config.secrets
    if isinstance(exc, openai.APITimeoutError):
        return Failure("timeout", f"no answer within {config.timeout:g} s", True, endpoint_fault=True)
    if isinstance(exc, openai.APIConnectionError):
        detail = redact(f"{exc} {_innermost(exc)}", secrets)
        return Failure("connection_error", detail, True, endpoint_fault=True)
    if isinstance(exc, openai.APIStatusError):
        message = server_message(exc.body, str(exc.message))
        return status_failure(exc.status_code, message, secrets, retry_after_s(exc.response.headers), error_code(exc.body))
    if isinstance(exc, (MalformedResponse, openai.APIResponseValidationError, json.JSONDecodeError)):
        return Failure("malformed_response", redact(str(exc), secrets), False, endpoint_fault=True)
    return None


class Breaker:
    """Stops a run after ``threshold`` endpoint faults in a row (see the module docstring).

    ``accepts`` says whether the endpoint has answered a request of ours (in this run, or an
    ``ok`` row of the cache for this endpoint and model): only then is a rejection a verdict on
    one request rather than on the configuration.
    """

    def __init__(self, config: JudgeConfig, accepts: bool) -> None:
        self.config, self.accepts = config, accepts
        self.in_a_row = 0
        self.error: EndpointError | None = None

    def check(self) -> None:
        """Raise the :class:`EndpointError` that stopped the run, if any."""
        if self.error is not None:
            raise self.error

    def success(self) -> None:
        self.in_a_row = 0

    def strike(self, failure: Failure) -> None:
        """Count one fault; at the threshold raise (and keep raising) an :class:`EndpointError`."""
        self.check()
        self.in_a_row += 1
        if self.in_a_row >= self.config.breaker_threshold:
            hint = HINTS.get(failure.reason, "check JUDGE_LLM_BASE_URL")
            self.error = EndpointError(
                f"LLM judge at {self.config.endpoint_host} stopped after {self.in_a_row} {failure.reason} failures "
                f"in a row ({failure.detail}): {hint}",
                failure.reason,
            )
            raise self.error


async def with_retries(
    call: Callable[[], Any],
    config: JudgeConfig,
    breaker: Breaker,
    on_attempt: Callable[[], None],
    unusable: Callable[[Any], Failure | None] = lambda value: None,
):
    """Await ``call()`` up to ``max_attempts`` times while ``breaker`` allows it; returns
    ``(value, attempts, failure)``. Raises :class:`EndpointError` when the breaker trips.
    ``unusable(value)``: the failure a returned value stands for (it is returned as it is, not
    retried, and counts as a strike), else None."""
    attempt = 0
    while True:
        breaker.check()
        attempt += 1
        on_attempt()
        try:
            value = await call()
        except Exception as exc:  # noqa: BLE001 - classify returns None for unknown errors: re-raised
            failure = classify(exc, config)
            if failure is None:
                raise
        else:
            spoilt = unusable(value)
            if spoilt is None:
                breaker.success()
            else:
                breaker.strike(spoilt)
            return value, attempt, None
        if failure.endpoint_fault or (failure.permanent and not breaker.accepts):
            breaker.strike(failure)
        if failure.retryable and attempt < config.max_attempts:
            if failure.retry_after is not None:
                delay = failure.retry_after
            else:
                delay = random.uniform(0, min(config.backoff_max_s, config.backoff_base_s * 2 ** (attempt - 1)))
            await asyncio.sleep(delay)
            continue
        if failure.reason == "server_error":
            breaker.strike(failure)
        return None, attempt, failure
