"""A judge panel: several models, each on its own endpoint if needed, read from one YAML file.

::

    models:
      - model: gpt-4o-mini
        base_url: https://api.openai.com/v1   # default: JUDGE_LLM_BASE_URL
        api_key_var: OPENAI_API_KEY           # the NAME of the variable holding the key
        price_per_1m_input: 0.15              # US dollars per million prompt tokens (optional)
        price_per_1m_output: 0.60             # ... and per million completion tokens (optional)
      - model: qwen2.5-7b-instruct
        base_url: http://127.0.0.1:8080/v1

A key is only ever named by its variable (``api_key_var``); a literal ``api_key`` field is
refused. The simple case needs no file: ``JUDGE_LLM_MODEL=a,b`` asks both models at the shared
``JUDGE_LLM_BASE_URL``. Every judge runs on every model; each (judge, model) pair is one
annotator, ``<judge>:<model>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .specs import JudgeSpecError

VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MEMBER_KEYS = {"model", "base_url", "api_key_var", "price_per_1m_input", "price_per_1m_output"}


@dataclass(frozen=True)
class PanelMember:
    """One model of the panel; ``base_url`` / ``api_key_var`` None = the shared setting."""

    model: str
    base_url: str | None = None
    api_key_var: str | None = None
    price_in_per_1m: float | None = None
    price_out_per_1m: float | None = None


def _price(source: str, where: str, raw: dict, key: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise JudgeSpecError(source, f"{where}.{key}", f"must be a number >= 0 (US dollars per million tokens), got {value!r}")
    return float(value)


def load_panel(path: str | Path) -> list[PanelMember]:
    """The panel file's models; raises :class:`~.specs.JudgeSpecError` naming the file and field."""
    source = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise JudgeSpecError(source, None, f"cannot read the panel file ({exc})") from None
    except yaml.YAMLError as exc:
        raise JudgeSpecError(source, None, f"is not valid YAML ({' '.join(str(exc).split())})") from None
    models = raw.get("models") if isinstance(raw, dict) else None
    if not isinstance(models, list) or not models:
        raise JudgeSpecError(source, "models", "must be a non-empty list of {model, base_url, api_key_var, ...}")
    members, seen = [], set()
    for i, entry in enumerate(models):
        where = f"models[{i}]"
        if not isinstance(entry, dict):
            raise JudgeSpecError(source, where, "must be a mapping with at least 'model'")
        if "api_key" in entry:
            raise JudgeSpecError(source, f"{where}.api_key", "a key never goes in a file: name its environment variable in api_key_var")
        unknown = sorted(set(map(str, entry)) - MEMBER_KEYS)
        if unknown:
            raise JudgeSpecError(source, f"{where}.{unknown[0]}", f"unknown field (fields: {', '.join(sorted(MEMBER_KEYS))})")
        model = str(entry.get("model") or "").strip()
        if not model:
            raise JudgeSpecError(source, f"{where}.model", "is required")
        key_var = entry.get("api_key_var")
        if key_var is not None and not (isinstance(key_var, str) and VAR.match(key_var)):
            raise JudgeSpecError(source, f"{where}.api_key_var", f"must be an environment variable name, got {key_var!r}")
        base_url = entry.get("base_url")
        if base_url is not None and not isinstance(base_url, str):
            raise JudgeSpecError(source, f"{where}.base_url", "must be a URL")
        if model in seen:
            raise JudgeSpecError(source, f"{where}.model", f"{model!r} is listed twice (a model is one annotator per judge)")
        seen.add(model)
        members.append(
            PanelMember(model, base_url, key_var, _price(source, where, entry, "price_per_1m_input"), _price(source, where, entry, "price_per_1m_output"))
        )
    return members
