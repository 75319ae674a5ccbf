"""The LLM judge endpoint as a Dagster resource, configured from the environment.

- ``JUDGE_LLM_BASE_URL``: OpenAI-compatible base URL (``https://api.openai.com/v1``, a vLLM /
  Ollama / llama.cpp server's ``http://host:port/v1``). Unset = no LLM judge.
- ``JUDGE_LLM_MODEL``: the judge model name. Unset = no LLM judge.
- ``JUDGE_LLM_API_KEY`` (else ``OPENAI_API_KEY``): bound as a Dagster ``EnvVar``, so the UI and
  run config show the variable's name, never its value.
- ``JUDGE_LLM_CONCURRENCY`` (16), ``JUDGE_LLM_TIMEOUT`` (seconds, 60), ``JUDGE_LLM_SWAP``
  (on/off: score both answer orders), ``JUDGE_LLM_MODE`` (online | batch).
"""

from __future__ import annotations

import os
from typing import Optional

import dagster as dg
from pydantic import Field

from judge_assets.core.llm_judge import JudgeConfig

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class LLMJudgeResource(dg.ConfigurableResource):
    """Where and how to call the LLM judge (see :class:`judge_assets.core.llm_judge.JudgeConfig`)."""

    base_url: Optional[str] = Field(default=None, description="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    model: Optional[str] = Field(default=None, description="Judge model name")
    api_key: Optional[str] = Field(default=None, repr=False, description="API key; bind with EnvVar, never a literal")
    concurrency: int = Field(default=16, description="Requests in flight at once (online mode)")
    timeout: float = Field(default=60.0, description="Seconds per request")
    swap: bool = Field(default=True, description="Also score with the answers swapped (position-bias control)")
    mode: str = Field(default="online", description="online | batch")
    poll_interval: float = Field(default=10.0, description="Seconds between batch status polls")

    @property
    def is_configured(self) -> bool:
        """True when a base URL and a model are set (the key may be empty for local servers).

        Read it inside an asset, on the initialized resource: Dagster resolves ``EnvVar`` fields
        only when a run initializes the resource."""
        return bool(self.base_url and self.model)

    def to_config(self) -> JudgeConfig:
        """The core config; raises ValueError naming the missing variable when not configured."""
        if not self.is_configured:
            missing = [name for name, value in (("JUDGE_LLM_BASE_URL", self.base_url), ("JUDGE_LLM_MODEL", self.model)) if not value]
            raise ValueError(f"the LLM judge is not configured: set {' and '.join(missing)}")
        return JudgeConfig(
            base_url=self.base_url,
            model=self.model,
            api_key=self.api_key or "",
            concurrency=self.concurrency,
            timeout=self.timeout,
            swap=self.swap,
            mode=self.mode,
            poll_interval=self.poll_interval,
        )


def _number(name: str, default: float, kind: type) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {raw!r}")
    return value


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r}: use one of {_TRUE + _FALSE}")


def llm_judge_resource_from_env() -> LLMJudgeResource:
    """The resource for ``Definitions``: string settings as ``EnvVar`` (resolved at run time)
    when the variable is set, unset optional variables as defaults, so a project without an
    LLM endpoint loads fine and ``is_configured`` is False."""
    env = os.environ

    def env_var(*names: str) -> Optional[dg.EnvVar]:
        for name in names:
            if env.get(name, "").strip():
                return dg.EnvVar(name)
        return None

    mode = env.get("JUDGE_LLM_MODE", "").strip().lower() or "online"
    if mode not in ("online", "batch"):
        raise ValueError(f"JUDGE_LLM_MODE={mode!r}: use 'online' or 'batch'")
    return LLMJudgeResource(
        base_url=env_var("JUDGE_LLM_BASE_URL"),
        model=env_var("JUDGE_LLM_MODEL"),
        api_key=env_var("JUDGE_LLM_API_KEY", "OPENAI_API_KEY"),
        concurrency=int(_number("JUDGE_LLM_CONCURRENCY", 16, int)),
        timeout=_number("JUDGE_LLM_TIMEOUT", 60.0, float),
        swap=_flag("JUDGE_LLM_SWAP", True),
        mode=mode,
    )
