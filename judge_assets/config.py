"""Every setting of the project: the environment variables, their defaults and their meaning, in one place.

Paths are resolved against the project root: the folder holding ``pyproject.toml`` next to the
package (an editable install or a clone), otherwise the current working directory.

:func:`settings` reads the environment into one typed :class:`Settings` and raises
:class:`ConfigError` naming the variable for a value it cannot use. Reading creates nothing.
The Dagster resources (``judge_assets.defs.resources``) bind the same variables as ``EnvVar``s,
so the UI shows which variable each field comes from and a bad value fails the run that uses
it, never the code location's import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_DATA_DIR = PACKAGE_DIR / "data" / "mt_bench"
BUNDLED_SOURCE = "bundled:mt_bench"
DEFAULT_LLM_ANNOTATORS = ("gpt4_pair",)
DEFAULT_MATRIX_MAX_ANNOTATORS = 1000
DEFAULT_JUDGES_DIR = "judges"
DEFAULT_PRIOR_JUDGE = "mean"
DEFAULT_CRITERIA_FILE = "criteria.yaml"
LLM_MODES = ("online", "batch")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A setting the project cannot use; the message names the variable and what it accepts."""


def project_root() -> Path:
    """The clone's root when running from one, else the working directory."""
    candidate = PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").exists():
        return candidate
    return Path.cwd()


def resolve_path(path: str | os.PathLike) -> Path:
    """``path`` made absolute against the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def split_csv(value: str | None, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """``"a, b,,c"`` → ``("a", "b", "c")``; empty → ``default``."""
    if value is None or not value.strip():
        return default
    return tuple(v.strip() for v in value.split(",") if v.strip())


def parse_positive(name: str, raw: str | None, default: float, kind: type = float) -> float:
    """A positive int or float from variable ``name``; empty → ``default``."""
    raw = (raw or "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {raw!r}")
    return value


def parse_flag(name: str, raw: str | None, default: bool) -> bool:
    """``on/off, true/false, yes/no, 1/0`` from variable ``name``; empty → ``default``."""
    raw = (raw or "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r}: use one of {', '.join(_TRUE + _FALSE)}")


def parse_mode(name: str, raw: str | None) -> str:
    """``online`` (default) or ``batch``."""
    mode = (raw or "").strip().lower() or "online"
    if mode not in LLM_MODES:
        raise ConfigError(f"{name}={raw!r}: use 'online' or 'batch'")
    return mode


def parse_scale_ends(name: str, raw: str | None) -> tuple[str, ...]:
    """``A,B`` or ``B,A`` (what the low and the high end of a pairwise scale favour); empty → ``()``."""
    ends = split_csv(raw)
    if ends and ends not in (("A", "B"), ("B", "A")):
        raise ConfigError(f"{name}={raw!r}: use A,B (the low end favours A) or B,A")
    return ends


def db_path() -> Path:
    """``JUDGE_DB`` resolved (default ``data/judge.duckdb``)."""
    return resolve_path(os.environ.get("JUDGE_DB") or "data/judge.duckdb")


@dataclass(frozen=True)
class LLMSettings:
    """The LLM judge endpoint. ``api_key_var`` is the *name* of the variable holding the key
    (``JUDGE_LLM_API_KEY``, else ``OPENAI_API_KEY``); the key itself is only read where a request
    is sent."""

    base_url: str | None = None
    model: str | None = None
    api_key_var: str | None = None
    concurrency: int = 16
    timeout: float = 60.0
    swap: bool = True
    mode: str = "online"
    judges_dir: Path = field(default_factory=lambda: resolve_path(DEFAULT_JUDGES_DIR))
    judges: tuple[str, ...] = ()
    panel: Path | None = None
    prior_judge: str = DEFAULT_PRIOR_JUDGE

    @property
    def models(self) -> tuple[str, ...]:
        """``model`` split at commas: the panel of the simple case (one shared endpoint)."""
        return split_csv(self.model)

    @property
    def configured(self) -> bool:
        return bool(self.panel or (self.base_url and self.model))


@dataclass(frozen=True)
class Settings:
    """Project settings. Build with :func:`settings` to read the environment."""

    db_path: Path
    source: str = BUNDLED_SOURCE
    source_split: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    scale_ends: tuple[str, ...] = ()
    llm_annotators: tuple[str, ...] = DEFAULT_LLM_ANNOTATORS
    gold_annotators: tuple[str, ...] = ()
    matrix_max_annotators: int = DEFAULT_MATRIX_MAX_ANNOTATORS
    inbox_dir: Path = field(default_factory=lambda: resolve_path("data/inbox"))
    dagster_home: Path = field(default_factory=lambda: resolve_path(".dagster_home"))
    llm: LLMSettings = field(default_factory=LLMSettings)
    sql_memory_limit: str = "1GB"
    sql_timeout: float | None = None
    criteria_file: Path = field(default_factory=lambda: resolve_path(DEFAULT_CRITERIA_FILE))


def criteria_file() -> Path:
    """``JUDGE_CRITERIA_FILE`` resolved (default ``criteria.yaml`` in the project root, beside ``judges/``)."""
    return resolve_path(os.environ.get("JUDGE_CRITERIA_FILE", "").strip() or DEFAULT_CRITERIA_FILE)


def settings() -> Settings:
    """Read the environment now (tests change it, so nothing is cached).

    - ``JUDGE_DB``: DuckDB file, default ``data/judge.duckdb``.
    - ``JUDGE_SOURCE``: ``bundled:mt_bench`` (default), a local parquet/jsonl/json/csv file or
      folder, or a Hugging Face dataset id (``owner/name``).
    - ``JUDGE_SOURCE_SPLIT``: comma-separated splits of an HF dataset (default: all splits).
    - ``JUDGE_LABELS``: comma-separated class set for the generic schema (default: inferred); a
      single ``a..b`` entry (``1..8``) is an ordinal scale (:mod:`judge_assets.core.scales`).
    - ``JUDGE_SCALE_ENDS``: on a scale, which side of a pairwise comparison each end favours:
      ``A,B`` (the low end favours A) or ``B,A``; unset = not a pairwise scale (no outcomes).
    - ``JUDGE_LLM_ANNOTATORS``: judges whose kind is ``llm`` (default ``gpt4_pair``).
    - ``JUDGE_GOLD_ANNOTATORS``: annotators whose votes are gold labels (``gold_labels``), never votes
      (default: none).
    - ``JUDGE_MATRIX_MAX_ANNOTATORS``: above this many annotators ``annotator_matrix`` stays long
      (default 1000).
    - ``JUDGE_INBOX_DIR``: folder watched for new annotation files (default ``data/inbox``).
    - ``DAGSTER_HOME``: Dagster instance folder (default ``.dagster_home``).
    - ``JUDGE_LLM_BASE_URL``, ``JUDGE_LLM_MODEL``: the LLM judge endpoint (unset = no LLM judge);
      ``JUDGE_LLM_API_KEY`` (else ``OPENAI_API_KEY``): its key; ``JUDGE_LLM_CONCURRENCY`` (16),
      ``JUDGE_LLM_TIMEOUT`` (seconds, 60), ``JUDGE_LLM_SWAP`` (on), ``JUDGE_LLM_MODE`` (online | batch).
      ``JUDGE_LLM_MODEL=a,b`` asks several models at the same endpoint (a panel).
    - ``JUDGE_JUDGES_DIR``: folder of judge files (``<name>.yaml``), default ``judges/``; the
      built-in judges (``judge_assets/judges/``) are found too.
    - ``JUDGE_JUDGES``: comma-separated judge names to run (default: ``mt-bench-pairwise``).
    - ``JUDGE_PANEL``: a YAML file listing the panel's models, each with its own ``base_url``,
      ``api_key_var`` (the key's variable NAME) and optional prices per million tokens
      (default: the models of ``JUDGE_LLM_MODEL`` at ``JUDGE_LLM_BASE_URL``).
    - ``JUDGE_PRIOR_JUDGE``: which ``<judge>:<model>`` feeds the model prior, or ``mean`` (default:
      the mean of the panel's judges whose verdicts are labels of the class set).
    - ``JUDGE_SQL_MEMORY_LIMIT``: memory cap of a ``judge-assets sql`` query, a DuckDB size such as
      ``1GB`` (default) or ``512MB``.
    - ``JUDGE_SQL_TIMEOUT``: seconds after which a ``judge-assets sql`` query is stopped (default: no
      limit); ``--timeout`` overrides it.
    - ``JUDGE_CRITERIA_FILE``: the criteria file of the EvalGen loop (criteria with code and LLM
      assertions, see :mod:`judge_assets.core.scoring.criteria`), default ``criteria.yaml``; a
      missing file leaves the ``criteria`` group's tables empty with a note.
    """
    env = os.environ
    key_var = next((n for n in ("JUDGE_LLM_API_KEY", "OPENAI_API_KEY") if env.get(n, "").strip()), None)
    return Settings(
        db_path=db_path(),
        source=env.get("JUDGE_SOURCE") or BUNDLED_SOURCE,
        source_split=split_csv(env.get("JUDGE_SOURCE_SPLIT")),
        labels=split_csv(env.get("JUDGE_LABELS")),
        scale_ends=parse_scale_ends("JUDGE_SCALE_ENDS", env.get("JUDGE_SCALE_ENDS")),
        llm_annotators=split_csv(env.get("JUDGE_LLM_ANNOTATORS"), DEFAULT_LLM_ANNOTATORS),
        gold_annotators=split_csv(env.get("JUDGE_GOLD_ANNOTATORS")),
        matrix_max_annotators=int(
            parse_positive("JUDGE_MATRIX_MAX_ANNOTATORS", env.get("JUDGE_MATRIX_MAX_ANNOTATORS"), DEFAULT_MATRIX_MAX_ANNOTATORS, int)
        ),
        inbox_dir=resolve_path(env.get("JUDGE_INBOX_DIR") or "data/inbox"),
        dagster_home=resolve_path(env.get("DAGSTER_HOME") or ".dagster_home"),
        llm=LLMSettings(
            base_url=env.get("JUDGE_LLM_BASE_URL", "").strip() or None,
            model=env.get("JUDGE_LLM_MODEL", "").strip() or None,
            api_key_var=key_var,
            concurrency=int(parse_positive("JUDGE_LLM_CONCURRENCY", env.get("JUDGE_LLM_CONCURRENCY"), 16, int)),
            timeout=parse_positive("JUDGE_LLM_TIMEOUT", env.get("JUDGE_LLM_TIMEOUT"), 60.0, float),
            swap=parse_flag("JUDGE_LLM_SWAP", env.get("JUDGE_LLM_SWAP"), True),
            mode=parse_mode("JUDGE_LLM_MODE", env.get("JUDGE_LLM_MODE")),
            judges_dir=resolve_path(env.get("JUDGE_JUDGES_DIR") or DEFAULT_JUDGES_DIR),
            judges=split_csv(env.get("JUDGE_JUDGES")),
            panel=resolve_path(env["JUDGE_PANEL"]) if env.get("JUDGE_PANEL", "").strip() else None,
            prior_judge=env.get("JUDGE_PRIOR_JUDGE", "").strip() or DEFAULT_PRIOR_JUDGE,
        ),
        sql_memory_limit=env.get("JUDGE_SQL_MEMORY_LIMIT", "").strip() or Settings.sql_memory_limit,
        sql_timeout=parse_positive("JUDGE_SQL_TIMEOUT", env.get("JUDGE_SQL_TIMEOUT"), None, float),
        criteria_file=criteria_file(),
    )
