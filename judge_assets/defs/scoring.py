"""Group ``scoring``: the LLM judge's logprob scores and the model prior CROWDLAB uses, with their checks."""

import time

import dagster as dg
import pandas as pd

from judge_assets.core.db import replace_tables, table_columns
from judge_assets.core.labels import stored_label_set
from judge_assets.core.scoring.llm_judge import (
    SCORE_COLUMNS,
    EndpointError,
    JudgeSpecError,
    MissingColumnError,
    check_columns,
    first_position_preference,
    label_probs_long,
    score_items,
)
from judge_assets.core.scoring.prior import llm_prior
from judge_assets.core.scoring.prior_store import refresh_model_probs
from judge_assets.core.validation import validate_llm_scores, validate_probabilities
from judge_assets.core.votes.judgments import ITEM_COLUMNS
from judge_assets.defs.metadata import asset_check_result, frame_markdown, table_metadata
from judge_assets.defs.resources import JudgeDuckDBResource, LLMJudgeResource
from judge_assets.defs.tables import table_asset, table_check, tables_asset

GROUP = "scoring"

SCORER_NOTES = {
    "llm_logprobs": "LLM judge panel: first-token logprobs (pairwise: swap-averaged) of the judge(s) named in prior_judge",
    "oof_classifier": "NOT an LLM: out-of-fold logistic regression on item features (model identities, answer "
    "lengths, TF-IDF, category), trained on human majority votes (cleanlab's cross-validated pred_probs recipe)",
    "uniform": "uniform 1/K (nothing to train on)",
}


SCORES_DESCRIPTION = (
    "One row per (item, judge, model): the LLM judge panel's verdict from first-token logprobs — status, predicted "
    "label, verdict (A/B/tie for pairwise judges), expected score (ordinal judges), position consistency, per-order "
    "pairwise probabilities, cost — cached in llm_score_cache. Judges are files (JUDGE_JUDGES, JUDGE_JUDGES_DIR); "
    "models are JUDGE_LLM_MODEL (comma-separated) or JUDGE_PANEL. Empty when no endpoint is configured. Fails (and "
    "so stops model_probs from silently using the classifier prior) when a judge file is malformed, a judge needs a "
    "column the data lacks (before any call), or the configured endpoint cannot be used."
)
PROBS_DESCRIPTION = "One row per (item, judge, model, label): the judge's label probability p over its own label set."


def _empty_scores() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in SCORE_COLUMNS})


@tables_asset(
    GROUP,
    {"llm_judge_scores": (["items"], SCORES_DESCRIPTION), "llm_judge_probs": (["items"], PROBS_DESCRIPTION)},
    kinds=("duckdb", "openai"),
)
def llm_judge_scores(context: dg.AssetExecutionContext, duckdb: JudgeDuckDBResource, llm_judge: LLMJudgeResource):
    with duckdb.get_connection() as con:
        if not llm_judge.is_configured:
            replace_tables(con, {"llm_judge_scores": _empty_scores(), "llm_judge_probs": label_probs_long(_empty_scores().assign(label_probs=None))})
            context.log.info("no LLM endpoint configured (JUDGE_LLM_BASE_URL, JUDGE_LLM_MODEL or JUDGE_PANEL): no calls made")
            note = {"dagster/row_count": 0, "status": "no endpoint configured: no calls made"}
            yield dg.MaterializeResult(asset_key="llm_judge_scores", metadata=note)
            yield dg.MaterializeResult(asset_key="llm_judge_probs", metadata=note)
            return
        items = con.execute("SELECT * FROM items ORDER BY item_id").df()
        sources = [r[0] for r in con.execute("SELECT DISTINCT source FROM raw_judgments ORDER BY 1").fetchall()]
        data = "the data (" + ", ".join(sources[:3]) + (", …" if len(sources) > 3 else "") + ")"
        try:  # every judge file and every column it needs, before any call
            judges = llm_judge.judge_specs()
            for judge in judges:
                check_columns(items, judge, data)
        except (JudgeSpecError, MissingColumnError) as exc:
            raise dg.Failure(description=str(exc)) from None
        configs = llm_judge.to_configs()
        frames, per_annotator, totals = [], [], {}
        for config in configs:
            for judge in judges:
                annotator = f"{judge.name}:{config.model}"
                last = [0.0]

                def progress(done: int, total: int, annotator: str = annotator) -> None:
                    if done == total or time.monotonic() - last[0] > 5:
                        last[0] = time.monotonic()
                        context.log.info(f"LLM judge {annotator}: {done}/{total} requests done")

                try:
                    scores, stats = score_items(con, items, config, progress, judge)
                except EndpointError as exc:  # the message names the host and the server's words, never a secret
                    raise dg.Failure(
                        description=str(exc),
                        metadata={
                            "stopped_by": exc.reason,
                            "annotator": annotator,
                            "endpoint_host": config.endpoint_host,
                            "calls_made": exc.stats.calls_made,
                            "failures_by_reason": dg.MetadataValue.json(exc.stats.failures),
                        },
                    ) from None
                context.log.info(f"LLM judge {annotator}: {stats.as_dict()}")
                frames.append(scores)
                for key, value in stats.as_dict().items():
                    if isinstance(value, (int, float)) and key != "calls_per_s":
                        totals[key] = totals.get(key, 0) + value
                for reason, n in stats.failures.items():
                    totals.setdefault("failures", {})[reason] = totals.get("failures", {}).get(reason, 0) + n
                pairwise = scores[scores["shape"] == "pairwise"]
                per_annotator.append({
                    "annotator": annotator, "file": judge.source, "endpoint_host": config.endpoint_host,
                    "items_sent": int((~scores["status"].str.startswith("skipped")).sum()),
                    "ok": int((scores["status"] == "ok").sum()), "calls_made": stats.calls_made, "cache_hits": stats.cache_hits,
                    "first_position_preference": first_position_preference(pairwise) if len(pairwise) else None,
                })
        scores = pd.concat(frames, ignore_index=True)
        probs = label_probs_long(scores)
        replace_tables(con, {"llm_judge_scores": scores.drop(columns="label_probs"), "llm_judge_probs": probs})
        status = scores["status"].value_counts().to_dict()
        panel = pd.DataFrame(per_annotator)
        first = panel["first_position_preference"].dropna()
        yield dg.MaterializeResult(
            asset_key="llm_judge_scores",
            metadata={
                **table_metadata(con, "llm_judge_scores"),
                **{k: v for k, v in totals.items() if k != "failures"},
                "mode": configs[0].mode,
                "failures_by_reason": dg.MetadataValue.json(totals.get("failures", {})),
                "status_counts": dg.MetadataValue.json({str(k): int(v) for k, v in status.items()}),
                "first_position_preference": float(first.mean()) if len(first) else float("nan"),
                "panel": dg.MetadataValue.md(frame_markdown(panel, 50)),
                "judges": ", ".join(j.name for j in judges),
                "models": ", ".join(c.model for c in configs),
                "endpoint_hosts": ", ".join(sorted({c.endpoint_host for c in configs})),
            },
        )
        yield dg.MaterializeResult(asset_key="llm_judge_probs", metadata=table_metadata(con, "llm_judge_probs"))


def _dtype(column: str) -> str:
    if column in ("n_requests", "n_answers", "n_orders", "attempts", "prompt_tokens", "completion_tokens"):
        return "int64"
    text = ("item_id", "judge", "model", "annotator", "shape", "endpoint_host", "status", "predicted_label", "verdict",
            "verdict_labels", "longer_output")
    return "object" if column in text else "float64"


@table_check(
    asset="llm_judge_scores",
    blocking=True,
    description="GX, per judge and model: every item has a row; scored pairwise rows' P(A), P(B), P(tie) sum to 1 ± 1e-6, "
    "values in [0, 1], label_mass in (0, 1]; every item's label probabilities in llm_judge_probs sum to 1 ± 1e-6.",
)
def llm_judge_scores_valid(duckdb: JudgeDuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        scores = con.execute("SELECT * FROM llm_judge_scores").df()
        item_ids = con.execute("SELECT item_id FROM items").df()["item_id"]
        bad_sums = con.execute(
            "SELECT annotator, item_id, sum(p) AS total FROM llm_judge_probs GROUP BY ALL HAVING abs(sum(p) - 1) > 1e-6 LIMIT 5"
        ).fetchall()
    if scores.empty:
        return dg.AssetCheckResult(passed=True, metadata={"summary": "no LLM endpoint configured: nothing to validate"})
    results = {}
    for annotator, frame in scores.groupby("annotator"):
        pairwise = frame["shape"].eq("pairwise").all()
        checked = frame if pairwise else frame.assign(status="not_pairwise")  # coverage only
        results[annotator] = asset_check_result(validate_llm_scores(checked, item_ids))
    passed = all(r.passed for r in results.values()) and not bad_sums
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "failed_annotators": dg.MetadataValue.json(sorted(a for a, r in results.items() if not r.passed)),
            "label_probs_not_summing_to_1": dg.MetadataValue.json([list(map(str, r)) for r in bad_sums]),
        },
    )


class ModelProbsConfig(dg.Config):
    """Run options of the model prior (launchpad-editable)."""

    refit: bool = False
    """Refit the classifier prior on all items now. By default it is refitted only when the items new or changed
    since the last fit, or the votes, grew 10% (prior_store.REFIT_GROWTH), or when the class set, the item columns or
    the settings changed; in between, only new or changed items are scored, by the stored classifier."""


@table_asset(
    GROUP,
    deps=["items", "judgments", "label_set", "llm_judge_scores", "llm_judge_probs"],
    kinds=("duckdb", "scikit-learn"),
    description="The model prior CROWDLAB consumes: p_<label> per item and the scorer it came from — the LLM judge "
    "panel's probabilities where they exist (one <judge>:<model>, or the panel mean: JUDGE_PRIOR_JUDGE), else an "
    "out-of-fold classifier (not an LLM). The classifier is refitted when the items new or changed since its fit, or "
    "the votes, grew 10% (or on demand: config refit); in between a batch's new items are scored by the stored "
    "classifier (metadata prior_mode says which, and why).",
    columns={
        "item_id": "The item (one row per item).",
        "p_A": "Prior probability that answer A is better.",
        "p_B": "Prior probability that answer B is better.",
        "p_tie": "Prior probability of a tie.",
        "scorer": "Where the row came from: llm_logprobs (the LLM judge or panel), oof_classifier (out-of-fold classifier, not an LLM) or uniform.",
    },
)
def model_probs(context: dg.AssetExecutionContext, config: ModelProbsConfig, duckdb: JudgeDuckDBResource, llm_judge: LLMJudgeResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        classes = stored_label_set(con).labels
        present = table_columns(con, "items")  # the item's own columns: never extra source columns (e.g. a gold label)
        columns = [c for c in ITEM_COLUMNS if c in present]
        llm = con.execute("SELECT * FROM llm_judge_scores").df()
        llm_probs = con.execute("SELECT * FROM llm_judge_probs").df()
        try:
            llm_rows = llm_prior(llm, classes, llm_probs=llm_probs, prior_judge=llm_judge.prior_judge)
        except ValueError as exc:  # an unknown JUDGE_PRIOR_JUDGE
            raise dg.Failure(description=f"JUDGE_PRIOR_JUDGE={llm_judge.prior_judge!r}: {exc}") from None
        fit = pd.Series([set(v) <= set(classes) for v in llm["verdict_labels"]], index=llm.index, dtype=bool)
        voters = sorted(llm.loc[(llm["status"] == "ok") & fit, "annotator"].unique())
        prior_from = llm_judge.prior_judge if llm_judge.prior_judge != "mean" else f"mean of {', '.join(voters) or 'no LLM judge'}"
        update = refresh_model_probs(con, classes, columns, llm_rows, refit=config.refit)
        scorers = update.scorer_counts
        context.log.info(
            f"model_probs: {update.mode} ({update.reason}); scorers: " + ", ".join(f"{k} {v}" for k, v in scorers.items())
            + f"; {update.items_without_text} items without texts"
        )
        notes = [f"- **{k}** ({scorers[k]} items): {SCORER_NOTES[k]}" for k in scorers]
        if update.items_without_text:
            notes.append(
                f"- {update.items_without_text} items have no texts (e.g. CSV rows): their prior comes from their other columns "
                "(pairwise: models, category, turn)"
            )
        return dg.MaterializeResult(
            metadata={
                **table_metadata(con, "model_probs"),
                "prior_mode": update.mode,
                "prior_mode_reason": update.reason,
                "items_scored_by_classifier": update.items_scored,
                **({"items_until_refit": update.refit_after} if update.refit_after is not None else {}),
                "scorer_counts": dg.MetadataValue.json({str(k): int(v) for k, v in scorers.items()}),
                "items_without_text": update.items_without_text,
                "scorers": dg.MetadataValue.md("\n".join(notes)),
                "llm_prior_from": prior_from,
            }
        )


@table_check(asset="model_probs", blocking=True, description="model_probs rows sum to 1 ± 1e-6, every probability in [0, 1].")
def model_probs_are_probabilities(duckdb: JudgeDuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        classes = stored_label_set(con).labels
        probs = con.execute("SELECT * FROM model_probs").df()
    return asset_check_result(validate_probabilities(probs, classes))


scoring_checks = [llm_judge_scores_valid, model_probs_are_probabilities]
