"""One judge request on the wire: the chat-completions body, and how a response body becomes a
:class:`Result`. Shared by the online client and the batch path."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from .config import JudgeConfig
from .specs import JudgeSpec


def request_body(config: JudgeConfig, judge: JudgeSpec, messages: Sequence[Mapping]) -> dict:
    """The chat-completions request body (online call and batch line alike): the model, the
    messages and the judge's ``max_tokens``, ``temperature`` and ``top_logprobs``."""
    return {
        "model": config.model,
        "messages": list(messages),
        "max_tokens": judge.max_tokens,
        "temperature": judge.temperature,
        "logprobs": True,
        "top_logprobs": judge.top_logprobs,
    }


@dataclass(frozen=True)
class Request:
    """One request: an item in one answer order for one judge. ``messages`` as from
    ``render_messages``; ``body`` the request body the cache key is computed from."""

    cache_key: str
    item_id: str
    swapped: bool
    messages: list
    body: dict


@dataclass
class Result:
    """What one request came to: the first token's candidates ``top_logprobs`` (valid when
    ``reason`` is None; else ``reason``/``detail`` say why it failed, and ``permanent`` whether
    the endpoint rejected this very request for good), and what it cost. Mapping the candidates
    to labels is the judge's business (:func:`.prompts.map_top_logprobs`), done when reading."""

    top_logprobs: list | None = None
    reason: str | None = None
    detail: str | None = None
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 1
    permanent: bool = False

    @property
    def answered(self) -> bool:
        """The endpoint answered with usable first-token candidates."""
        return self.reason is None and self.top_logprobs is not None


class MalformedResponse(Exception):
    """The server answered 2xx but without the first token's ``top_logprobs``."""


def estimate_tokens(messages: Sequence[Mapping]) -> int:
    """A tokenizer-free estimate of a prompt's size: characters of all message contents / 4."""
    return math.ceil(sum(len(str(m.get("content") or "")) for m in messages) / 4)


def parse_completion(body: Mapping) -> Result:
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
    return result
