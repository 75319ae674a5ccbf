"""One judge request on the wire: the chat-completions body, and how a response body becomes a
:class:`Result`. Shared by the online client and the batch path."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from .config import JudgeConfig
from .prompts import TokenScore, map_top_logprobs


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


@dataclass(frozen=True)
class Request:
    """One request: an item in one answer order. ``messages`` as from ``render_messages``."""

    cache_key: str
    item_id: str
    swapped: bool
    messages: list


@dataclass
class Result:
    """What one request came to: a ``score`` (None on failure, then ``reason``/``detail`` say
    why, and ``permanent`` whether the endpoint rejected this very request for good), the raw
    first-token candidates, and what it cost."""

    score: TokenScore | None = None
    top_logprobs: list | None = None
    reason: str | None = None
    detail: str | None = None
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 1
    permanent: bool = False


class MalformedResponse(Exception):
    """The server answered 2xx but without the first token's ``top_logprobs``."""


def estimate_tokens(messages: Sequence[Mapping]) -> int:
    """A tokenizer-free estimate of a prompt's size: characters of all message contents / 4."""
    return math.ceil(sum(len(str(m.get("content") or "")) for m in messages) / 4)


def parse_completion(body: Mapping, swapped: bool) -> Result:
    """Read a chat-completion body (dict) into a result; raises :class:`MalformedResponse`.

    Candidates whose logprob is NaN, infinite or above 0 give a failed result with reason
    ``invalid_logprobs`` (the raw candidates kept), never a score.
    """
    try:
        content = body["choices"][0]["logprobs"]["content"]
        top = [{"token": str(c["token"]), "logprob": float(c["logprob"])} for c in content[0]["top_logprobs"]]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise MalformedResponse(f"no choices[0].logprobs.content[0].top_logprobs ({type(exc).__name__})") from None
    usage = body.get("usage") or {}
    result = Result(
        top_logprobs=top, prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens")
    )
    bad = next((c for c in top if not (math.isfinite(c["logprob"]) and c["logprob"] <= 0.0)), None)
    if bad is not None:
        result.reason = "invalid_logprobs"
        result.detail = f"first-token logprob {bad['logprob']} for {bad['token']!r}: logprobs must be finite and <= 0"
    else:
        result.score = map_top_logprobs(top, swapped)
    return result
