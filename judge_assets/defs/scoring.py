"""Group ``scoring``: the LLM judge's logprob scores and the model prior CROWDLAB uses, with their checks."""

import time

import dagster as dg
import pandas as pd

from judge_assets.core.db import replace_table
from judge_assets.core.scoring.llm_judge import SCORE_COLUMNS, EndpointError, first_position_preference, score_items
from judge_assets.core.scoring.prior import build_model_probs, count_items_without_text, prior_training_labels
from judge_assets.core.labels import stored_label_set
from judge_assets.core.validation import validate_llm_scores, validate_probabilities
from judge_assets.defs.metadata import asset_check_result, table_metadata
from judge_assets.defs.resources import DB_POOL, JudgeDuckDBResource, LLMJudgeResource

SCORER_NOTES = {
    "llm_logprobs": "LLM judge: swap-averaged first-token logprobs from the configured endpoint",
    "oof_classifier": "NOT an LLM: out-of-fold logistic regression on item features (model identities, answer "
    "lengths, TF-IDF, category), trained on human majority votes (cleanlab's cross-validated pred_probs recipe)",
    "uniform": "uniform 1/K (nothing to train on)",
}


@dg.asset(
    deps=["items"],
    group_name="scoring",
    kinds={"duckdb", "openai"},
    pool=DB_POOL,
    description="Per item P(A), P(B), P(tie) from the LLM judge's first-token logprobs, both answer orders, cached "
    "in llm_score_cache. Empty when no endpoint is configured (JUDGE_LLM_BASE_URL / JUDGE_LLM_MODEL). Fails (and so "
    "stops model_probs from silently using the classifier prior) when the configured endpoint cannot be used: wrong "
    "key, URL or model, unreachable, hanging, failing every request.",
)
def llm_judge_scores(context: dg.AssetExecutionContext, duckdb: JudgeDuckDBResource, llm_judge: LLMJudgeResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        if not llm_judge.is_configured:
            replace_table(con, "llm_judge_scores", pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in SCORE_COLUMNS}))
            context.log.info("no LLM endpoint configured (JUDGE_LLM_BASE_URL, JUDGE_LLM_MODEL): no calls made")
            return dg.MaterializeResult(metadata={"dagster/row_count": 0, "status": "no endpoint configured: no calls made"})
        items = con.execute("SELECT * FROM items ORDER BY item_id").df()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if done == total or time.monotonic() - last[0] > 5:
                last[0] = time.monotonic()
                context.log.info(f"LLM judge: {done}/{total} requests done")

        config = llm_judge.to_config()
        try:
            scores, stats = score_items(con, items, config, progress)
        except EndpointError as exc:  # the message names the host and the server's words, never a secret
            raise dg.Failure(
                description=str(exc),
                metadata={
                    "stopped_by": exc.reason,
                    "endpoint_host": config.endpoint_host,
                    "calls_made": exc.stats.calls_made,
                    "failures_by_reason": dg.MetadataValue.json(exc.stats.failures),
                },
            ) from None
        replace_table(con, "llm_judge_scores", scores)
        status = scores["status"].value_counts().to_dict()
        context.log.info(f"LLM judge: {stats.as_dict()}")
        return dg.MaterializeResult(
            metadata={
                **table_metadata(con, "llm_judge_scores"),
                **{k: v for k, v in stats.as_dict().items() if isinstance(v, (int, float, str))},
                "failures_by_reason": dg.MetadataValue.json(stats.failures),
                "status_counts": dg.MetadataValue.json({str(k): int(v) for k, v in status.items()}),
                "first_position_preference": float(first_position_preference(scores)),
                "model": config.model,
                "endpoint_host": config.endpoint_host,
            }
        )


def _dtype(column: str) -> str:
    return "object" if column in ("item_id", "model", "prompt_version", "status") else "float64"


@dg.asset_check(asset="llm_judge_scores", blocking=True, description="GX: every item covered; scored rows sum to 1 ± 1e-6, values in [0, 1], label_mass in (0, 1].")
def llm_judge_scores_valid(duckdb: JudgeDuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        scores = con.execute("SELECT * FROM llm_judge_scores").df()
        item_ids = con.execute("SELECT item_id FROM items").df()["item_id"]
    if scores.empty:
        return dg.AssetCheckResult(passed=True, metadata={"summary": "no LLM endpoint configured: nothing to validate"})
    return asset_check_result(validate_llm_scores(scores, item_ids))


@dg.asset(
    deps=["items", "judgments", "label_set", "llm_judge_scores"],
    group_name="scoring",
    kinds={"duckdb", "scikit-learn"},
    pool=DB_POOL,
    description="The model prior CROWDLAB consumes: p_<label> per item and the scorer it came from — LLM logprob scores "
    "where they exist, else an out-of-fold classifier (not an LLM).",
)
def model_probs(context: dg.AssetExecutionContext, duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        classes = stored_label_set(con).labels
        items = con.execute("SELECT * FROM items ORDER BY item_id").df()
        judgments = con.execute("SELECT item_id, annotator, annotator_kind, label FROM judgments").df()
        llm = con.execute("SELECT * FROM llm_judge_scores").df()
        probs = build_model_probs(items, prior_training_labels(judgments, classes), llm, classes)
        replace_table(con, "model_probs", probs)
        scorers = probs["scorer"].value_counts().to_dict()
        textless = count_items_without_text(items)
        context.log.info("model_probs scorers: " + ", ".join(f"{k} {v}" for k, v in scorers.items()) + f"; {textless} items without texts")
        notes = [f"- **{k}** ({scorers[k]} items): {SCORER_NOTES[k]}" for k in scorers]
        if textless:
            notes.append(f"- {textless} items have no texts (e.g. CSV rows): their prior comes from their other columns (pairwise: models, category, turn)")
        return dg.MaterializeResult(
            metadata={
                **table_metadata(con, "model_probs"),
                "scorer_counts": dg.MetadataValue.json({str(k): int(v) for k, v in scorers.items()}),
                "items_without_text": textless,
                "scorers": dg.MetadataValue.md("\n".join(notes)),
            }
        )


@dg.asset_check(asset="model_probs", blocking=True, description="model_probs rows sum to 1 ± 1e-6, every probability in [0, 1].")
def model_probs_are_probabilities(duckdb: JudgeDuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        classes = stored_label_set(con).labels
        probs = con.execute("SELECT * FROM model_probs").df()
    return asset_check_result(validate_probabilities(probs, classes))


scoring_checks = [llm_judge_scores_valid, model_probs_are_probabilities]
