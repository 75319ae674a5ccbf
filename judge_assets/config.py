"""Every setting of the project, read from the environment in one place.

Paths are resolved against the project root: the folder holding ``pyproject.toml`` next to
the package (an editable install or a clone), otherwise the current working directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_DATA_DIR = PACKAGE_DIR / "data" / "mt_bench"
BUNDLED_SOURCE = "bundled:mt_bench"
DEFAULT_LLM_ANNOTATORS = ("gpt4_pair",)


def project_root() -> Path:
    """The clone's root when running from one, else the working directory."""
    candidate = PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").exists():
        return candidate
    return Path.cwd()


def _resolve(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def _csv(value: str | None, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    if value is None or not value.strip():
        return default
    return tuple(v.strip() for v in value.split(",") if v.strip())


@dataclass(frozen=True)
class Settings:
    """Project settings. Build with :func:`settings` to read the environment."""

    db_path: Path
    source: str = BUNDLED_SOURCE
    source_split: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    llm_annotators: tuple[str, ...] = DEFAULT_LLM_ANNOTATORS
    matrix_max_annotators: int = 1000
    inbox_dir: Path = field(default_factory=lambda: _resolve("data/inbox"))
    dagster_home: Path = field(default_factory=lambda: _resolve(".dagster_home"))


def settings() -> Settings:
    """Read the environment now (tests change it, so nothing is cached).

    - ``JUDGE_DB``: DuckDB file, default ``data/judge.duckdb``.
    - ``JUDGE_SOURCE``: ``bundled:mt_bench`` (default), a local parquet/jsonl/json/csv file or
      folder, or a Hugging Face dataset id (``owner/name``).
    - ``JUDGE_SOURCE_SPLIT``: comma-separated splits of an HF dataset (default: all splits).
    - ``JUDGE_LABELS``: comma-separated class set for the generic schema (default: inferred).
    - ``JUDGE_LLM_ANNOTATORS``: judges whose kind is ``llm`` (default ``gpt4_pair``).
    - ``JUDGE_MATRIX_MAX_ANNOTATORS``: above this many annotators ``annotator_matrix`` stays long
      (default 1000).
    - ``JUDGE_INBOX_DIR``: folder watched for new annotation files (default ``data/inbox``).
    - ``DAGSTER_HOME``: Dagster instance folder (default ``.dagster_home``).
    """
    env = os.environ
    return Settings(
        db_path=_resolve(env.get("JUDGE_DB") or "data/judge.duckdb"),
        source=env.get("JUDGE_SOURCE") or BUNDLED_SOURCE,
        source_split=_csv(env.get("JUDGE_SOURCE_SPLIT")),
        labels=_csv(env.get("JUDGE_LABELS")),
        llm_annotators=_csv(env.get("JUDGE_LLM_ANNOTATORS"), DEFAULT_LLM_ANNOTATORS),
        matrix_max_annotators=int(env.get("JUDGE_MATRIX_MAX_ANNOTATORS") or 1000),
        inbox_dir=_resolve(env.get("JUDGE_INBOX_DIR") or "data/inbox"),
        dagster_home=_resolve(env.get("DAGSTER_HOME") or ".dagster_home"),
    )
