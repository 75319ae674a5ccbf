"""Group ``consensus``: majority vote, the consensus multi-asset, and their Great Expectations checks.

The consensus multi-asset reads ``judgments``, ``items``, ``model_probs`` (and ``llm_judge_scores``
when that table exists) with SQL, runs :func:`judge_assets.core.consensus.tables.build_consensus_tables`
and writes all seven tables in one transaction, so they always describe the same run (the judge
report card is scored against the human consensus of that same run).

The checks run GX suites (:mod:`judge_assets.core.validation`) and report per failed expectation
its unexpected count and the failing rows (capped at 20). Blocking checks stop downstream assets
when the data would make them wrong: a broken prior (``model_probs``) or labels outside the class set.
"""

import dagster as dg
import pandas as pd

from judge_assets.core.consensus.majority import majority_vote_table
from judge_assets.core.consensus.methods import GLAD_MAX_VOTES
from judge_assets.core.consensus.tables import build_consensus_tables
from judge_assets.core.db import quote_ident, replace_table, replace_tables, table_columns, table_exists
from judge_assets.core.labels import stored_label_set
from judge_assets.core.plots import plot_quality_by_group, plot_reliability
from judge_assets.core.validation import (
    combine,
    validate_label_coverage,
    validate_label_domain,
    validate_scores,
)
from judge_assets.defs.metadata import asset_check_result, frame_markdown, number, plot_metadata, table_metadata
from judge_assets.defs.resources import JudgeDuckDBResource, PipelineResource
from judge_assets.defs.tables import table_asset, tables_asset

GROUP = "consensus"


@table_asset(
    GROUP,
    deps=["judgments", "label_set"],
    description="Per item: majority label, votes per class, agreement. Ties between classes follow cleanlab's rule "
    "(rarer class, then annotator agreement, then a seeded draw), never the class order.",
)
def majority_vote_labels(context: dg.AssetExecutionContext, duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        classes = stored_label_set(con).labels
        table = majority_vote_table(con, classes)
        replace_table(con, "majority_vote_labels", table)
        distribution = table["majority_label"].value_counts().reindex(list(classes), fill_value=0)
        context.log.info(f"majority labels for {len(table)} items; {int(table['tie_broken'].sum())} class ties broken")
        return dg.MaterializeResult(
            metadata={
                **table_metadata(con, "majority_vote_labels"),
                "label_distribution": dg.MetadataValue.json({k: int(v) for k, v in distribution.items()}),
                "class_ties_broken": int(table["tie_broken"].sum()),
                "mean_agreement": number(table["agreement"].mean()),
            }
        )


ITEM_META = ("question_id", "turn", "model_a", "model_b", "category")

#: The tables the consensus step writes in one transaction → their descriptions.
CONSENSUS_TABLES = {
    "consensus_labels": (
        "Per item: CROWDLAB consensus label and quality (humans + LLM judges, model prior from model_probs), "
        "next to majority vote, Dawid-Skene (and GLAD when enabled)."
    ),
    "human_consensus_labels": "CROWDLAB over human annotators only: the reference LLM judges are scored against.",
    "annotator_stats": "Per annotator: CROWDLAB quality, agreement with consensus, worst class, group (author/expert/llm/human).",
    "label_quality_detail": "Per vote: CROWDLAB label quality score.",
    "annotator_group_summary": "Annotator quality per group (authors vs experts vs LLM) and per kind (human vs LLM).",
    "aggregator_comparison": "How often CROWDLAB, majority vote and Dawid-Skene agree, overall and per category.",
    "judge_report_card": (
        "Per LLM judge vs the human-only consensus (accuracy, kappa, MCC, per-class precision/recall, confusion) "
        "and vs human votes the FastChat way (agreement with / without ties, next to the MT-Bench paper)."
    ),
}


class ConsensusConfig(dg.Config):
    """Run options of the consensus stage (launchpad-editable)."""

    drop_ties: bool = False
    """Drop tie votes and renormalize the prior over A/B (the paper's without-tie setup)."""
    annotators: list[str] | None = None
    """Annotators that count; default all humans plus the pipeline's LLM annotators."""
    include_glad: bool = True
    """Also run crowd-kit GLAD (about 8 s on MT-Bench) for the aggregator comparison, when the data
    has at most ``glad_max_votes`` votes."""
    glad_max_votes: int = GLAD_MAX_VOTES
    """GLAD's cost grows about 2 ms per vote (over 10 minutes at 1M votes): above this many votes it
    is skipped and the consensus_labels metadata says so (``glad``)."""
    seed: int = 0
    """Seed of majority vote's last-resort random tiebreak."""


@tables_asset(
    GROUP,
    {name: (["judgments", "items", "label_set", "model_probs"], description) for name, description in CONSENSUS_TABLES.items()},
    kinds=("duckdb", "python"),
    columns={
        "consensus_labels": {
            "item_id": "The item (one row per item).",
            "question_id": "MT-Bench question id (pairwise only).",
            "turn": "The judged turn.",
            "model_a": "First model of the pair, in sorted order.",
            "model_b": "Second model of the pair, in sorted order.",
            "category": "The question's category.",
            "consensus_label": "CROWDLAB's consensus label over all counted annotators and the model prior.",
            "consensus_quality_score": "How far to trust the consensus label, 0-1 (CROWDLAB label quality).",
            "annotator_agreement": "Share of the item's annotators whose vote equals the consensus label.",
            "num_annotations": "Votes counted on the item.",
            "majority_vote_label": "Majority vote, ties between classes broken by cleanlab's rule.",
            "dawid_skene_label": "Dawid-Skene (crowd-kit, 100 EM iterations).",
            "glad_label": "GLAD (crowd-kit); NULL when include_glad is off.",
            "model_prior_scorer": "Where the item's model prior came from: llm_logprobs, oof_classifier or uniform (model_probs.scorer).",
            "consensus_method": "crowdlab, or majority_vote_fallback when no item has two or more votes.",
        },
        "annotator_stats": {
            "annotator": "The annotator (one row per annotator).",
            "annotator_kind": "human or llm.",
            "annotator_group": "author, expert, llm or human (MT-Bench judge ids tell authors and experts apart).",
            "annotator_quality": "CROWDLAB annotator quality, 0-1; NULL when the annotator shares no item with anyone.",
            "agreement_with_consensus": "Share of the annotator's votes equal to the consensus label.",
            "worst_class": "The class this annotator agrees with the consensus on least.",
            "num_examples_labeled": "Votes by the annotator.",
            "annotator_weight": "The annotator's weight in CROWDLAB's consensus.",
        },
        "judge_report_card": {
            "judge": "The judge graded (human for the human-human row).",
            "reference": "What the judge is compared with: human_consensus (human_consensus_labels), human_votes "
            "(FastChat vote pairs) or judge_leaderboard.",
            "scope": "all, or turn=<t>.",
            "metric": "accuracy, cohen_kappa, mcc, per-class precision/recall, confusion, agreement_with_ties, agreement_without_ties, …",
            "class_label": "The class of a per-class metric; the true class of a confusion cell.",
            "predicted_label": "The judge's class of a confusion cell.",
            "value": "The metric's value.",
            "n": "Items or vote pairs behind the value.",
            "paper_value": "The MT-Bench paper's figure for the same measurement, where it reports one.",
        },
    },
)
def consensus(context: dg.AssetExecutionContext, config: ConsensusConfig, duckdb: JudgeDuckDBResource, pipeline: PipelineResource):
    with duckdb.get_connection() as con:
        classes = stored_label_set(con).labels
        judgment_cols = ["item_id", "annotator", "annotator_kind", "label"] + [c for c in ("turn",) if c in table_columns(con, "judgments")]
        judgments = con.execute(f"SELECT {', '.join(quote_ident(c) for c in judgment_cols)} FROM judgments").df()
        item_cols = ["item_id"] + [c for c in ITEM_META if c in table_columns(con, "items")]
        items = con.execute(f"SELECT {', '.join(quote_ident(c) for c in item_cols)} FROM items").df()
        model_probs = con.execute("SELECT * FROM model_probs").df()
        scores = con.execute("SELECT * FROM llm_judge_scores").df() if table_exists(con, "llm_judge_scores") else None
        out = build_consensus_tables(
            judgments,
            model_probs,
            items,
            classes,
            pipeline.llm_annotator_names,
            annotators=config.annotators,
            drop_ties=config.drop_ties,
            include_glad=config.include_glad,
            glad_max_votes=config.glad_max_votes,
            llm_judge_scores=scores,
            seed=config.seed,
        )
        replace_tables(con, out.tables)
        for note in out.notes:
            context.log.warning(note)
        labels = out.tables["consensus_labels"]
        codes = pd.Index(out.classes).get_indexer(labels["consensus_label"])
        common = {"consensus_method": out.method, "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in out.notes) or "none")}
        extra = {
            "consensus_labels": {
                **common,
                "glad": out.glad,
                "label_distribution": dg.MetadataValue.json({k: int(v) for k, v in labels["consensus_label"].value_counts().items()}),
                "mean_consensus_quality": number(labels["consensus_quality_score"].mean()),
                "prior_reliability": plot_metadata(plot_reliability(out.prior, codes)),
            },
            "annotator_stats": {"quality_by_group": plot_metadata(plot_quality_by_group(out.tables["annotator_stats"]))},
            "annotator_group_summary": {"summary": dg.MetadataValue.md(frame_markdown(out.tables["annotator_group_summary"], 20))},
        }
        card = out.tables["judge_report_card"]
        headline = card[(card["metric"].isin(["accuracy", "cohen_kappa", "agreement_with_ties", "agreement_without_ties"])) & card["class_label"].isna()]
        extra["judge_report_card"] = {"headline": dg.MetadataValue.md(frame_markdown(headline, 40))}
        for name in CONSENSUS_TABLES:
            yield dg.MaterializeResult(asset_key=name, metadata={**table_metadata(con, name), **extra.get(name, {})})


@dg.asset_check(
    asset="consensus_labels",
    blocking=False,
    description="Every item has ≥1 label, a consensus label and a model prior; every annotator has ≥1 label "
    "(items without consensus are missing from the table, not wrong, so this check warns).",
)
def consensus_label_coverage(duckdb: JudgeDuckDBResource) -> dg.AssetCheckResult:
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
def consensus_labels_valid(duckdb: JudgeDuckDBResource) -> dg.AssetCheckResult:
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
def annotator_stats_valid(duckdb: JudgeDuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        classes = stored_label_set(con).labels
        stats = con.execute("SELECT * FROM annotator_stats").df()
    result = combine(
        "annotator_stats",
        validate_label_domain({"annotator_stats": (stats, "annotator", ["worst_class"])}, classes),
        validate_scores({"annotator_stats": (stats, "annotator", ["annotator_quality", "agreement_with_consensus"])}),
    )
    return asset_check_result(result)


consensus_checks = [consensus_label_coverage, consensus_labels_valid, annotator_stats_valid]
