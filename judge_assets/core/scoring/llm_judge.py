"""Pairwise LLM-judge probabilities from first-token logprobs, with a call-once DuckDB cache.

The judge sees one conversation and two final answers labelled A and B and must answer with
one token: ``A``, ``B`` or ``C``. ``C`` stands for a tie: a single letter is one token in the common
tokenizers, whereas "tie" may be split or compete with words like "The". Every request asks for
``max_tokens=1, temperature=0, logprobs=True, top_logprobs=k``, and the label probabilities are
read from the first token's ``top_logprobs`` candidates (``exp(logprob)`` summed per label).

Position bias: each item is scored in both orders (model_a shown as A, then model_b shown as
A, "swapped"); swapped probabilities are mapped back to canonical labels before averaging.

Call-once: each request's result is stored in the DuckDB table ``llm_score_cache`` under
``sha256(endpoint host, model, prompt version, top_logprobs, rendered messages)``, written in
small batches flushed every ``FLUSH_INTERVAL_S`` seconds while the run proceeds. ``ok`` and
``no_label_token`` rows are reused forever; ``error`` rows are retried by the next run.
The API key is never written to the database, to logs, to stats, or to any repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlsplit

import duckdb
import numpy as np
import openai
import pandas as pd

from judge_assets.core.db import connect

log = logging.getLogger(__name__)

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

CACHE_TABLE = "llm_score_cache"
CACHE_COLUMNS = (
    "cache_key VARCHAR PRIMARY KEY, item_id VARCHAR, swapped BOOLEAN, endpoint_host VARCHAR, "
    "model VARCHAR, prompt_version VARCHAR, mode VARCHAR, status VARCHAR, error VARCHAR, "
    "error_detail VARCHAR, top_logprobs_json VARCHAR, p_a DOUBLE, p_b DOUBLE, p_tie DOUBLE, "
    "label_mass DOUBLE, latency_s DOUBLE, prompt_tokens INTEGER, completion_tokens INTEGER, "
    "attempts INTEGER, created_at TIMESTAMPTZ"
)
REUSABLE_STATUSES = ("ok", "no_label_token")
FLUSH_INTERVAL_S = 0.2
MAX_BATCH_REQUESTS = 50_000
BATCH_TERMINAL = ("completed", "failed", "expired", "cancelled")
ITEM_COLUMNS = ("item_id", "user_turns", "answers_a", "answers_b")

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeConfig:
    """How to reach the judge and how hard to push it.

    ``api_key`` is excluded from ``repr`` (and so from logs of the config). ``mode`` is
    ``online`` (concurrent chat-completion calls) or ``batch`` (the OpenAI batch API).
    Retries: up to ``max_attempts`` calls per request, sleeping ``Retry-After`` when the server
    sends it, else ``uniform(0, min(backoff_max_s, backoff_base_s * 2**(attempt-1)))``.
    """

    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    concurrency: int = 16
    timeout: float = 60.0
    swap: bool = True
    top_logprobs: int = 5
    max_attempts: int = 5
    mode: str = "online"
    poll_interval: float = 10.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.base_url or urlsplit(self.base_url).scheme not in ("http", "https"):
            raise ValueError(f"JudgeConfig.base_url must be an http(s) URL, got {self.base_url!r}")
        if not self.model:
            raise ValueError("JudgeConfig.model must name the judge model")
        if self.mode not in ("online", "batch"):
            raise ValueError(f"JudgeConfig.mode must be 'online' or 'batch', got {self.mode!r}")
        if self.concurrency < 1 or self.max_attempts < 1:
            raise ValueError("JudgeConfig.concurrency and max_attempts must be >= 1")
        if not 1 <= self.top_logprobs <= 20:
            raise ValueError(f"JudgeConfig.top_logprobs must lie in [1, 20], got {self.top_logprobs}")
        if self.timeout <= 0 or self.poll_interval < 0:
            raise ValueError("JudgeConfig.timeout must be > 0 and poll_interval >= 0")

    @property
    def endpoint_host(self) -> str:
        """``host[:port]`` of ``base_url`` without user info (which could hold credentials)."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        return f"{host}:{parts.port}" if parts.port else host


# --------------------------------------------------------------------------------------------
# Prompt
# --------------------------------------------------------------------------------------------


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


def cache_key(config: JudgeConfig, messages: Sequence[Mapping]) -> str:
    """sha256 hex of endpoint host, model, prompt version, top_logprobs and the messages."""
    payload = json.dumps(
        [config.endpoint_host, config.model, PROMPT_VERSION, config.top_logprobs, list(messages)],
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def request_body(config: JudgeConfig, messages: Sequence[Mapping]) -> dict:
    """The chat-completions request body (online call and batch line alike)."""
    return {
        "model": config.model,
        "messages": list(messages),
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": config.top_logprobs,
    }


# --------------------------------------------------------------------------------------------
# Token mapping and order combination
# --------------------------------------------------------------------------------------------


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
    ('ok' | 'no_label_token' | 'error'), ``error`` (reason or None), ``p_a, p_b, p_tie``
    (canonical orientation), ``label_mass``.

    Returns one row per item (first-appearance order): ``p_a, p_b, p_tie`` = mean of the
    orders with status ``ok``; ``label_mass`` = their mean; ``n_orders`` = how many orders are
    ``ok``; ``position_consistency`` = 1 − total variation distance between the two orders'
    distributions (1 = the judge gives the same probabilities whichever answer is shown first,
    0 = disjoint; NaN unless both orders are ``ok``); per-order ``p_*_ab`` / ``p_*_ba``; and
    ``status``: ``error:<reason>`` if any order failed (rerun to fill it), else ``ok`` if any
    order found a label token, else ``no_label_token``.
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
    first_error = frame[frame["status"].eq("error")].groupby("item_id")["error"].first().reindex(items)
    any_ok = out["n_orders"] > 0
    out["status"] = np.where(
        first_error.notna(), "error:" + first_error.fillna("").astype(str), np.where(any_ok, "ok", "no_label_token")
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


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------


def ensure_cache(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``llm_score_cache`` if it does not exist.

    One row per request (item × order): ``cache_key`` (see :func:`cache_key`), ``item_id``,
    ``swapped``, ``endpoint_host``, ``model``, ``prompt_version``, ``mode`` (online | batch),
    ``status`` ('ok' | 'no_label_token' | 'error'), ``error`` (reason: rate_limited,
    server_error, timeout, connection_error, malformed_response, auth_error, bad_request,
    http_<code>, batch_request_failed, missing_from_batch, batch_<status>), ``error_detail``
    (HTTP status and server message, key redacted), ``top_logprobs_json`` (the raw
    candidates), ``p_a, p_b, p_tie`` (canonical orientation, NULL unless ok), ``label_mass``,
    ``latency_s`` (online: request time including retries), ``prompt_tokens``,
    ``completion_tokens``, ``attempts``, ``created_at``.
    """
    con.execute(f"CREATE TABLE IF NOT EXISTS {CACHE_TABLE} ({CACHE_COLUMNS})")


class _CacheWriter:
    """Buffers result rows; :meth:`write` upserts a batch in one statement (its own transaction).

    :func:`_flush_periodically` writes the buffer every ``FLUSH_INTERVAL_S`` and once more at
    the end of a run (also on errors), so a crash loses at most the calls in flight and the
    last 0.2 s of results. One statement per row costs ~8 ms in DuckDB, more than a call to a
    fast endpoint: hence small batches, written off the event loop.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, config: JudgeConfig) -> None:
        self.con, self.config = con, config
        self.rows: list[dict] = []

    def add(self, request: "_Request", result: "_Result") -> None:
        score = result.score
        self.rows.append(
            {
                "cache_key": request.cache_key,
                "item_id": request.item_id,
                "swapped": request.swapped,
                "endpoint_host": self.config.endpoint_host,
                "model": self.config.model,
                "prompt_version": PROMPT_VERSION,
                "mode": self.config.mode,
                "status": score.status if score else "error",
                "error": result.reason,
                "error_detail": result.detail,
                "top_logprobs_json": json.dumps(result.top_logprobs) if result.top_logprobs is not None else None,
                "p_a": score.p_a if score else None,
                "p_b": score.p_b if score else None,
                "p_tie": score.p_tie if score else None,
                "label_mass": score.label_mass if score else None,
                "latency_s": result.latency_s,
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "attempts": result.attempts,
                "created_at": datetime.now(timezone.utc),
            }
        )

    def take(self) -> list[dict]:
        rows, self.rows = self.rows, []
        return rows

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        frame = pd.DataFrame(rows).drop_duplicates("cache_key", keep="last")
        for col in ("p_a", "p_b", "p_tie", "label_mass", "latency_s"):
            frame[col] = frame[col].astype("float64")
        for col in ("prompt_tokens", "completion_tokens", "attempts"):
            frame[col] = frame[col].astype("Int64")
        self.con.register("__llm_cache_rows", frame)
        try:
            self.con.execute(f"INSERT OR REPLACE INTO {CACHE_TABLE} BY NAME SELECT * FROM __llm_cache_rows")
        finally:
            self.con.unregister("__llm_cache_rows")


async def _flush_periodically(writer: _CacheWriter, stop: asyncio.Event) -> None:
    """Every ``FLUSH_INTERVAL_S`` until ``stop`` is set, then once more: write the buffered rows
    in a worker thread (one write at a time) while the event loop keeps serving responses."""
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), FLUSH_INTERVAL_S)
        await asyncio.to_thread(writer.write, writer.take())
    await asyncio.to_thread(writer.write, writer.take())


# --------------------------------------------------------------------------------------------
# Requests, responses, failures
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    cache_key: str
    item_id: str
    swapped: bool
    messages: list


@dataclass
class _Result:
    score: TokenScore | None = None
    top_logprobs: list | None = None
    reason: str | None = None
    detail: str | None = None
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 1


class MalformedResponse(Exception):
    """The server answered 2xx but without the first token's ``top_logprobs``."""


def _parse_completion(body: Mapping, swapped: bool) -> _Result:
    """Read a chat-completion body (dict) into a result; raises :class:`MalformedResponse`."""
    try:
        content = body["choices"][0]["logprobs"]["content"]
        top = [{"token": str(c["token"]), "logprob": float(c["logprob"])} for c in content[0]["top_logprobs"]]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise MalformedResponse(f"no choices[0].logprobs.content[0].top_logprobs ({type(exc).__name__})") from None
    usage = body.get("usage") or {}
    return _Result(
        score=map_top_logprobs(top, swapped),
        top_logprobs=top,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
    )


@dataclass(frozen=True)
class _Failure:
    reason: str
    detail: str
    retryable: bool
    retry_after: float | None = None


def _retry_after(headers: Any) -> float | None:
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


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _classify(exc: BaseException, api_key: str) -> _Failure | None:
    """Failure reason for a known API/transport error, None for anything else (a bug)."""
    if isinstance(exc, openai.APITimeoutError):
        return _Failure("timeout", "request timed out", True)
    if isinstance(exc, openai.APIConnectionError):
        return _Failure("connection_error", _redact(str(exc), api_key)[:300], True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = _retry_after(exc.response.headers)
        if status in (401, 403):  # messages may echo a masked key: keep none of it
            return _Failure("auth_error", f"HTTP {status}", False)
        detail = f"HTTP {status}: {_redact(str(exc.message), api_key)[:300]}"
        if status == 429:
            return _Failure("rate_limited", detail, True, retry_after)
        if status >= 500 or status == 408:
            return _Failure("server_error", detail, True, retry_after)
        return _Failure("bad_request" if status in (400, 422) else f"http_{status}", detail, False)
    if isinstance(exc, (MalformedResponse, openai.APIResponseValidationError, json.JSONDecodeError)):
        return _Failure("malformed_response", _redact(str(exc), api_key)[:300], False)
    return None


async def _with_retries(call: Callable[[], Any], config: JudgeConfig, on_attempt: Callable[[], None]):
    """Await ``call()`` up to ``max_attempts`` times; returns ``(value, attempts, failure)``."""
    attempt = 0
    while True:
        attempt += 1
        on_attempt()
        try:
            return await call(), attempt, None
        except Exception as exc:  # noqa: BLE001 - _classify returns None for unknown errors: re-raised
            failure = _classify(exc, config.api_key)
            if failure is None:
                raise
            if not failure.retryable or attempt >= config.max_attempts:
                return None, attempt, failure
            if failure.retry_after is not None:
                delay = failure.retry_after
            else:
                delay = random.uniform(0, min(config.backoff_max_s, config.backoff_base_s * 2 ** (attempt - 1)))
            await asyncio.sleep(delay)


# --------------------------------------------------------------------------------------------
# Run statistics
# --------------------------------------------------------------------------------------------


@dataclass
class ScoringStats:
    """What a scoring run did. ``calls_made`` counts HTTP scoring attempts (online, retries
    included) or requests submitted (batch); ``failures`` counts final failures by reason."""

    mode: str
    requests: int = 0
    cache_hits: int = 0
    calls_made: int = 0
    scored: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_s: float = 0.0
    batch_ids: list[str] = field(default_factory=list)

    @property
    def calls_per_s(self) -> float:
        return self.calls_made / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "mode": self.mode,
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "calls_made": self.calls_made,
            "scored": self.scored,
            "failed": sum(self.failures.values()),
            "failures": dict(self.failures),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "wall_s": round(self.wall_s, 3),
            "calls_per_s": round(self.calls_per_s, 2),
            "batch_ids": list(self.batch_ids),
        }

    def record(self, result: _Result) -> None:
        if result.score is None:
            self.failures[result.reason] = self.failures.get(result.reason, 0) + 1
        else:
            self.scored += 1
        self.prompt_tokens += result.prompt_tokens or 0
        self.completion_tokens += result.completion_tokens or 0


# --------------------------------------------------------------------------------------------
# Online and batch execution
# --------------------------------------------------------------------------------------------


def _client(config: JudgeConfig) -> openai.AsyncOpenAI:
    # Local servers (vLLM, Ollama, llama.cpp) accept any key; the SDK refuses an empty one.
    return openai.AsyncOpenAI(
        base_url=config.base_url, api_key=config.api_key or "no-key", max_retries=0, timeout=config.timeout
    )


async def _score_online(
    client: openai.AsyncOpenAI,
    requests: list[_Request],
    config: JudgeConfig,
    writer: _CacheWriter,
    stats: ScoringStats,
    progress: Callable[[], None],
) -> None:
    semaphore = asyncio.Semaphore(config.concurrency)

    def count_call() -> None:
        stats.calls_made += 1

    async def one(request: _Request) -> None:
        async with semaphore:
            started = time.monotonic()

            async def call() -> _Result:
                # The client's generic POST (documented for raw requests) returns the JSON as a
                # dict: same errors, auth and timeouts as ``chat.completions.create`` without its
                # ~2 ms/call of request transformation and response-model building.
                body = await client.post("/chat/completions", cast_to=dict, body=request_body(config, request.messages))
                return _parse_completion(body, request.swapped)

            result, attempts, failure = await _with_retries(call, config, count_call)
            if failure is not None:
                result = _Result(reason=failure.reason, detail=failure.detail)
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


async def _control(call: Callable[[], Any], config: JudgeConfig, what: str):
    """A batch control-plane call (upload, create, poll, download) with the same retries."""
    value, attempts, failure = await _with_retries(call, config, lambda: None)
    if failure is not None:
        raise RuntimeError(f"batch {what} failed after {attempts} attempt(s): {failure.reason} ({failure.detail})")
    return value


def _parse_batch_line(line: Mapping, swapped: bool) -> _Result:
    response = line.get("response") or {}
    status_code = response.get("status_code")
    if line.get("error") or status_code != 200:
        error = line.get("error") or (response.get("body") or {}).get("error") or {}
        code = status_code or 0
        reason = "rate_limited" if code == 429 else "server_error" if code >= 500 else "batch_request_failed"
        return _Result(reason=reason, detail=f"HTTP {code}: {str(error.get('message', ''))[:300]}")
    try:
        return _parse_completion(response.get("body") or {}, swapped)
    except MalformedResponse as exc:
        return _Result(reason="malformed_response", detail=str(exc))


async def _score_batch(
    client: openai.AsyncOpenAI,
    requests: list[_Request],
    config: JudgeConfig,
    writer: _CacheWriter,
    stats: ScoringStats,
    progress: Callable[[int], None],
) -> None:
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
        results: dict[str, _Result] = {}
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
                    results[request.cache_key] = _parse_batch_line(line, request.swapped)
        missing = "missing_from_batch" if batch.status == "completed" else f"batch_{batch.status}"
        for key, request in chunk.items():
            result = results.get(key) or _Result(reason=missing, detail=f"batch {batch.id} ended {batch.status}")
            writer.add(request, result)
            stats.record(result)
        progress(start + len(chunk))


# --------------------------------------------------------------------------------------------
# Top level
# --------------------------------------------------------------------------------------------


def _build_requests(items: pd.DataFrame, config: JudgeConfig) -> list[_Request]:
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
            requests.append(_Request(cache_key(config, messages), str(item["item_id"]), swapped, messages))
    return requests


def _cached_keys(con: duckdb.DuckDBPyConnection, keys: list[str]) -> set[str]:
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


def _read_results(con: duckdb.DuckDBPyConnection, requests: list[_Request]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"pos": range(len(requests)), "cache_key": [r.cache_key for r in requests],
         "item_id": [r.item_id for r in requests], "swapped": [r.swapped for r in requests]}
    )
    con.register("__llm_requests", frame)
    try:
        return con.execute(
            f"SELECT r.item_id, r.swapped, coalesce(c.status, 'error') AS status, "
            f"CASE WHEN c.status IS NULL THEN 'not_scored' ELSE c.error END AS error, "
            f"c.p_a, c.p_b, c.p_tie, c.label_mass "
            f"FROM __llm_requests r LEFT JOIN {CACHE_TABLE} c USING (cache_key) ORDER BY r.pos"
        ).df()
    finally:
        con.unregister("__llm_requests")


SCORE_COLUMNS = (
    "item_id", "p_a", "p_b", "p_tie", "label_mass", "position_consistency", "n_orders", "model",
    "prompt_version", "status", "p_a_ab", "p_b_ab", "p_tie_ab", "p_a_ba", "p_b_ba", "p_tie_ba",
)


async def ascore_items(
    con: duckdb.DuckDBPyConnection,
    items: pd.DataFrame,
    config: JudgeConfig,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, ScoringStats]:
    """Async :func:`score_items` on an open connection (for callers already in an event loop)."""
    started = time.monotonic()
    stats = ScoringStats(mode=config.mode)
    requests = _build_requests(items, config)
    ensure_cache(con)
    unique = list({r.cache_key: r for r in requests}.values())
    cached = _cached_keys(con, [r.cache_key for r in unique])
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
    writer = _CacheWriter(con, config)
    if todo:
        client = _client(config)
        stop = asyncio.Event()
        flusher = asyncio.create_task(_flush_periodically(writer, stop))
        try:
            if config.mode == "online":
                await _score_online(client, todo, config, writer, stats, step)
            else:
                await _score_batch(client, todo, config, writer, stats, batch_progress)
        finally:
            stop.set()
            await flusher
            await client.close()
    scores = combine_orders(_read_results(con, requests))
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
    'ok' | 'no_label_token' | 'error:<reason>'), ``stats`` is a :class:`ScoringStats`.
    """
    if isinstance(con_or_db_path, (str, Path)):
        con = connect(con_or_db_path)
        try:
            return asyncio.run(ascore_items(con, items, config, progress))
        finally:
            con.close()
    return asyncio.run(ascore_items(con_or_db_path, items, config, progress))

