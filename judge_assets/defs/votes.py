"""Group ``votes``: the items judged (from the raw votes), votes (``judgments``: the raw votes plus the LLM
judge panel's verdicts), the class set, and the item × annotator matrix.

Graph: raw_judgments → items → llm_judge_scores → judgments → model_probs / consensus: ``items`` and
``judgments`` share the canonical-vote SQL (``core.votes.judgments.canonical_votes_sql``), so putting the
panel's verdicts into ``judgments`` makes no cycle."""

import dagster as dg

from judge_assets.core.votes.judgments import build_items, build_judgments
from judge_assets.core.votes.matrix import build_annotator_matrix
from judge_assets.defs.metadata import table_metadata
from judge_assets.defs.resources import JudgeDuckDBResource, PipelineResource
from judge_assets.defs.tables import table_asset, tables_asset

GROUP = "votes"


@tables_asset(
    GROUP,
    {
        "judgments": (
            ["raw_judgments", "mt_bench_questions", "items", "llm_judge_scores"],
            "One row per (item, annotator) vote; pairs in canonical order, winners flipped to match, "
            "repeated votes resolved (the last one counts); plus one vote per item by each LLM panel judge "
            "<judge>:<model> whose verdict labels are labels of the class set (annotator_kind llm).",
        ),
        "label_set": (
            ["raw_judgments"],
            "The class set and its integer codes (pairwise: A=0, B=1, tie=2); on an ordinal scale (JUDGE_LABELS=1..8) "
            "each class's value, ordinal = true and low_favours (JUDGE_SCALE_ENDS).",
        ),
        "gold_labels": (
            ["raw_judgments"],
            "One gold label per item with gold: from the generic ground_truth column and the votes of "
            "JUDGE_GOLD_ANNOTATORS (which are gold, never votes: they are not in judgments). Empty without gold.",
        ),
    },
    columns={
        "gold_labels": {
            "item_id": "The item with gold (as in judgments).",
            "gold_label": "Its gold label, a class of label_set.",
            "source": "column (the ground_truth column) or annotator:<name> (a JUDGE_GOLD_ANNOTATORS vote).",
            "batch_id": "The batch where this gold was first given.",
            "source_row": "Its 1-based row in that batch.",
        },
        "judgments": {
            "item_id": "The item judged; pairwise: question_id:turn:model_a|model_b with the models sorted (judge_assets/core/keys.py).",
            "annotator": "Who voted: a human judge id, an LLM judge's name, or <judge>:<model> for a panel verdict.",
            "annotator_kind": "human or llm (JUDGE_LLM_ANNOTATORS and panel judges are llm).",
            "label": "The vote in the item's canonical order: A, B or tie (generic schema: a class of label_set).",
            "label_code": "The label's integer code in label_set.",
            "question_id": "MT-Bench question id (pairwise only).",
            "turn": "The judged turn (1 or 2).",
            "model_a": "First model of the pair, in sorted order.",
            "model_b": "Second model of the pair, in sorted order.",
            "category": "The question's category.",
            "batch_id": "The annotation batch the vote came from (a partition of raw_judgments); NULL for a panel verdict.",
            "source_row": "1-based row of the vote in its batch; NULL for a panel verdict.",
            "flipped": "true when the vote named the models in the other order and its winner was flipped (A ↔ B).",
        },
    },
)
def judgments(context: dg.AssetExecutionContext, duckdb: JudgeDuckDBResource, pipeline: PipelineResource):
    with duckdb.get_connection() as con:
        summary = build_judgments(
            con, pipeline.llm_annotator_names, pipeline.label_names, pipeline.scale_end_names,
            gold_annotators=pipeline.gold_annotator_names,
        )
        context.log.info(
            f"{summary.n_votes} votes on {summary.n_items} items by {summary.n_annotators} annotators "
            f"({summary.duplicates_dropped} repeated votes dropped, {summary.flipped} flipped to canonical order)"
        )
        by_kind = con.execute(
            "SELECT annotator_kind, count(*), count(DISTINCT annotator), count(DISTINCT item_id) FROM judgments GROUP BY 1 ORDER BY 1"
        ).fetchall()
        yield dg.MaterializeResult(
            asset_key="judgments",
            metadata={
                **table_metadata(con, "judgments"),
                "raw_rows": summary.n_raw_rows,
                "votes": summary.n_votes,
                "items": summary.n_items,
                "annotators": summary.n_annotators,
                "duplicates_resolved": dg.MetadataValue.int(summary.duplicates_dropped),
                "flipped_to_canonical_order": summary.flipped,
                "tie_votes": summary.ties,
                "llm_panel_votes": summary.panel_votes,
                "llm_panel_voters": ", ".join(summary.panel_voters) or "none",
                "llm_panel_scores_only": ", ".join(summary.scores_only) or "none",
                "llm_panel_note": "LLM panel judges whose verdict labels are not labels of the class set are stored as "
                "scores (llm_judge_scores, llm_judge_probs), not votes",
                "by_annotator_kind": dg.MetadataValue.md(
                    "| kind | votes | annotators | items |\n|---|---|---|---|\n"
                    + "\n".join(f"| {k} | {v} | {a} | {i} |" for k, v, a, i in by_kind)
                ),
            },
        )
        yield dg.MaterializeResult(asset_key="label_set", metadata={**table_metadata(con, "label_set"), "classes": ", ".join(summary.labels)})
        yield dg.MaterializeResult(
            asset_key="gold_labels",
            metadata={
                **table_metadata(con, "gold_labels"),
                "gold_items": summary.gold_items,
                "gold_annotator_votes_moved_to_gold": summary.gold_votes_removed,
            },
        )


@table_asset(
    GROUP,
    deps=["raw_judgments", "mt_bench_questions"],
    description="One row per item (from the raw votes): question, turn, canonical model pair, category, the texts a "
    "judge reads (user_turns, answers_a/answers_b, response, reference, criterion) and every extra source column.",
    columns={
        "item_id": "The item; pairwise: question_id:turn:model_a|model_b with the models sorted.",
        "question_id": "MT-Bench question id (pairwise only).",
        "turn": "The judged turn.",
        "model_a": "First model of the pair, in sorted order.",
        "model_b": "Second model of the pair, in sorted order.",
        "category": "The question's category.",
        "user_turns": "The user's messages up to the judged turn.",
        "answers_a": "model_a's answers up to the judged turn.",
        "answers_b": "model_b's answers up to the judged turn.",
        "response": "The single output judged (generic schema).",
        "reference": "Reference answers per turn (MT-Bench's, or the generic reference column).",
        "criterion": "What the item is judged on (generic schema).",
        "n_human_votes": "Raw human votes on the item.",
        "n_llm_votes": "Raw LLM-judge votes on the item.",
    },
)
def items(duckdb: JudgeDuckDBResource, pipeline: PipelineResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        n = build_items(con, pipeline.llm_annotator_names)
        human = con.execute("SELECT count(*) FILTER (WHERE n_human_votes > 0) FROM items").fetchone()[0]
        return dg.MaterializeResult(metadata={**table_metadata(con, "items", preview_rows=5), "items": n, "human_judged_items": human})


@tables_asset(
    GROUP,
    {
        "annotator_matrix": (
            ["judgments"],
            "Item × annotator label codes (one column per annotator, NULL = no vote), pivoted with DuckDB PIVOT.",
        ),
        "annotator_matrix_columns": (["judgments"], "Which column of annotator_matrix holds which annotator."),
    },
)
def annotator_matrix(context: dg.AssetExecutionContext, duckdb: JudgeDuckDBResource, pipeline: PipelineResource):
    with duckdb.get_connection() as con:
        summary = build_annotator_matrix(con, pipeline.matrix_max_annotators)
        note = (
            f"wide: {summary.n_items} items × {summary.n_annotators} annotator columns"
            if summary.wide
            else f"long form kept: {summary.n_annotators} annotators exceed matrix_max_annotators="
            f"{pipeline.matrix_max_annotators}, so no wide table was built (columns item_id, annotator, label_code)"
        )
        context.log.info(note)
        yield dg.MaterializeResult(
            asset_key="annotator_matrix",
            metadata={
                **table_metadata(con, "annotator_matrix", preview_rows=5),
                "layout": note,
                "wide": summary.wide,
                "renamed_columns": dg.MetadataValue.json(summary.renamed),
            },
        )
        yield dg.MaterializeResult(asset_key="annotator_matrix_columns", metadata=table_metadata(con, "annotator_matrix_columns"))
