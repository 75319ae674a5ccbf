"""Group ``reports``: the model leaderboard, the consensus benchmark, annotator drift and what to label next."""

import dagster as dg
import numpy as np
import pandas as pd

from judge_assets.core.consensus.active_learning import LABEL_NEXT_TABLE, build_label_next
from judge_assets.core.db import quote_ident, read_frame, replace_table, replace_tables, table_columns, table_exists
from judge_assets.core.labels import stored_label_set
from judge_assets.core.plots import plot_annotator_drift, plot_benchmark, plot_leaderboard
from judge_assets.core.reports import consensus_benchmark as cb
from judge_assets.core.reports import ground_truth as gt
from judge_assets.core.reports.history import HISTORY_TABLE, append_annotator_history
from judge_assets.core.reports.leaderboard import comparison_counts
from judge_assets.core.reports.leaderboard import model_leaderboard as fit_leaderboard
from judge_assets.defs.automation import EVALUATION_TAGS, evaluation_cadence, rows_seen_metadata
from judge_assets.defs.consensus import read_gold
from judge_assets.defs.metadata import frame_markdown, number, plot_metadata, table_metadata
from judge_assets.defs.resources import JudgeDuckDBResource
from judge_assets.defs.tables import table_asset, table_check

GROUP = "reports"


@table_asset(
    GROUP,
    deps=["consensus_labels", "judgments", "label_set", "ordinal_consensus_labels"],
    kinds=("duckdb", "python"),
)
def model_leaderboard(duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    """Bradley-Terry model ratings (Elo scale, mean 1000, ties = half a win) with 95%
    bootstrap intervals (1,000 multinomial resamples of the per-pair outcome counts, seed 0) and the
    bootstrap median, three ways side by side: from consensus labels (one comparison per item), raw
    human votes and LLM-judge votes (one per vote); DuckDB counts the comparisons, so the fit costs the
    same at any size. On a pairwise scale (JUDGE_LABELS=1..8, JUDGE_SCALE_ENDS=A,B) ratings become
    outcomes by the documented mapping, once without ties (1-4 A, 5-8 B: ties = false) and once with
    ties (4 and 5 a tie: ties = true), and the consensus source is the ordinal consensus.
    Columns: source, ties, model, rating, median, ci_low, ci_high, rank, n_comparisons."""
    with duckdb.get_connection() as con:
        board = fit_leaderboard(comparison_counts(con))
        replace_table(con, "model_leaderboard", board)
        metadata = table_metadata(con, "model_leaderboard", preview_rows=30)
    if board.empty:
        metadata["note"] = dg.MetadataValue.text("no pairwise comparisons (model_a/model_b) in the data")
        return dg.MaterializeResult(metadata=metadata)
    if not board["ties"].all():  # a pairwise scale: both mappings side by side
        board = board.assign(source=board["source"] + np.where(board["ties"], ", with ties", ", without ties"))
    wide = board.pivot(index="model", columns="source", values="rating").round(1)
    wide = wide.sort_values(wide.columns[0], ascending=False).reset_index()
    metadata["ratings_by_source"] = dg.MetadataValue.md(frame_markdown(wide, max_rows=50))
    metadata["plot"] = plot_metadata(plot_leaderboard(board))
    return dg.MaterializeResult(metadata=metadata)


#: ``items`` columns the benchmark's classifier prior reads (the rest are not needed).
ITEM_COLUMNS = ("item_id", "turn", "model_a", "model_b", "category", "answers_a", "answers_b", "user_turns")


class BenchmarkConfig(dg.Config):
    """Run options of the consensus benchmark (launchpad-editable)."""

    seeds: list[int] = list(cb.DEFAULT_SEEDS)
    """One held-out split per seed."""
    min_human_votes: int = 3
    """Items with at least this many human votes are evaluated (one of them is hidden)."""
    include_glad: bool = False
    """Also benchmark crowd-kit GLAD (the slowest method: about 5 s per seed on MT-Bench, which
    would double the asset's runtime; ``benchmarks/consensus_quality.py`` includes it)."""
    max_votes: int = 20_000
    """Every method is refitted once per seed, so the benchmark runs on a bounded sample: whole
    items in item-id hash order while their votes stay within this many (all items below it:
    MT-Bench has 5.8K votes), so its cost does not grow with the data (5 minutes at 1M votes
    without it). The metadata says what was sampled (``sample``)."""


#: The benchmark's items: whole items in item-id hash order (stable as data grows) while the votes stay within ``?``.
SAMPLE_ITEMS_SQL = (
    "SELECT item_id FROM (SELECT item_id, sum(count(*)) OVER (ORDER BY hash(item_id), item_id) AS votes_so_far "
    "FROM judgments GROUP BY item_id) WHERE votes_so_far <= ?"
)


@table_asset(
    GROUP,
    deps=["judgments", "items", "llm_judge_scores", "gold_labels"],
    description="Held-out vote benchmark: hide one human vote per item with 3+ human votes, compute every consensus "
    "method from the rest, count agreement with the hidden vote; mean ± std over seeds. With gold (gold_labels) every "
    "method is also scored on the gold items (gold_accuracy, Wilson interval, gold_n; the gold-aware methods "
    "cross-fitted) and the methods are ranked by it. Writes "
    "consensus_benchmark (summary, default method marked) and consensus_benchmark_runs (per seed). Runs on the "
    "evaluation cadence (daily after new data, or when the votes grew 10%), never on every batch.",
    kinds=("duckdb", "python"),
    automation_condition=evaluation_cadence(),
    tags=EVALUATION_TAGS,
)
def consensus_benchmark(context: dg.AssetExecutionContext, config: BenchmarkConfig, duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        rows_seen = rows_seen_metadata(con)
        classes = stored_label_set(con).labels
        all_votes, all_items = con.execute("SELECT count(*), count(DISTINCT item_id) FROM judgments").fetchone()
        where, params = (f"WHERE item_id IN ({SAMPLE_ITEMS_SQL})", [config.max_votes]) if all_votes > config.max_votes else ("", [])
        judgments = con.execute(f"SELECT item_id, annotator, annotator_kind, label FROM judgments {where}", params).df()
        present = table_columns(con, "items")
        columns = ", ".join(quote_ident(c) for c in ITEM_COLUMNS if c in present)
        items = con.execute(f"SELECT {columns} FROM items {where} ORDER BY item_id", params).df()
        sample = (f"{len(judgments):,} of {all_votes:,} votes, on {len(items):,} of {all_items:,} items (whole items in item-id "
                  f"hash order up to max_votes {config.max_votes:,}; raise it in the launchpad to use more)" if where else f"all {all_votes:,} votes")
        scores = con.execute("SELECT * FROM llm_judge_scores").df()
        gold = read_gold(con)
    methods = cb.default_methods(judgments, scores, include_glad=config.include_glad)
    context.log.info(f"benchmarking {len(methods)} methods on {len(config.seeds)} seeds: {', '.join(methods)}")
    runs = cb.run_benchmark(
        judgments, items, classes, methods, tuple(config.seeds), min_human_votes=config.min_human_votes, llm_scores=scores
    )
    on_gold = cb.gold_scores(judgments, items, classes, gold, methods, llm_scores=scores)
    summary = cb.summarize(runs, gold=on_gold)
    with duckdb.get_connection() as con:
        replace_tables(con, {"consensus_benchmark": summary, "consensus_benchmark_runs": runs})
    if runs.empty and on_gold.empty:
        reason = cb.skip_reason(judgments, config.min_human_votes)
        context.log.warning(f"consensus benchmark: nothing to evaluate: {reason}")
        return dg.MaterializeResult(
            metadata={"dagster/row_count": 0, "skipped": reason, "n_items": 0, "seeds": dg.MetadataValue.json(list(config.seeds)),
                      **rows_seen, "sample": sample}
        )
    best = summary.iloc[0]
    default = summary.loc[summary["is_default"]].iloc[0]
    held_out = summary[summary["mean_accuracy"].notna()]
    extra = {"plot": plot_metadata(plot_benchmark(held_out))} if len(held_out) else {}
    if len(on_gold):
        extra.update({"gold_items": int(on_gold["gold_n"].max()), "default_gold_accuracy": number(default["gold_accuracy"])})
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(summary),
            "summary": dg.MetadataValue.md(cb.markdown_table(summary)),
            **extra,
            "best_method": str(best["method"]),
            "default_method": str(default["method"]),
            "default_accuracy": number(default["mean_accuracy"]),
            "n_items": int(runs["n_items"].max()) if len(runs) else 0,
            "seeds": dg.MetadataValue.json(list(config.seeds)),
            **rows_seen,
            "sample": sample,
        }
    )


#: ``consensus_labels`` columns scored as the unsupervised methods of ``ground_truth_accuracy``.
GOLD_METHOD_COLUMNS = {
    "majority_vote": "majority_vote_label",
    "dawid_skene": "dawid_skene_label",
    "glad": "glad_label",
    "crowdlab": "crowdlab_label",
}


class GroundTruthConfig(dg.Config):
    """Run options of ``ground_truth_accuracy`` (launchpad-editable)."""

    folds: int = 5
    """Cross-fitting folds of the gold items (each fold is predicted from the other folds' gold)."""
    seed: int = 0
    """Seed of the folds and of the methods' random tiebreaks."""


@table_asset(
    GROUP,
    deps=["judgments", "gold_labels", "label_set", "consensus_labels"],
    kinds=("duckdb", "python"),
    columns={
        "name": "The annotator (human, LLM judge or LLM panel <judge>:<model>) or the consensus method.",
        "kind": "annotator or method.",
        "category": "all (every gold item), or an item category.",
        "n": "Gold items scored: an annotator's votes on items with gold; a method's gold items.",
        "accuracy": "Share of those equal to the gold label.",
        "ci_low": "Lower end of the 95% Wilson score interval of accuracy.",
        "ci_high": "Upper end of the 95% Wilson score interval of accuracy.",
        "kappa": "Cohen's kappa against gold (NULL where undefined, e.g. one class only).",
    },
)
def ground_truth_accuracy(context: dg.AssetExecutionContext, config: GroundTruthConfig, duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    """Every judge and every consensus method against gold (gold_labels): one row per annotator in
    judgments (humans, LLM judges, the LLM panel) and per consensus method — gold_mixture (the
    default with gold), gold_weighted_vote, best_judge_on_gold, majority_vote, dawid_skene, glad
    (when it ran), crowdlab — overall (category 'all') and per category. Methods are scored by
    cross-fitting: the gold items are split into folds and each fold is predicted from the other
    folds' gold only, so an item's own gold never informs its prediction. Empty without gold."""
    with duckdb.get_connection() as con:
        classes = stored_label_set(con).labels
        gold = read_gold(con)
        cols = [c for c in ("item_id", "annotator", "annotator_kind", "label", "category") if c in table_columns(con, "judgments")]
        judgments = read_frame(con, f"SELECT {', '.join(quote_ident(c) for c in cols)} FROM judgments")
        present = table_columns(con, "consensus_labels") if table_exists(con, "consensus_labels") else {}
        chosen = {name: col for name, col in GOLD_METHOD_COLUMNS.items() if col in present}
        labels = con.execute(
            f"SELECT item_id, {', '.join(quote_ident(c) for c in chosen.values())} FROM consensus_labels"
        ).df().set_index("item_id") if chosen else None
    method_labels = None
    if labels is not None:
        method_labels = {name: labels[col].dropna() for name, col in chosen.items() if labels[col].notna().any()}
    table = gt.ground_truth_accuracy(judgments, gold, classes, method_labels, k=config.folds, seed=config.seed)
    with duckdb.get_connection() as con:
        replace_table(con, "ground_truth_accuracy", table)
        metadata = table_metadata(con, "ground_truth_accuracy", preview_rows=20)
    metadata["gold_items"] = int(gold.index.isin(judgments["item_id"]).sum())
    if table.empty:
        note = "no gold: add a ground_truth column to the generic data or name gold annotators (JUDGE_GOLD_ANNOTATORS)"
        context.log.info(f"ground_truth_accuracy: {note}")
        metadata["note"] = dg.MetadataValue.text(note)
        return dg.MaterializeResult(metadata=metadata)
    overall = table[table["category"] == gt.ALL_CATEGORIES]
    methods = overall[overall["kind"] == "method"].sort_values("accuracy", ascending=False)
    judges = overall[overall["kind"] == "annotator"].sort_values("accuracy", ascending=False)
    metadata["methods_on_gold"] = dg.MetadataValue.md(frame_markdown(methods, 20))
    metadata["best_judges_on_gold"] = dg.MetadataValue.md(frame_markdown(judges, 20))
    metadata["default_method_accuracy"] = number(methods.loc[methods["name"] == gt.DEFAULT_METHOD, "accuracy"].iloc[0])
    return dg.MaterializeResult(metadata=metadata)


@table_check(
    asset="ground_truth_accuracy",
    blocking=False,
    description="On gold, no consensus method scores below majority vote or below chance (1/K), overall or in a "
    "category (cross-fitted scores): a failing method is one whose unsupervised assumptions the gold contradicts.",
)
def consensus_methods_beat_baseline_on_gold(duckdb: JudgeDuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        scores = con.execute("SELECT * FROM ground_truth_accuracy").df()
        n_classes = len(stored_label_set(con).labels)
    if not (scores["kind"] == "method").any():
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN, metadata={"note": "no gold: nothing to check"})
    failing = gt.methods_below_baseline(scores, n_classes)
    return dg.AssetCheckResult(
        passed=failing.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "failing": len(failing),
            "below_baseline": dg.MetadataValue.md(frame_markdown(failing, 40) if len(failing) else "none"),
        },
    )


reports_checks = [consensus_methods_beat_baseline_on_gold]


@table_asset(
    GROUP,
    deps=["annotator_stats"],
    description="annotator_stats at each snapshot (one per materialization, keyed by the latest batch): query drift of "
    "an annotator's quality across batches. Snapshots follow the evaluation cadence (daily after new data, or when "
    "the votes grew 10%, or on demand), not every batch.",
    automation_condition=evaluation_cadence(),
    tags=EVALUATION_TAGS,
)
def annotator_stats_history(duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        rows_seen = rows_seen_metadata(con)
        number, latest = append_annotator_history(con)
        history = con.execute(f"SELECT * FROM {HISTORY_TABLE}").df()
        return dg.MaterializeResult(
            metadata={
                **table_metadata(con, HISTORY_TABLE, order_by="snapshot DESC, num_examples_labeled DESC"),
                "snapshot": number,
                "latest_batch_id": latest or "",
                "quality_over_batches": plot_metadata(plot_annotator_drift(history)),
                **rows_seen,
            }
        )


@table_asset(
    GROUP,
    deps=["judgments", "items", "model_probs", "majority_vote_labels"],
    description="Items ranked by cleanlab's ActiveLab score (votes from judgments, prior from model_probs): "
    "label_next_rank 1 = the item whose next label helps most; with the item's text and vote count.",
    kinds=("duckdb", "python"),
)
def label_next(duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        n = build_label_next(con)
        unlabelled = con.execute(f"SELECT count(*) FILTER (WHERE num_annotations = 0) FROM {LABEL_NEXT_TABLE}").fetchone()[0]
        return dg.MaterializeResult(
            metadata={**table_metadata(con, LABEL_NEXT_TABLE, order_by="label_next_rank"), "items": n, "unlabelled_items": unlabelled}
        )


class JudgedClassifierConfig(dg.Config):
    """Run options of ``judged_classifier_report``."""

    correct_labels: list[str] = ["correct", "pass"]
    """Judge verdict labels that grade a prediction correct (reference-correct: correct; pass-fail: pass)."""


@table_asset(
    GROUP,
    deps=["items", "llm_judge_scores", "gold_labels"],
    kinds=("duckdb", "python"),
    description="The classification-with-judge flow: the classifier's predictions are the items' response (what a "
    "single-output judge such as reference-correct grades), its gold the gold_labels. Per judge whose verdicts grade "
    "correct/incorrect: the classifier's accuracy on gold, its accuracy as the judge estimates it (all items, and on "
    "the gold items), the judge's confusion matrix against gold, sensitivity, specificity and the judged accuracy "
    "corrected for them. Empty with a note without gold or without such a judge.",
)
def judged_classifier_report(context: dg.AssetExecutionContext, config: JudgedClassifierConfig, duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    from judge_assets.core.reports.judged_classifier import judged_classifier_report as build_report

    with duckdb.get_connection() as con:
        gold = read_gold(con)
        has_response = "response" in table_columns(con, "items")
        predictions = con.execute("SELECT item_id, response[1] AS predicted FROM items WHERE response[1] IS NOT NULL").df() if has_response else None
        verdicts = con.execute(
            "SELECT item_id, annotator AS judge, predicted_label AS verdict FROM llm_judge_scores WHERE status = 'ok' "
            "AND annotator IN (SELECT annotator FROM llm_judge_scores WHERE status = 'ok' GROUP BY 1 "
            "HAVING bool_or(list_has_any(?, verdict_labels)))",
            [list(config.correct_labels)],
        ).df() if table_exists(con, "llm_judge_scores") else pd.DataFrame(columns=["item_id", "judge", "verdict"])
    missing = [why for why, absent in (("no gold (gold_labels is empty)", gold.empty), ("no response column in items", predictions is None),
                                       ("no judge grading correct/incorrect in llm_judge_scores", verdicts.empty)) if absent]
    if missing:
        from judge_assets.core.reports.judged_classifier import REPORT_COLUMNS

        table = pd.DataFrame({c: pd.Series(dtype="float64" if c in ("value", "ci_low", "ci_high") else "int64" if c == "n" else "string") for c in REPORT_COLUMNS})
    else:
        table = build_report(predictions.set_index("item_id")["predicted"], verdicts, gold, tuple(config.correct_labels))
    with duckdb.get_connection() as con:
        replace_table(con, "judged_classifier_report", table)
        metadata = table_metadata(con, "judged_classifier_report", preview_rows=20)
    if missing:
        metadata["note"] = dg.MetadataValue.text("; ".join(missing))
        context.log.info(f"judged_classifier_report: {'; '.join(missing)}")
    return dg.MaterializeResult(metadata=metadata)
