"""Resources: the DuckDB database, the pipeline's settings and the LLM judge endpoint.

Each field that comes from the environment is bound as a Dagster ``EnvVar`` when the variable is
set (the UI shows the variable's name, never a secret's value) and keeps its default otherwise.
Values are checked when a run initializes the resource, so a bad setting fails that run with the
variable named, and importing the code location never fails or creates anything. The variables
and their meaning are documented in :mod:`judge_assets.config`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Optional

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from judge_assets.config import (
    DEFAULT_JUDGES_DIR,
    DEFAULT_LLM_ANNOTATORS,
    DEFAULT_PRIOR_JUDGE,
    DEFAULT_MATRIX_MAX_ANNOTATORS,
    ConfigError,
    parse_flag,
    parse_mode,
    parse_positive,
    parse_scale_ends,
    db_path,
    resolve_path,
    split_csv,
)
from judge_assets.core.db import CONNECTION_CONFIG, connect
from judge_assets.core.scoring.llm_judge import JudgeConfig, JudgeSpec, load_judges
from judge_assets.core.scoring.llm_judge.panel import load_panel

#: Every asset that writes the DuckDB file runs in this concurrency pool (limit 1 in the
#: instance's dagster.yaml): DuckDB allows one writing process at a time.
DB_POOL = "judge_duckdb"
#: seconds an asset waits for another process's write lock on the database before failing
DB_WAIT_S = 120.0


class JudgeDuckDBResource(DuckDBResource):
    """``DuckDBResource`` opening the project database with :func:`judge_assets.core.db.connect`:
    the folder is created on first use (not at import), a writer of another process is waited for
    with a clear message, and the connection is closed even when the asset fails."""

    @contextmanager
    def get_connection(self):
        con = connect(self.database, wait_s=DB_WAIT_S)
        try:
            yield con
        finally:
            con.close()


class PipelineResource(dg.ConfigurableResource):
    """Which judges are LLMs, the declared class set, and the pivot limit (launchpad-editable).

    ``llm_annotators``, ``gold_annotators`` and ``labels`` are comma-separated (``JUDGE_LLM_ANNOTATORS``,
    ``JUDGE_GOLD_ANNOTATORS``, ``JUDGE_LABELS``)."""

    llm_annotators: str = Field(default=",".join(DEFAULT_LLM_ANNOTATORS), description="Judges whose annotator_kind is llm, comma-separated")
    labels: str = Field(default="", description="Class set of the generic schema in code order, comma-separated (empty: inferred); "
                        "one range such as 1..8 is an ordinal scale")
    scale_ends: str = Field(default="", description="Pairwise scale: what the low and high end favour, A,B or B,A (JUDGE_SCALE_ENDS; "
                            "empty: not pairwise)")
    matrix_max_annotators: int = Field(default=DEFAULT_MATRIX_MAX_ANNOTATORS, description="Above this many annotators annotator_matrix stays long")
    gold_annotators: str = Field(default="", description="Annotators whose votes are gold labels, not votes, comma-separated")

    @property
    def llm_annotator_names(self) -> tuple[str, ...]:
        return split_csv(self.llm_annotators)

    @property
    def gold_annotator_names(self) -> tuple[str, ...]:
        return split_csv(self.gold_annotators)

    @property
    def label_names(self) -> tuple[str, ...]:
        return split_csv(self.labels)

    @property
    def scale_end_names(self) -> tuple[str, ...]:
        """``JUDGE_SCALE_ENDS`` checked: ``()``, ``("A", "B")`` or ``("B", "A")``."""
        return parse_scale_ends("JUDGE_SCALE_ENDS", self.scale_ends)


class LLMJudgeResource(dg.ConfigurableResource):
    """Where and how to call the LLM judge panel: which judges (files), which models (see
    :class:`judge_assets.core.scoring.llm_judge.JudgeConfig` and ``.panel``)."""

    base_url: Optional[str] = Field(default=None, description="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    model: Optional[str] = Field(default=None, description="Judge model name(s), comma-separated for a panel on one endpoint")
    api_key: Optional[str] = Field(default=None, repr=False, description="API key; bind with EnvVar, never a literal")
    concurrency: int = Field(default=16, description="Requests in flight at once (online mode)")
    timeout: str = Field(default="60", description="Seconds per request")
    swap: str = Field(default="on", description="Also score with the answers swapped (position-bias control): on | off")
    mode: str = Field(default="online", description="online | batch")
    poll_interval: float = Field(default=10.0, description="Seconds between batch status polls")
    judges_dir: str = Field(default=DEFAULT_JUDGES_DIR, description="Folder of judge files <name>.yaml (JUDGE_JUDGES_DIR)")
    judges: str = Field(default="", description="Judges to run, comma-separated (JUDGE_JUDGES; empty: mt-bench-pairwise)")
    panel: Optional[str] = Field(default=None, description="YAML file listing the panel's models and endpoints (JUDGE_PANEL)")
    prior_judge: str = Field(default=DEFAULT_PRIOR_JUDGE, description="<judge>:<model> feeding the model prior, or mean (JUDGE_PRIOR_JUDGE)")

    @property
    def is_configured(self) -> bool:
        """True when a panel file, or a base URL and a model, are set (the key may be empty for
        local servers).

        Read it inside an asset, on the initialized resource: Dagster resolves ``EnvVar`` fields
        only when a run initializes the resource."""
        return bool(self.panel or (self.base_url and self.model))

    def judge_specs(self) -> list[JudgeSpec]:
        """The judges to run, read from their files (JudgeSpecError names a bad file and field)."""
        return load_judges(split_csv(self.judges), resolve_path(self.judges_dir))

    def to_configs(self) -> list[JudgeConfig]:
        """One core config per panel model; raises ConfigError naming the variable that is
        missing or invalid. Keys are read from the environment here, by variable name."""
        if not self.is_configured:
            missing = [name for name, value in (("JUDGE_LLM_BASE_URL", self.base_url), ("JUDGE_LLM_MODEL", self.model)) if not value]
            raise ConfigError(f"the LLM judge is not configured: set {' and '.join(missing)} (or JUDGE_PANEL)")
        if self.concurrency <= 0:
            raise ConfigError(f"JUDGE_LLM_CONCURRENCY must be > 0, got {self.concurrency}")
        common = dict(
            concurrency=self.concurrency,
            timeout=parse_positive("JUDGE_LLM_TIMEOUT", self.timeout, 60.0, float),
            swap=parse_flag("JUDGE_LLM_SWAP", self.swap, True),
            mode=parse_mode("JUDGE_LLM_MODE", self.mode),
            poll_interval=self.poll_interval,
        )
        if not self.panel:
            return [JudgeConfig(base_url=self.base_url, model=m, api_key=self.api_key or "", **common) for m in split_csv(self.model)]
        configs = []
        for member in load_panel(resolve_path(self.panel)):
            base_url = member.base_url or self.base_url
            if not base_url:
                raise ConfigError(f"JUDGE_PANEL={self.panel}: model {member.model!r} has no base_url and JUDGE_LLM_BASE_URL is not set")
            if member.api_key_var and not os.environ.get(member.api_key_var, "").strip():
                raise ConfigError(f"JUDGE_PANEL={self.panel}: model {member.model!r} names api_key_var {member.api_key_var}, which is not set")
            key = os.environ[member.api_key_var] if member.api_key_var else self.api_key or ""
            configs.append(
                JudgeConfig(base_url=base_url, model=member.model, api_key=key, price_in_per_1m=member.price_in_per_1m,
                            price_out_per_1m=member.price_out_per_1m, **common)
            )
        return configs


def _env(name: str, default, kind: type = str):
    """``EnvVar(name)`` (``EnvVar.int`` for ints) when the variable is set, else ``default``."""
    if not os.environ.get(name, "").strip():
        return default
    return dg.EnvVar.int(name) if kind is int else dg.EnvVar(name)


def project_resources() -> dict[str, dg.ConfigurableResource]:
    """The resources of the code location, bound to the environment (see the module docstring)."""
    key_var = next((n for n in ("JUDGE_LLM_API_KEY", "OPENAI_API_KEY") if os.environ.get(n, "").strip()), None)
    return {
        "duckdb": JudgeDuckDBResource(database=str(db_path()), connection_config=CONNECTION_CONFIG),
        "pipeline": PipelineResource(
            llm_annotators=_env("JUDGE_LLM_ANNOTATORS", ",".join(DEFAULT_LLM_ANNOTATORS)),
            labels=_env("JUDGE_LABELS", ""),
            scale_ends=_env("JUDGE_SCALE_ENDS", ""),
            matrix_max_annotators=_env("JUDGE_MATRIX_MAX_ANNOTATORS", DEFAULT_MATRIX_MAX_ANNOTATORS, int),
            gold_annotators=_env("JUDGE_GOLD_ANNOTATORS", ""),
        ),
        "llm_judge": LLMJudgeResource(
            base_url=_env("JUDGE_LLM_BASE_URL", None),
            model=_env("JUDGE_LLM_MODEL", None),
            api_key=dg.EnvVar(key_var) if key_var else None,
            concurrency=_env("JUDGE_LLM_CONCURRENCY", 16, int),
            timeout=_env("JUDGE_LLM_TIMEOUT", "60"),
            swap=_env("JUDGE_LLM_SWAP", "on"),
            mode=_env("JUDGE_LLM_MODE", "online"),
            judges_dir=_env("JUDGE_JUDGES_DIR", DEFAULT_JUDGES_DIR),
            judges=_env("JUDGE_JUDGES", ""),
            panel=_env("JUDGE_PANEL", None),
            prior_judge=_env("JUDGE_PRIOR_JUDGE", DEFAULT_PRIOR_JUDGE),
        ),
    }
