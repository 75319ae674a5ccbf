"""Great Expectations 1.x suites over the consensus-stage frames, with failing rows reported.

Three suites, each run on pandas frames in an ephemeral GX context (nothing written to disk):

- :func:`validate_label_coverage`: every item of the matrix has at least one label, a consensus
  label and a ``model_probs`` row; every annotator has at least one label. The share
  of items with two or more labels is reported in ``stats``.
- :func:`validate_probabilities`: ``model_probs`` rows sum to 1 ± 1e-6, every probability lies
  in [0, 1]; :func:`validate_scores`: quality scores lie in [0, 1].
- :func:`validate_label_domain`: every label of the given columns is in the declared class set.

Each returns a :class:`ValidationResult` (plain data, so a Dagster asset check can put it in
``AssetCheckResult`` metadata): ``passed`` and, per expectation, its name, success, unexpected
count and up to ``MAX_FAILING_ROWS`` failing rows (``item_id`` / ``annotator`` and value).

GX is imported lazily (about 3 s); set ``GX_ANALYTICS_ENABLED=false`` to keep it offline.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

MAX_FAILING_ROWS = 20
SUM_TOLERANCE = 1e-6
_names = itertools.count()


@dataclass
class ExpectationOutcome:
    """One expectation's result: ``failing_rows`` holds at most ``MAX_FAILING_ROWS`` dicts."""

    name: str
    frame: str
    column: str
    success: bool
    element_count: int
    unexpected_count: int
    failing_rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ValidationResult:
    """A suite's outcome: ``passed`` is true when every expectation succeeded."""

    suite: str
    passed: bool
    expectations: list[ExpectationOutcome]
    stats: dict[str, float] = field(default_factory=dict)

    def failures(self) -> list[ExpectationOutcome]:
        return [e for e in self.expectations if not e.success]

    def summary(self) -> str:
        """One line per failed expectation, or 'all N expectations passed'."""
        if self.passed:
            return f"{self.suite}: all {len(self.expectations)} expectations passed"
        return "\n".join(
            f"{self.suite}: {e.name} on {e.frame}.{e.column} failed for {e.unexpected_count} of {e.element_count} rows"
            for e in self.failures()
        )


@lru_cache(maxsize=1)
def _context():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _plain(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def _run(frame_name: str, frame: pd.DataFrame, key: str, expectations: list) -> list[ExpectationOutcome]:
    """Validate ``frame`` against ``expectations``; failing rows are identified by column ``key``."""
    import great_expectations as gx

    context = _context()
    n = next(_names)
    source = context.data_sources.add_pandas(f"judge_assets_{n}")
    asset = source.add_dataframe_asset(name=f"{frame_name}_{n}")
    batch = asset.add_batch_definition_whole_dataframe(f"batch_{n}").get_batch(batch_parameters={"dataframe": frame.reset_index(drop=True)})
    suite = gx.ExpectationSuite(name=f"{frame_name}_suite_{n}")
    for expectation in expectations:
        suite.add_expectation(expectation)
    result = batch.validate(suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [key]})
    outcomes = []
    for r in result.results:
        config = r.expectation_config
        column = config.kwargs.get("column")
        rows = [{k: _plain(v) for k, v in row.items()} for row in (r.result.get("unexpected_index_list") or [])[:MAX_FAILING_ROWS]]
        outcomes.append(
            ExpectationOutcome(
                name=config.type,
                frame=frame_name,
                column=column,
                success=bool(r.success),
                element_count=int(r.result.get("element_count", len(frame))),
                unexpected_count=int(r.result.get("unexpected_count", 0)),
                failing_rows=rows,
            )
        )
    return outcomes


def _result(suite: str, outcomes: list[ExpectationOutcome], stats: dict[str, float] | None = None) -> ValidationResult:
    return ValidationResult(suite=suite, passed=all(o.success for o in outcomes), expectations=outcomes, stats=stats or {})


def validate_label_coverage(
    item_labels: pd.DataFrame, annotator_labels: pd.DataFrame, consensus_labels: pd.DataFrame, model_probs: pd.DataFrame
) -> ValidationResult:
    """Coverage: labels per item and per annotator, a consensus label and a prior per item.

    ``item_labels``: ``item_id, n_labels`` for every item of the matrix (SQL: ``items`` left
    join ``judgments``). ``annotator_labels``: ``annotator, n_labels`` for every annotator.
    ``consensus_labels``: ``item_id, consensus_label``. ``model_probs``: ``item_id, p_*``.
    ``stats``: ``n_items``, ``share_items_2plus_labels``.
    """
    import great_expectations as gx

    for name, frame, cols in (("item_labels", item_labels, ["item_id", "n_labels"]), ("annotator_labels", annotator_labels, ["annotator", "n_labels"])):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks column(s) {missing}")
    n_labels = item_labels["n_labels"].fillna(0).to_numpy()
    consensus = consensus_labels.dropna(subset=["consensus_label"])
    per_item = pd.DataFrame(
        {
            "item_id": item_labels["item_id"].astype(str).to_numpy(),
            "n_labels": n_labels,
            "has_consensus": item_labels["item_id"].isin(consensus["item_id"]).to_numpy(),
            "has_model_probs": item_labels["item_id"].isin(model_probs["item_id"]).to_numpy(),
        }
    )
    per_annotator = pd.DataFrame(
        {"annotator": annotator_labels["annotator"].astype(str).to_numpy(), "n_labels": annotator_labels["n_labels"].fillna(0).to_numpy()}
    )
    outcomes = _run(
        "items",
        per_item,
        "item_id",
        [
            gx.expectations.ExpectColumnValuesToBeBetween(column="n_labels", min_value=1),
            gx.expectations.ExpectColumnValuesToBeInSet(column="has_consensus", value_set=[True]),
            gx.expectations.ExpectColumnValuesToBeInSet(column="has_model_probs", value_set=[True]),
        ],
    )
    outcomes += _run(
        "annotators",
        per_annotator,
        "annotator",
        [gx.expectations.ExpectColumnValuesToBeBetween(column="n_labels", min_value=1)],
    )
    stats = {
        "n_items": float(len(per_item)),
        "share_items_2plus_labels": float((n_labels >= 2).mean()) if len(per_item) else float("nan"),
    }
    return _result("label_coverage", outcomes, stats)


def validate_probabilities(model_probs: pd.DataFrame, classes: tuple[str, ...]) -> ValidationResult:
    """``model_probs`` rows are probability vectors.

    ``model_probs``: ``item_id, p_<label>`` for every class in ``classes``. A ``row_sum`` column
    is computed and expected within 1 ± ``SUM_TOLERANCE``; each ``p_*`` not null and in [0, 1].
    """
    import great_expectations as gx

    cols = [f"p_{c}" for c in classes]
    missing = [c for c in ["item_id", *cols] if c not in model_probs.columns]
    if missing:
        raise ValueError(f"model_probs lacks column(s) {missing}")
    probs = model_probs[["item_id", *cols]].copy()
    probs["item_id"] = probs["item_id"].astype(str)
    probs["row_sum"] = probs[cols].sum(axis=1, min_count=len(cols))
    expectations = [gx.expectations.ExpectColumnValuesToBeBetween(column="row_sum", min_value=1 - SUM_TOLERANCE, max_value=1 + SUM_TOLERANCE)]
    for c in cols:
        expectations.append(gx.expectations.ExpectColumnValuesToNotBeNull(column=c))
        expectations.append(gx.expectations.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1))
    return _result("probabilities", _run("model_probs", probs, "item_id", expectations))


def validate_scores(frames: dict[str, tuple[pd.DataFrame, str, list[str]]]) -> ValidationResult:
    """Scores lie in [0, 1].

    ``frames``: name → (frame, key column, score columns). NULL scores pass (an annotator who
    shares no item with anyone has no quality).
    """
    import great_expectations as gx

    outcomes: list[ExpectationOutcome] = []
    for name, (frame, key, score_cols) in frames.items():
        sub = _keyed(frame, key, score_cols)
        outcomes += _run(name, sub, key, [gx.expectations.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1) for c in score_cols])
    return _result("scores", outcomes)


def combine(suite: str, *results: ValidationResult) -> ValidationResult:
    """Several results as one (``passed`` when all passed)."""
    outcomes = [e for r in results for e in r.expectations]
    stats = {k: v for r in results for k, v in r.stats.items()}
    return _result(suite, outcomes, stats)


def _keyed(frame: pd.DataFrame, key: str, cols: list[str]) -> pd.DataFrame:
    missing = [c for c in [key, *cols] if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks column(s) {missing}")
    sub = frame[[key, *cols]].copy()
    sub[key] = sub[key].astype(str)
    return sub


def validate_label_domain(frames: dict[str, tuple[pd.DataFrame, str, list[str]]], classes: tuple[str, ...]) -> ValidationResult:
    """Every label is a declared class.

    ``frames``: name → (frame, key column, label columns); NULL labels count as failures.
    """
    import great_expectations as gx

    outcomes: list[ExpectationOutcome] = []
    for name, (frame, key, label_cols) in frames.items():
        sub = _keyed(frame, key, label_cols)
        expectations = []
        for c in label_cols:
            expectations.append(gx.expectations.ExpectColumnValuesToNotBeNull(column=c))
            expectations.append(gx.expectations.ExpectColumnValuesToBeInSet(column=c, value_set=list(classes)))
        outcomes += _run(name, sub, key, expectations)
    return _result("label_domain", outcomes)


def validate_llm_scores(scores: pd.DataFrame, item_ids: pd.Series | np.ndarray) -> ValidationResult:
    """``llm_judge_scores``: every item covered, scored rows are probability vectors.

    ``scores``: ``item_id, p_a, p_b, p_tie, label_mass, status`` (one row per scored item).
    ``item_ids``: every item of ``items``. Each item must have a row (scored, or with a failure
    status); rows with ``status = 'ok'`` must have ``p_*`` in [0, 1] summing to 1 ± ``SUM_TOLERANCE``
    and ``label_mass`` in (0, 1].
    """
    import great_expectations as gx

    covered = pd.DataFrame({"item_id": pd.Series(item_ids, dtype=str).to_numpy()})
    covered["has_score_row"] = covered["item_id"].isin(scores["item_id"].astype(str))
    outcomes = _run("items", covered, "item_id", [gx.expectations.ExpectColumnValuesToBeInSet(column="has_score_row", value_set=[True])])
    ok = scores[scores["status"] == "ok"].rename(columns={"p_a": "p_A", "p_b": "p_B", "p_tie": "p_tie"})
    if len(ok):
        outcomes += validate_probabilities(ok, ("A", "B", "tie")).expectations
        mass = ok[["item_id", "label_mass"]].astype({"item_id": str})
        outcomes += _run(
            "llm_judge_scores",
            mass,
            "item_id",
            [
                gx.expectations.ExpectColumnValuesToNotBeNull(column="label_mass"),
                gx.expectations.ExpectColumnValuesToBeBetween(column="label_mass", min_value=0, max_value=1, strict_min=True),
            ],
        )
    stats = {"n_items": float(len(covered)), "n_scored_ok": float(len(ok))}
    return _result("llm_scores", outcomes, stats)
