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
import numpy as np
import pandas as pd

from judge_assets.core.consensus.majority import majority_vote_table
from judge_assets.core.consensus.methods import GLAD_MAX_VOTES
from judge_assets.core.consensus.tables import build_consensus_tables
from judge_assets.core.db import quote_ident, read_frame, replace_table, replace_tables, table_columns, table_exists
from judge_assets.core.labels import stored_label_set
from judge_assets.core.plots import plot_quality_by_group, plot_reliability
from judge_assets.core.validation import (
    combine,
    validate_label_coverage,
    validate_label_domain,
    validate_scores,
)
from judge_assets.defs.metadata import asset_check_result, frame_markdown, number, plot_metadata, table_metadata
from judge_assets.defs.resources import JudgeDuckDBResource, LLMJudgeResource, PipelineResource
from judge_assets.defs.tables import table_asset, table_check, tables_asset

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


def read_gold(con) -> pd.Series:
    """``gold_labels`` as gold labels by item id; empty when the table is missing or empty."""
    if not table_exists(con, "gold_labels"):
        return pd.Series(dtype=object, name="ground_truth")
    frame = con.execute("SELECT item_id, gold_label FROM gold_labels ORDER BY item_id").df()
    return pd.Series(frame["gold_label"].to_numpy(dtype=object), index=pd.Index(frame["item_id"], name="item_id"), name="ground_truth")

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
    {name: (["judgments", "items", "label_set", "model_probs", "gold_labels"], description) for name, description in CONSENSUS_TABLES.items()},
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
            "consensus_method": "crowdlab, or majority_vote_fallback when no item has two or more votes; gold_mixture when "
            "gold exists (gold_labels): items with gold keep it, the others get the gold-calibrated consensus.",
            "source": "ground_truth (the item's gold label, from gold_labels) or consensus.",
            "consensus_probability": "Probability of consensus_label: 1 for gold; gold_mixture's with gold elsewhere, "
            "else CROWDLAB's posterior.",
            "crowdlab_label": "CROWDLAB's label (equal to consensus_label without gold); quality and agreement describe it.",
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
        judgments = read_frame(con, f"SELECT {', '.join(quote_ident(c) for c in judgment_cols)} FROM judgments")
        item_cols = ["item_id"] + [c for c in ITEM_META if c in table_columns(con, "items")]
        items = read_frame(con, f"SELECT {', '.join(quote_ident(c) for c in item_cols)} FROM items")
        model_probs = read_frame(con, "SELECT * FROM model_probs")
        scores = con.execute("SELECT * FROM llm_judge_scores").df() if table_exists(con, "llm_judge_scores") else None
        gold = read_gold(con)
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
            gold=gold,
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
                "gold_items": int((labels["source"] == "ground_truth").sum()),
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


@table_check(
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


@table_check(
    asset="consensus_labels",
    blocking=True,
    description="Consensus, majority and Dawid-Skene labels are in the class set; quality and agreement in [0, 1].",
)
def consensus_labels_valid(duckdb: JudgeDuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        classes = stored_label_set(con).labels
        label_cols = ["consensus_label", "majority_vote_label", "dawid_skene_label"]
        score_cols = ["consensus_quality_score", "annotator_agreement"]
        consensus = con.execute(f"SELECT item_id, {', '.join(label_cols + score_cols)} FROM consensus_labels").df()
    result = combine(
        "consensus_labels",
        validate_label_domain({"consensus_labels": (consensus, "item_id", label_cols)}, classes),
        validate_scores({"consensus_labels": (consensus, "item_id", score_cols)}),
    )
    return asset_check_result(result)


@table_check(
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


# ---- ordinal scales (JUDGE_LABELS=1..8): consensus and agreement that respect the order ----------------

ORDINAL_TABLES = {
    "ordinal_consensus_labels": (
        ["judgments", "label_set"],
        "On an ordinal scale (JUDGE_LABELS=1..8): per item the quality-weighted median of the votes "
        "(ordinal_consensus, its class, weighted mean, spread, votes) over every annotator, the same over humans only, "
        "and on a pairwise scale its outcome (A/B, and A/B/tie with the middle values as ties). Empty when the class set is not a scale.",
    ),
    "ordinal_annotator_stats": (
        ["judgments", "label_set"],
        "On an ordinal scale: per annotator the distance-based quality (1 − mean distance to the others' consensus / span), "
        "that distance (ordinal_mae, in scale units) and the weight in the ordinal consensus. Empty when not a scale.",
    ),
}


def _not_ordinal_note(con) -> str:
    stored = stored_label_set(con)
    return (f"the class set ({', '.join(stored.labels)}) is not an ordinal scale: declare one with JUDGE_LABELS=1..8 "
            "(and JUDGE_SCALE_ENDS=A,B for a pairwise scale)")


@tables_asset(
    GROUP,
    ORDINAL_TABLES,
    kinds=("duckdb", "python"),
    columns={
        "ordinal_consensus_labels": {
            "item_id": "The item (one row per item with a vote).",
            "ordinal_consensus": "Quality-weighted median of the votes' values, every annotator (judge_assets/core/consensus/ordinal.py).",
            "ordinal_consensus_label": "The class of ordinal_consensus.",
            "ordinal_mean": "Quality-weighted mean of the votes' values.",
            "ordinal_spread": "Weighted standard deviation of the votes (0 = unanimous): the item's uncertainty.",
            "num_annotations": "Votes on the item.",
            "human_ordinal_consensus": "The same median over human votes only: the reference LLM judges are scored against.",
            "outcome": "Pairwise scale: the outcome of ordinal_consensus without ties (1-4 A, 5-8 B on 1..8).",
            "outcome_with_ties": "Pairwise scale: the outcome with the two middle values as a tie (4 and 5 on 1..8).",
        },
        "ordinal_annotator_stats": {
            "ordinal_quality": "1 − ordinal_mae / span of the scale (1 = always on the others' consensus); NULL without overlap.",
            "ordinal_mae": "Mean |vote − weighted mean of the other annotators| on shared items, in scale units.",
            "weight": "The annotator's weight in the ordinal consensus (inverse noise variance).",
        },
    },
)
def ordinal_consensus(context: dg.AssetExecutionContext, duckdb: JudgeDuckDBResource):
    from judge_assets.core.consensus.ordinal import ordinal_consensus_tables

    with duckdb.get_connection() as con:
        scale = stored_label_set(con).scale
        cols = ["item_id", "annotator", "annotator_kind", "label"] + [
            c for c in ("category", "model_a", "model_b") if c in table_columns(con, "judgments")]
        if scale is None:
            note = _not_ordinal_note(con)
            items = pd.DataFrame({c: pd.Series(dtype=object) for c in ("item_id", "ordinal_consensus_label")}).assign(
                ordinal_consensus=pd.Series(dtype=float), ordinal_mean=pd.Series(dtype=float),
                ordinal_spread=pd.Series(dtype=float), num_annotations=pd.Series(dtype="int64"))
            stats = pd.DataFrame({"annotator": pd.Series(dtype=object), "annotator_kind": pd.Series(dtype=object),
                                  "ordinal_quality": pd.Series(dtype=float), "ordinal_mae": pd.Series(dtype=float),
                                  "weight": pd.Series(dtype=float), "num_examples_labeled": pd.Series(dtype="int64")})
        else:
            note = f"scale {scale.labels[0]}..{scale.labels[-1]}" + (f", low end favours {scale.low_favours}" if scale.low_favours else "")
            judgments = read_frame(con, f"SELECT {', '.join(quote_ident(c) for c in cols)} FROM judgments")
            items, stats = ordinal_consensus_tables(judgments, scale)
        replace_tables(con, {"ordinal_consensus_labels": items, "ordinal_annotator_stats": stats})
        context.log.info(f"ordinal consensus: {note}")
        extra = {"note": note}
        if scale is not None and len(items):
            extra_items = {"mean_spread": number(items["ordinal_spread"].mean()),
                           "distribution": dg.MetadataValue.json({k: int(v) for k, v in items["ordinal_consensus_label"].value_counts().sort_index().items()})}
        else:
            extra_items = {}
        yield dg.MaterializeResult(asset_key="ordinal_consensus_labels",
                                   metadata={**table_metadata(con, "ordinal_consensus_labels"), **extra, **extra_items})
        yield dg.MaterializeResult(asset_key="ordinal_annotator_stats",
                                   metadata={**table_metadata(con, "ordinal_annotator_stats", order_by="ordinal_quality DESC NULLS LAST"), **extra})


class OrdinalAgreementConfig(dg.Config):
    """Run options of the ordinal agreement table (launchpad-editable)."""

    n_boot: int = 1000
    """Bootstrap resamples behind every 95% interval."""
    seed: int = 0


@table_asset(
    GROUP,
    deps=["ordinal_consensus_labels", "judgments", "llm_judge_scores", "llm_judge_probs"],
    kinds=("duckdb", "python"),
    columns={
        "judge": "An LLM judge (a JUDGE_LLM_ANNOTATORS annotator, or <judge>:<model> of the panel), or human.",
        "judge_kind": "llm or human.",
        "score": "vote (the judge's class) or expected_score (Σ value × P(value) from the judge's token logprobs).",
        "reference": "human_consensus (ordinal_consensus_labels.human_ordinal_consensus), human_votes (pairs of human votes "
        "on the same item) or swapped_order (mean_shift: score with the answers swapped − score as stored).",
        "scope": "all, or category (then category names it).",
        "metric": "weighted_kappa (quadratic), spearman, pearson, mae, exact_agreement, within_one; mean_shift for swapped_order.",
        "value": "The metric on the pairs.",
        "ci_low": "2.5th percentile of the bootstrap (resampled pairs).",
        "ci_high": "97.5th percentile of the bootstrap.",
        "n": "Pairs (items, or vote pairs) behind the value.",
    },
)
def ordinal_agreement(context: dg.AssetExecutionContext, config: OrdinalAgreementConfig, duckdb: JudgeDuckDBResource,
                      llm_judge: LLMJudgeResource) -> dg.MaterializeResult:
    """On an ordinal scale: every LLM judge (its vote, or its expected score when it has one) against the humans-only
    ordinal consensus, and human against human (pairs of human votes on an item), overall and per category, with 95%
    bootstrap intervals; plus each judge's mean rating shift when the answer order is swapped. Metadata: a histogram
    of ratings per judge (humans pooled vs each LLM judge). Empty when the class set is not a scale."""
    from judge_assets.core.plots import plot_rating_histogram
    from judge_assets.core.reports.ordinal_metrics import (
        AGREEMENT_COLUMNS, ordinal_agreement_table, per_order_expected_scores, swap_shift)
    from judge_assets.core.scoring.llm_judge.cache import CACHE_TABLE

    with duckdb.get_connection() as con:
        scale = stored_label_set(con).scale
        if scale is None:
            note = _not_ordinal_note(con)
            replace_table(con, "ordinal_agreement", pd.DataFrame({c: pd.Series(dtype="int64" if c == "n" else float if c in (
                "value", "ci_low", "ci_high") else object) for c in AGREEMENT_COLUMNS}))
            return dg.MaterializeResult(metadata={**table_metadata(con, "ordinal_agreement"), "note": note})
        cols = ["item_id", "annotator", "annotator_kind", "label"] + [c for c in ("category",) if c in table_columns(con, "judgments")]
        judgments = read_frame(con, f"SELECT {', '.join(cols)} FROM judgments")
        human = con.execute("SELECT item_id, human_ordinal_consensus FROM ordinal_consensus_labels").df()
        scores = None
        if table_exists(con, "llm_judge_scores"):
            # panel judges on this scale: an expected score, K classes as the scale, not already voting in judgments
            scores = con.execute(
                "SELECT s.item_id, s.annotator, s.judge, s.model, s.expected_score FROM llm_judge_scores s "
                "WHERE s.status = 'ok' AND s.expected_score IS NOT NULL AND s.annotator NOT IN (SELECT DISTINCT annotator FROM judgments) "
                "AND (SELECT count(DISTINCT p.label) FROM llm_judge_probs p WHERE p.annotator = s.annotator) = ?"
                if table_exists(con, "llm_judge_probs") else "SELECT NULL AS item_id, NULL AS annotator WHERE false",
                [len(scale.labels)] if table_exists(con, "llm_judge_probs") else None,
            ).df()
        per_order = pd.DataFrame(columns=["annotator", "item_id", "swapped", "expected_score"])
        if scores is not None and len(scores) and table_exists(con, CACHE_TABLE):
            try:
                specs = {s.name: s for s in llm_judge.judge_specs() if s.ordinal and s.shape == "pairwise"}
            except Exception as exc:  # noqa: BLE001 - a judge file that no longer loads: no swap shift, said why
                specs = {}
                context.log.warning(f"no swap shift: the judge files did not load ({exc})")
            cache = con.execute(
                f"SELECT item_id, judge, model, swapped, status, top_logprobs_json FROM {CACHE_TABLE} "
                "QUALIFY row_number() OVER (PARTITION BY item_id, judge, model, swapped ORDER BY created_at DESC) = 1"
            ).df()
            keep = set(zip(scores["item_id"], scores["annotator"]))
            per_order = per_order_expected_scores(cache, specs)
            per_order = per_order[[k in keep for k in zip(per_order["item_id"], per_order["annotator"])]]
    table = ordinal_agreement_table(judgments, human, scale, scores, n_boot=config.n_boot, seed=config.seed)
    shifts = swap_shift(per_order, n_boot=config.n_boot, seed=config.seed)
    shift_rows = pd.DataFrame({
        "judge": shifts["judge"], "judge_kind": "llm", "score": "expected_score", "reference": "swapped_order", "scope": "all",
        "category": None, "metric": "mean_shift", "value": shifts["mean_shift"], "ci_low": shifts["ci_low"],
        "ci_high": shifts["ci_high"], "n": shifts["n"]})
    table = pd.concat([table, shift_rows.astype(table.dtypes.to_dict())], ignore_index=True) if len(shift_rows) else table
    values = dict(zip(scale.labels, scale.values))
    ranks = np.arange(1, len(scale.values) + 1, dtype=float)
    ratings = pd.concat([
        pd.DataFrame({"judge": np.where(judgments["annotator_kind"] == "human", "human", judgments["annotator"]),
                      "rating": judgments["label"].map(values).to_numpy(dtype=float)}),
        pd.DataFrame({"judge": scores["annotator"], "rating": np.interp(scores["expected_score"], ranks, scale.value_array)})
        if scores is not None and len(scores) else pd.DataFrame(columns=["judge", "rating"]),
    ], ignore_index=True)
    with duckdb.get_connection() as con:
        replace_table(con, "ordinal_agreement", table)
        metadata = table_metadata(con, "ordinal_agreement", preview_rows=20, order_by="reference, judge, scope, category NULLS FIRST, metric")
    headline = table[(table["scope"] == "all") & table["metric"].isin(["weighted_kappa", "spearman", "mae", "within_one"])]
    metadata["headline"] = dg.MetadataValue.md(frame_markdown(headline, 40))
    metadata["rating_histogram"] = plot_metadata(plot_rating_histogram(ratings, scale.values))
    metadata["mean_rating"] = dg.MetadataValue.json({j: round(float(r.mean()), 4) for j, r in ratings.groupby("judge")["rating"]})
    metadata["swap_shift"] = dg.MetadataValue.md(frame_markdown(shifts, 20) if len(shifts) else
                                                 "no LLM judge on this scale with scores for both answer orders")
    return dg.MaterializeResult(metadata=metadata)
