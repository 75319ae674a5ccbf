"""How well assertions agree with human grades (EvalGen, "Who Validates the Validators?", Shankar et al. 2024).

Grades are human verdicts on single outputs, ``good`` or ``bad`` (``pass``/``fail`` work too),
per criterion or overall. An assertion *fails* an output (:mod:`judge_assets.core.scoring.criteria`).
For one assertion, over the outputs graded for its criterion (the overall grades when that
criterion has none):

=========================  ===============================================================
column                     definition
=========================  ===============================================================
``coverage``               failed ∧ bad / bad — the share of bad outputs it catches
``false_failure_rate``     failed ∧ good / good — the paper's definition, over GOOD outputs
``failure_precision``      failed ∧ bad / failed — how often a failure is a real one
``false_failure_share``    1 − failure_precision — the talk's reading of "false failure rate";
                           it differs from the paper's whenever bad outputs are not half
``alignment``              harmonic mean of coverage and 1 − false_failure_rate
=========================  ===============================================================

Intervals are 95%: Wilson for the three rates, a seeded percentile bootstrap for alignment.
An output graded by several graders takes the majority of their latest grades (a tie counts as
bad: a doubt is worth a look).

Milestones: below ``min_graded`` graded outputs (default 20) a row carries the status
``needs N more grades`` and no numbers; selection starts at ``select_at`` (default 50): per
criterion the variant with the best alignment among those whose false failure rate is within
``ffr_budget`` (default 0.2). The selected set fails an output if any selected assertion fails it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BAD = ("bad", "fail", "failed", "no", "0", "false", "thumbs_down")
GOOD = ("good", "pass", "passed", "yes", "1", "true", "thumbs_up")
OVERALL = "overall"
SELECTED_SET = "(selected set)"
MIN_GRADED = 20
SELECT_AT = 50
FFR_BUDGET = 0.2
DRIFT_MARGIN = 0.1
REPORT_COLUMNS = [
    "criterion", "assertion", "kind", "status", "n_graded", "n_bad", "n_good", "coverage", "coverage_low", "coverage_high",
    "false_failure_rate", "ffr_low", "ffr_high", "failure_precision", "precision_low", "precision_high",
    "false_failure_share", "alignment", "alignment_low", "alignment_high", "selected",
]


def is_bad(grade: pd.Series) -> pd.Series:
    """``grade`` strings → True (bad) / False (good); anything else is a ValueError naming the value."""
    text = grade.astype(str).str.strip().str.lower()
    unknown = sorted(set(text[~text.isin(BAD + GOOD)]))
    if unknown:
        raise ValueError(f"grades must be good/bad (or pass/fail); got {unknown[:5]}")
    return text.isin(BAD)


def output_grades(grades: pd.DataFrame) -> pd.DataFrame:
    """One grade per (output, criterion) from the graders' latest grades.

    ``grades``: ``item_id``, ``grader``, ``criterion`` (NULL or ``overall`` = overall), ``grade``,
    and an ordering column ``seq`` (later = larger): a newer grade by the same grader on the same
    output and criterion replaces the earlier one. Returns ``item_id``, ``criterion``, ``bad``
    (majority of graders; a tie is bad), ``n_graders``.
    """
    frame = grades.assign(criterion=grades["criterion"].fillna(OVERALL).replace("", OVERALL))
    latest = frame.sort_values("seq").drop_duplicates(["item_id", "criterion", "grader"], keep="last")
    latest = latest.assign(bad=is_bad(latest["grade"]))
    grouped = latest.groupby(["item_id", "criterion"])["bad"].agg(["sum", "count"]).reset_index()
    grouped["bad"] = grouped["sum"] * 2 >= grouped["count"]
    return grouped.rename(columns={"count": "n_graders"})[["item_id", "criterion", "bad", "n_graders"]]


def wilson(successes: float, n: float, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (NaN, NaN when ``n == 0``)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _alignment(failed: np.ndarray, bad: np.ndarray) -> float:
    n_bad, n_good = bad.sum(), (~bad).sum()
    if n_bad == 0 or n_good == 0:
        return float("nan")
    coverage = (failed & bad).sum() / n_bad
    keep = 1.0 - (failed & ~bad).sum() / n_good
    return float(2 * coverage * keep / (coverage + keep)) if coverage + keep > 0 else 0.0


def assertion_metrics(failed: np.ndarray, bad: np.ndarray, *, n_boot: int = 500, seed: int = 0) -> dict[str, float]:
    """The metrics of the module docstring for one assertion: ``failed``, ``bad`` bool, shape (n_outputs,)."""
    failed, bad = np.asarray(failed, dtype=bool), np.asarray(bad, dtype=bool)
    n_bad, n_good = int(bad.sum()), int((~bad).sum())
    tp, fp = int((failed & bad).sum()), int((failed & ~bad).sum())
    out: dict[str, float] = {"n_graded": len(bad), "n_bad": n_bad, "n_good": n_good}
    out["coverage"] = tp / n_bad if n_bad else np.nan
    out["coverage_low"], out["coverage_high"] = wilson(tp, n_bad)
    out["false_failure_rate"] = fp / n_good if n_good else np.nan
    out["ffr_low"], out["ffr_high"] = wilson(fp, n_good)
    out["failure_precision"] = tp / (tp + fp) if tp + fp else np.nan
    out["precision_low"], out["precision_high"] = wilson(tp, tp + fp)
    out["false_failure_share"] = 1 - out["failure_precision"]
    out["alignment"] = _alignment(failed, bad)
    rng = np.random.default_rng(seed)
    draws = [_alignment(failed[i], bad[i]) for i in (rng.integers(0, len(bad), len(bad)) for _ in range(n_boot))] if len(bad) else []
    draws = np.asarray([d for d in draws if not np.isnan(d)])
    out["alignment_low"], out["alignment_high"] = (
        (float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))) if len(draws) else (np.nan, np.nan)
    )
    return out


def _graded_for(criterion: str, graded: pd.DataFrame) -> pd.DataFrame:
    own = graded[graded["criterion"] == criterion]
    return own if len(own) else graded[graded["criterion"] == OVERALL]


def alignment_report(
    verdicts: pd.DataFrame,
    graded: pd.DataFrame,
    *,
    min_graded: int = MIN_GRADED,
    select_at: int = SELECT_AT,
    ffr_budget: float = FFR_BUDGET,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The assertion report card and the selected set's totals.

    ``verdicts``: ``item_id``, ``criterion``, ``assertion``, ``kind``, ``failed`` (one row per
    output and assertion). ``graded``: :func:`output_grades`. Returns (report, selection):
    ``report`` has :data:`REPORT_COLUMNS`, one row per assertion; ``selection`` one row per
    criterion (``criterion``, ``selected_assertion``, ``alignment``, ``status``) plus a row
    ``criterion = '(selected set)'`` with the set's metrics (every number of a report row: coverage,
    false failure rate, precision, alignment, their intervals) over the overall grades (or "bad on
    any criterion" when there are none); the set fails an output when any selected assertion does.
    """
    rows = []
    for (criterion, assertion), group in verdicts.groupby(["criterion", "assertion"], sort=True):
        grades = _graded_for(criterion, graded).set_index("item_id")["bad"]
        joined = group.set_index("item_id").join(grades, how="inner")
        row = {"criterion": criterion, "assertion": assertion, "kind": group["kind"].iloc[0], "selected": False}
        n = len(joined)
        if n < min_graded:
            rows.append({**row, "status": f"needs {min_graded - n} more grades", "n_graded": n})
            continue
        metrics = assertion_metrics(joined["failed"].to_numpy(bool), joined["bad"].to_numpy(bool))
        rows.append({**row, **metrics, "status": "evaluated" if n < select_at else "eligible"})
    report = pd.DataFrame(rows).reindex(columns=REPORT_COLUMNS)
    selection = []
    for criterion, group in report.groupby("criterion", sort=True):
        eligible = group[(group["status"] == "eligible") & (group["false_failure_rate"] <= ffr_budget)]
        if group["status"].str.startswith("needs").all():
            status = group["status"].iloc[0]
        elif (group["status"] == "evaluated").any() and not (group["status"] == "eligible").any():
            status = f"selection starts at {select_at} grades"
        elif eligible.empty:
            status = f"no variant within the false failure budget {ffr_budget}"
        else:
            best = eligible.sort_values(["alignment", "coverage", "assertion"], ascending=[False, False, True]).iloc[0]
            report.loc[best.name, "selected"] = True
            selection.append({"criterion": criterion, "selected_assertion": best["assertion"], "alignment": best["alignment"], "status": "selected"})
            continue
        selection.append({"criterion": criterion, "selected_assertion": None, "alignment": np.nan, "status": status})
    chosen = report[report["selected"]]
    if len(chosen):
        picked = verdicts.merge(chosen[["criterion", "assertion"]], on=["criterion", "assertion"])
        set_failed = picked.groupby("item_id")["failed"].any()
        overall = graded[graded["criterion"] == OVERALL]
        truth = overall.set_index("item_id")["bad"] if len(overall) else graded.groupby("item_id")["bad"].any()
        joined = truth.to_frame().join(set_failed.rename("failed"), how="inner")
        metrics = assertion_metrics(joined["failed"].to_numpy(bool), joined["bad"].to_numpy(bool))
        selection.append({"criterion": SELECTED_SET, "selected_assertion": ", ".join(chosen["assertion"]), "status": "selected", **metrics})
    columns = ["criterion", "selected_assertion", "alignment", "status", "coverage", "false_failure_rate",
               *[c for c in REPORT_COLUMNS[4:-1] if c not in ("coverage", "false_failure_rate", "alignment")]]
    return report, pd.DataFrame(selection).reindex(columns=columns)


def alignment_history(
    verdicts: pd.DataFrame, grades: pd.DataFrame, batch_order: list[str], *, drift_margin: float = DRIFT_MARGIN, **options
) -> pd.DataFrame:
    """One row per assertion per grading batch, using the grades up to and including that batch.

    ``grades``: as for :func:`output_grades`, plus ``batch_id``; ``batch_order``: batch ids in
    arrival order. Columns: ``batch_id``, ``batch_number``, the report columns, and per criterion
    ``criterion_alignment`` (the best alignment among its variants at that batch) with
    ``drift`` = True where it fell by more than ``drift_margin`` since the previous batch.
    """
    frames = []
    for number, batch_id in enumerate(batch_order, start=1):
        upto = grades[grades["batch_id"].isin(batch_order[:number])]
        report, _ = alignment_report(verdicts, output_grades(upto), **options)
        frames.append(report.assign(batch_id=batch_id, batch_number=number))
    history = pd.concat(frames, ignore_index=True)
    best = history.groupby(["criterion", "batch_number"])["alignment"].max().rename("criterion_alignment")
    change = best.groupby(level="criterion").diff()
    drift = (change < -drift_margin).rename("drift")
    return history.join(best, on=["criterion", "batch_number"]).join(drift, on=["criterion", "batch_number"])


def regrade_candidates(
    graded_rows: pd.DataFrame, set_failed: pd.Series, texts: pd.Series, *, neighbours: int = 5, top: int = 50
) -> pd.DataFrame:
    """Earlier grades worth a second look: those that disagree with the selected assertions and
    with later grades on similar outputs.

    ``graded_rows``: one row per graded output (overall criterion) with ``item_id``, ``bad``,
    ``batch_number`` (when it was graded). ``set_failed``: item_id → whether the selected set fails
    it. ``texts``: item_id → the output text. ``score`` = ½·(the selected set disagrees with the
    grade) + ½·(similarity-weighted share of the ``neighbours`` most similar outputs graded in LATER
    batches whose grade differs; TF-IDF cosine). Returns the ``top`` rows by score: ``item_id``,
    ``bad``, ``batch_number``, ``assertions_disagree``, ``later_neighbours_disagree``, ``score``.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    rows = graded_rows.reset_index(drop=True)
    text = texts.reindex(rows["item_id"]).fillna("").astype(str).to_numpy()
    matrix = TfidfVectorizer(min_df=1).fit_transform(text) if len(rows) else None
    disagree_set = (set_failed.reindex(rows["item_id"]).fillna(False).to_numpy(bool) != rows["bad"].to_numpy(bool)).astype(float)
    later_share = np.zeros(len(rows))
    if matrix is not None and matrix.shape[1]:
        similarity = (matrix @ matrix.T).toarray()
        batch = rows["batch_number"].to_numpy()
        bad = rows["bad"].to_numpy(bool)
        for i in range(len(rows)):
            later = np.flatnonzero(batch > batch[i])
            if not len(later):
                continue
            nearest = later[np.argsort(-similarity[i, later], kind="stable")[:neighbours]]
            weight = similarity[i, nearest]
            if weight.sum() > 0:
                later_share[i] = float((weight * (bad[nearest] != bad[i])).sum() / weight.sum())
    out = rows[["item_id", "bad", "batch_number"]].assign(
        assertions_disagree=disagree_set.astype(bool), later_neighbours_disagree=later_share, score=0.5 * disagree_set + 0.5 * later_share
    )
    return out.sort_values(["score", "item_id"], ascending=[False, True]).head(top).reset_index(drop=True)


# --- grades from the raw rows ------------------------------------------------------------------
#
# Grades arrive as generic rows of ``raw_judgments`` (``item_id`` = the output, ``annotator`` = the
# grader, ``label`` = good/bad or pass/fail, optional ``criterion``). The vote key of
# ``judgments`` is (item_id, annotator), so two criteria graded by one grader on one output would
# collapse there into one vote; grades are therefore read from the raw rows with their own key
# (item_id, criterion, grader) and the same last-one-counts rule as votes (latest ``ingested_at``,
# then later batch id, then later row).

GRADE_COLUMNS = [
    "item_id", "criterion", "grader", "grade", "bad", "batch_id", "source_row", "ingested_at", "seq", "batch_number", "grade_rank",
    "n_grades",
]


def grade_rows(con, raw_table: str = "raw_judgments") -> pd.DataFrame:
    """Every grade row of ``raw_table`` (all of them, replaced ones too), ranked.

    A grade is a raw row whose ``label`` is one of :data:`GOOD` / :data:`BAD` (case-insensitive);
    other rows (pairwise votes, other classes) are not grades. Columns :data:`GRADE_COLUMNS`:
    ``criterion`` (``overall`` when absent or empty), ``bad``, ``seq`` (arrival order, 1 = first),
    ``batch_number`` (1 = the first batch holding grades, by first ``ingested_at`` then batch id),
    ``grade_rank`` (1 = the grade that counts for its (item_id, criterion, grader)), ``n_grades``
    (how many grades that key received).
    """
    from judge_assets.core.db import table_columns, table_exists

    empty = pd.DataFrame({c: pd.Series(dtype="object") for c in GRADE_COLUMNS}).astype(
        {"bad": "bool", "source_row": "int64", "seq": "int64", "batch_number": "int64", "grade_rank": "int64", "n_grades": "int64",
         "ingested_at": "datetime64[us]"}
    )
    if not table_exists(con, raw_table):
        return empty
    cols = set(table_columns(con, raw_table))
    if not {"item_id", "annotator", "label"} <= cols:
        return empty
    criterion = "coalesce(nullif(trim(CAST(criterion AS VARCHAR)), ''), 'overall')" if "criterion" in cols else "'overall'"
    labels = "[" + ", ".join(f"'{v}'" for v in GOOD + BAD) + "]"
    frame = con.execute(
        f"""
        WITH g AS (
            SELECT CAST(item_id AS VARCHAR) AS item_id, {criterion} AS criterion, CAST(annotator AS VARCHAR) AS grader,
                   CAST(label AS VARCHAR) AS grade, list_contains(?, lower(trim(CAST(label AS VARCHAR)))) AS bad,
                   batch_id, CAST(source_row AS BIGINT) AS source_row, CAST(ingested_at AS TIMESTAMP) AS ingested_at
            FROM {raw_table}
            WHERE label IS NOT NULL AND item_id IS NOT NULL AND annotator IS NOT NULL
              AND list_contains({labels}, lower(trim(CAST(label AS VARCHAR))))
        ),
        batches AS (
            SELECT batch_id, row_number() OVER (ORDER BY min(ingested_at), batch_id) AS batch_number FROM g GROUP BY batch_id
        )
        SELECT g.*, row_number() OVER (ORDER BY ingested_at, g.batch_id, source_row) AS seq, b.batch_number,
               row_number() OVER (PARTITION BY item_id, criterion, grader ORDER BY ingested_at DESC, g.batch_id DESC, source_row DESC) AS grade_rank,
               count(*) OVER (PARTITION BY item_id, criterion, grader) AS n_grades
        FROM g JOIN batches b USING (batch_id)
        ORDER BY seq
        """,
        [list(BAD)],
    ).df()
    return frame[GRADE_COLUMNS] if len(frame) else empty


def latest_grades(rows: pd.DataFrame) -> pd.DataFrame:
    """The ``grades`` table: one row per (item_id, criterion, grader), the grade that counts, with
    ``n_grades``, ``previous_grade`` (the grade it replaced, NULL when first) and ``changed``
    (the replaced grade said the other thing: good ↔ bad)."""
    ordered = rows.sort_values("seq")
    previous = ordered[ordered["grade_rank"] == 2][["item_id", "criterion", "grader", "grade", "bad"]]
    previous = previous.rename(columns={"grade": "previous_grade", "bad": "previous_bad"})
    latest = ordered[ordered["grade_rank"] == 1].merge(previous, on=["item_id", "criterion", "grader"], how="left")
    latest["changed"] = latest["previous_bad"].notna() & (latest["previous_bad"].astype("boolean") != latest["bad"]).fillna(False).astype(bool)
    columns = ["item_id", "criterion", "grader", "grade", "bad", "batch_id", "batch_number", "source_row", "n_grades", "previous_grade", "changed"]
    out = latest.reindex(columns=columns).sort_values(["item_id", "criterion", "grader"]).reset_index(drop=True)
    return out.astype({"previous_grade": "object", "changed": "bool"})


def regrade_counts(rows: pd.DataFrame) -> dict[str, int]:
    """How many grades were replaced by a later grade of the same grader on the same output and
    criterion (``regraded``), and how many of those keys now say the other thing (``label_changed``:
    the grade that counts differs from the one before it)."""
    latest = latest_grades(rows) if len(rows) else pd.DataFrame(columns=["n_grades", "changed"])
    return {"regraded": int((rows["grade_rank"] > 1).sum()) if len(rows) else 0, "label_changed": int(latest["changed"].sum())}
