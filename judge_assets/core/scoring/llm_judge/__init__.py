"""Pairwise LLM-judge probabilities from first-token logprobs, with a call-once DuckDB cache.

The judge sees one conversation and two final answers labelled A and B and answers with one
token (``A``, ``B`` or ``C`` for a tie). Every request asks for ``max_tokens=1,
temperature=0, logprobs=True, top_logprobs=k``; label probabilities are read from the first
token's candidates, and each item is scored in both answer orders. Each request's result is
stored in ``llm_score_cache`` so a request is paid for once. The API key is never written to
the database, to logs, to stats, or to any repr.

Modules, each readable alone:

- :mod:`.config` — :class:`JudgeConfig`, where the endpoint is and how hard to push it;
- :mod:`.prompts` — the pairwise prompt, rendering an ``items`` row as messages, mapping
  ``top_logprobs`` to labels and combining the two answer orders (no transport);
- :mod:`.protocol` — the request body and how a response body becomes a result;
- :mod:`.cache` — the ``llm_score_cache`` table, cache keys and the periodic writer;
- :mod:`.faults` — failure reasons, retries with backoff, the circuit breaker, :class:`EndpointError`;
- :mod:`.client` — the online path: the model check, concurrent calls;
- :mod:`.batch` — the OpenAI batch API path, resumable through ``llm_open_batches``;
- :mod:`.stats` — what a run did; :mod:`.run` — :func:`score_items` tying it together.
"""

from .batch import OPEN_BATCHES_TABLE
from .cache import CACHE_TABLE, cache_key, ensure_cache
from .config import JudgeConfig
from .faults import EndpointError
from .prompts import PROMPT_VERSION, TokenScore, combine_orders, first_position_preference, map_top_logprobs, render_messages
from .protocol import request_body
from .run import SCORE_COLUMNS, Progress, ascore_items, score_items
from .stats import ScoringStats

__all__ = [
    "CACHE_TABLE",
    "OPEN_BATCHES_TABLE",
    "PROMPT_VERSION",
    "SCORE_COLUMNS",
    "EndpointError",
    "JudgeConfig",
    "Progress",
    "ScoringStats",
    "TokenScore",
    "ascore_items",
    "cache_key",
    "combine_orders",
    "ensure_cache",
    "first_position_preference",
    "map_top_logprobs",
    "render_messages",
    "request_body",
    "score_items",
]
