"""What a scoring run did: :class:`ScoringStats`."""

from __future__ import annotations

from dataclasses import dataclass, field

from .protocol import Result


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

    def record(self, result: Result) -> None:
        if not result.answered:
            self.failures[result.reason] = self.failures.get(result.reason, 0) + 1
        else:
            self.scored += 1
        self.prompt_tokens += result.prompt_tokens or 0
        self.completion_tokens += result.completion_tokens or 0
