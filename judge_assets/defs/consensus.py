"""Assets of the ``consensus`` and ``reports`` groups: consensus labels, annotator quality, judge report card.

One multi-asset reads ``judgments``, ``items``, ``model_probs`` (and ``llm_judge_scores`` when
that table exists) with SQL, runs :func:`judge_assets.core.consensus.build_consensus_tables`
and writes every output table in one transaction, so the tables always describe the same run.
"""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from judge_assets.core.consensus import build_consensus_tables, plot_quality_by_group, plot_reliability
from judge_assets.core.db import quote_ident, replace_tables, table_columns, table_exists
from judge_assets.core.judgments import stored_label_set
from judge_assets.defs.metadata import frame_markdown, plot_metadata, table_metadata
from judge_assets.defs.resources import DB_POOL, PipelineConfig

ITEM_META = ("question_id", "turn", "model_a", "model_b", "category")

CONSENSUS_TABLES = {
    "consensus_labels": (
        "consensus",
        "Per item: CROWDLAB consensus label and quality (humans + LLM judges, model prior from model_probs), "
        "next to majority vote, Dawid-Skene (and GLAD when enabled).",
    ),
    "human_consensus_labels": ("consensus", "CROWDLAB over human annotators only: the reference LLM judges are scored against."),
    "annotator_stats": ("consensus", "Per annotator: CROWDLAB quality, agreement with consensus, worst class, group (author/expert/llm/human)."),
    "label_quality_detail": ("consensus", "Per vote: CROWDLAB label quality score."),
    "annotator_group_summary": ("consensus", "Annotator quality per group (authors vs experts vs LLM) and per kind (human vs LLM)."),
    "aggregator_comparison": ("consensus", "How often CROWDLAB, majority vote and Dawid-Skene agree, overall and per category."),
    "judge_report_card": (
        "reports",
        "Per LLM judge vs the human-only consensus (accuracy, kappa, MCC, per-class precision/recall, confusion) "
        "and vs human votes the FastChat way (agreement with / without ties, next to the MT-Bench paper).",
    ),
}


class ConsensusConfig(dg.Config):
    """Run options of the consensus stage (launchpad-editable)."""

    drop_ties: bool = False
    """Drop tie votes and renormalize the prior over A/B (the paper's without-tie setup)."""
    annotators: list[str] | None = None
    """Annotators that count; default all humans plus the pipeline's LLM annotators."""
    include_glad: bool = True
    """Also run crowd-kit GLAD (about 8 s on MT-Bench) for the aggregator comparison."""
    seed: int = 0
    """Seed of majority vote's last-resort random tiebreak."""


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            name,
            deps=["judgments", "items", "label_set", "model_probs"],
            group_name=group,
            kinds={"duckdb", "python"},
            description=description,
        )
        for name, (group, description) in CONSENSUS_TABLES.items()
    ],
    pool=DB_POOL,
)
def consensus(context: dg.AssetExecutionContext, config: ConsensusConfig, duckdb: DuckDBResource, pipeline: PipelineConfig):
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
            tuple(pipeline.llm_annotators),
            annotators=config.annotators,
            drop_ties=config.drop_ties,
            include_glad=config.include_glad,
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
                "label_distribution": dg.MetadataValue.json({k: int(v) for k, v in labels["consensus_label"].value_counts().items()}),
                "mean_consensus_quality": float(labels["consensus_quality_score"].mean()),
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


consensus_assets = [consensus]
