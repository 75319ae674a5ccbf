"""LLM-judge label probabilities from first-token logprobs, for judges declared as files, with a
call-once DuckDB cache.

A judge (:class:`JudgeSpec`, one YAML file: :mod:`.specs`) has a shape — ``pairwise``,
``single``, ``reference`` or ``classify`` — templates over item columns, and a one-token
answer per label. Every request asks for the judge's ``max_tokens`` (1), ``temperature`` (0)
and ``top_logprobs``; label probabilities are read from the first token's candidates, and a
pairwise item is scored in both output orders. Each request's answer is stored in
``llm_score_cache`` under a hash of the request itself, so a request is paid for once and an
edited template re-scores exactly what changed. The API key is never written to the database,
to logs, to stats, or to any repr.

Modules, each readable alone:

- :mod:`.specs` — :class:`JudgeSpec`, reading and checking judge files, the built-in judges;
- :mod:`.config` — :class:`JudgeConfig`, where one model is and how hard to push it;
- :mod:`.prompts` — rendering an ``items`` row as messages, mapping ``top_logprobs`` to labels,
  combining the answer orders, picking a label without position bias (no transport);
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
from .prompts import (
    TokenScore,
    combine_orders,
    default_judge,
    first_position_preference,
    map_top_logprobs,
    pick_label,
    render_messages,
)
from .protocol import request_body
from .run import SCORE_COLUMNS, MissingColumnError, Progress, ascore_items, check_columns, label_probs_long, score_items
from .specs import BUILTIN_DIR, DEFAULT_JUDGE, JudgeSpec, JudgeSpecError, load_judge, load_judges, parse_spec
from .stats import ScoringStats

__all__ = [
    "BUILTIN_DIR",
    "CACHE_TABLE",
    "DEFAULT_JUDGE",
    "OPEN_BATCHES_TABLE",
    "SCORE_COLUMNS",
    "EndpointError",
    "JudgeConfig",
    "JudgeSpec",
    "JudgeSpecError",
    "MissingColumnError",
    "Progress",
    "ScoringStats",
    "TokenScore",
    "ascore_items",
    "cache_key",
    "check_columns",
    "combine_orders",
    "default_judge",
    "ensure_cache",
    "first_position_preference",
    "label_probs_long",
    "load_judge",
    "load_judges",
    "map_top_logprobs",
    "parse_spec",
    "pick_label",
    "render_messages",
    "request_body",
    "score_items",
]
