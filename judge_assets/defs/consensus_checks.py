"""Asset checks of the consensus stage: Great Expectations suites (``judge_assets.core.validation``).

Each check reads the tables with SQL, runs one suite, and reports per failed expectation its
unexpected count and the failing rows (item ids / annotators and values, capped at 20) in the
``AssetCheckResult`` metadata. Blocking checks stop downstream assets when the data would make
them wrong: a broken prior (``model_probs``) or labels outside the class set.
"""

from __future__ import annotations

import dagster as dg
from dagster_duckdb import DuckDBResource

from judge_assets.core.db import table_exists
from judge_assets.core.judgments import stored_label_set
from judge_assets.core.validation import (
    ValidationResult,
    combine,
    validate_label_coverage,
    validate_label_domain,
    validate_probabilities,
    validate_scores,
)


def asset_check_result(result: ValidationResult, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    metadata: dict[str, dg.MetadataValue] = {
        "summary": dg.MetadataValue.text(result.summary()),
        "expectations": dg.MetadataValue.int(len(result.expectations)),
    }
    for key, value in result.stats.items():
        metadata[key] = dg.MetadataValue.float(float(value))
    for e in result.failures():
        metadata[f"failed: {e.frame}.{e.column} {e.name}"] = dg.MetadataValue.json(
            {"unexpected_count": e.unexpected_count, "element_count": e.element_count, "failing_rows": e.failing_rows}
        )
    return dg.AssetCheckResult(passed=result.passed, severity=severity, metadata=metadata)


@dg.asset_check(asset="model_probs", blocking=True, description="model_probs rows sum to 1 ± 1e-6, every probability in [0, 1].")
def model_probs_are_probabilities(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        classes = stored_label_set(con).labels
        probs = con.execute("SELECT * FROM model_probs").df()
    return asset_check_result(validate_probabilities(probs, classes))


@dg.asset_check(
    asset="consensus_labels",
    blocking=False,
    description="Every item has ≥1 label, a consensus label and a model prior; every annotator has ≥1 label "
    "(items without consensus are missing from the table, not wrong, so this check warns).",
)
def consensus_label_coverage(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        item_labels = con.execute(
            "SELECT i.item_id, count(j.item_id) AS n_labels FROM items i LEFT JOIN judgments j USING (item_id) GROUP BY i.item_id"
        ).df()
        annotators = "annotator_matrix_columns" if table_exists(con, "annotator_matrix_columns") else "(SELECT DISTINCT annotator FROM judgments)"
        annotator_labels = con.execute(
            f"SELECT a.annotator, count(j.annotator) AS n_labels FROM {annotators} a LEFT JOIN judgments j USING (annotator) GROUP BY a.annotator"
        ).df()
        consensus = con.execute("SELECT item_id, consensus_label FROM consensus_labels").df()
        probs = con.execute("SELECT item_id FROM model_probs").df()
    return asset_check_result(validate_label_coverage(item_labels, annotator_labels, consensus, probs), dg.AssetCheckSeverity.WARN)


@dg.asset_check(
    asset="consensus_labels",
    blocking=True,
    description="Consensus, majority and Dawid-Skene labels are in the class set; quality and agreement in [0, 1].",
)
def consensus_labels_valid(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        classes = stored_label_set(con).labels
        consensus = con.execute("SELECT * FROM consensus_labels").df()
    label_cols = ["consensus_label", "majority_vote_label", "dawid_skene_label"]
    result = combine(
        "consensus_labels",
        validate_label_domain({"consensus_labels": (consensus, "item_id", label_cols)}, classes),
        validate_scores({"consensus_labels": (consensus, "item_id", ["consensus_quality_score", "annotator_agreement"])}),
    )
    return asset_check_result(result)


@dg.asset_check(
    asset="annotator_stats",
    description="Annotator quality and agreement in [0, 1] (NULL for annotators sharing no item), worst class in the class set.",
)
def annotator_stats_valid(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        classes = stored_label_set(con).labels
        stats = con.execute("SELECT * FROM annotator_stats").df()
    result = combine(
        "annotator_stats",
        validate_label_domain({"annotator_stats": (stats, "annotator", ["worst_class"])}, classes),
        validate_scores({"annotator_stats": (stats, "annotator", ["annotator_quality", "agreement_with_consensus"])}),
    )
    return asset_check_result(result)


consensus_checks = [model_probs_are_probabilities, consensus_label_coverage, consensus_labels_valid, annotator_stats_valid]
