"""Where the LLM judge lives and how hard to push it: :class:`JudgeConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

MIN_SECRET_LEN = 4
"""URL parts shorter than this are not redacted: they cannot be told apart from ordinary text."""


@dataclass(frozen=True)
class JudgeConfig:
    """How to reach the judge and how hard to push it.

    ``api_key`` is excluded from ``repr`` (and so from logs of the config). ``mode`` is
    ``online`` (concurrent chat-completion calls) or ``batch`` (the OpenAI batch API).
    Retries: up to ``max_attempts`` calls per request, sleeping ``Retry-After`` when the server
    sends it, else ``uniform(0, min(backoff_max_s, backoff_base_s * 2**(attempt-1)))``.
    ``breaker_threshold``: this many endpoint faults in a row (auth, not found, connection,
    timeout, or a request that failed with 5xx on every attempt) stop the run with
    :class:`~.errors.EndpointError`. ``swap=False`` turns off the second answer order for every
    pairwise judge (a judge file can turn it off for itself). ``price_in_per_1m`` /
    ``price_out_per_1m``: US dollars per million prompt / completion tokens, when known (for
    ``cost_usd``). ``base_url`` may carry a query string (sent with every
    request) and user info; both, like the key, are redacted from every stored or logged text
    and from ``repr``.
    """

    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    concurrency: int = 16
    timeout: float = 60.0
    swap: bool = True
    max_attempts: int = 5
    mode: str = "online"
    poll_interval: float = 10.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    breaker_threshold: int = 5
    price_in_per_1m: float | None = None
    price_out_per_1m: float | None = None

    def __post_init__(self) -> None:
        if not self.base_url or urlsplit(self.base_url).scheme not in ("http", "https"):
            raise ValueError(f"JudgeConfig.base_url must be an http(s) URL, got {self.base_url!r}")
        if not self.model:
            raise ValueError("JudgeConfig.model must name the judge model")
        if self.mode not in ("online", "batch"):
            raise ValueError(f"JudgeConfig.mode must be 'online' or 'batch', got {self.mode!r}")
        if self.concurrency < 1 or self.max_attempts < 1 or self.breaker_threshold < 1:
            raise ValueError("JudgeConfig.concurrency, max_attempts and breaker_threshold must be >= 1")
        if self.timeout <= 0 or self.poll_interval < 0:
            raise ValueError("JudgeConfig.timeout must be > 0 and poll_interval >= 0")

    def __repr__(self) -> str:
        return (
            f"JudgeConfig(endpoint_host={self.endpoint_host!r}, model={self.model!r}, mode={self.mode!r}, "
            f"concurrency={self.concurrency}, timeout={self.timeout}, swap={self.swap})"
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """Texts never to store or log: the key, the URL's user name and password, its query values."""
        parts = urlsplit(self.base_url)
        candidates = [self.api_key, parts.username, parts.password, *(v for _, v in parse_qsl(parts.query))]
        return tuple(sorted({c for c in candidates if c and len(c) >= MIN_SECRET_LEN}, key=len, reverse=True))

    @property
    def endpoint_host(self) -> str:
        """``host[:port]`` of ``base_url`` without user info (which could hold credentials)."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        return f"{host}:{parts.port}" if parts.port else host
