"""Group ``criteria``: criteria and assertions aligned with human grades (the EvalGen loop).

``grades`` (human grades on single outputs, keyed by output, criterion and grader; the last grade
counts) → ``assertion_verdicts`` (every output × assertion of the criteria file: code assertions in
DuckDB over ``items``, LLM assertions by the named single-output judge) → ``assertion_report`` (the
report card: per assertion, per criterion with its selected variant, and the selected set) →
``assertion_report_history`` (the same per grading batch, with drift) → ``regrade_candidates``.

The criteria file is ``JUDGE_CRITERIA_FILE`` (default ``criteria.yaml`` in the project root); the
format is in :mod:`judge_assets.core.scoring.criteria`, the metrics in
:mod:`judge_assets.core.reports.alignment`. Why grades are not read from ``judgments``: its vote
key is (item_id, annotator), so two criteria graded by one grader on one output would collapse
into one vote there.
"""


import time

import dagster as dg
import numpy as np
import pandas as pd

from judge_assets.config import criteria_file, resolve_path
from judge_assets.core.db import replace_table, table_exists
from judge_assets.core.plots import plot_alignment_history
from judge_assets.core.reports import alignment as al
from judge_assets.core.scoring.criteria import (
    ASSERTION_VIEW,
    VERDICT_COLUMNS,
    CriteriaError,
    create_assertion_view,
    llm_verdicts,
    load_criteria,
    run_code_assertions,
    validate_against_table,
    validate_llm_assertions,
)
from judge_assets.core.scoring.llm_judge import EndpointError, JudgeSpecError, MissingColumnError, score_items
from judge_assets.core.scoring.llm_judge.specs import available_judges, load_judge
from judge_assets.defs.metadata import frame_markdown, number, plot_metadata, table_metadata
from judge_assets.defs.resources import JudgeDuckDBResource, LLMJudgeResource
from judge_assets.defs.tables import table_asset

GROUP = "criteria"
NO_FILE_NOTE = (
    "no criteria file at {path}: write one (criteria, each with code assertions `sql: <DuckDB boolean expression over "
    "items>` and/or LLM assertions `judge: pass-fail`; see the README, 'Criteria and assertions') or point "
    "JUDGE_CRITERIA_FILE at it, then re-materialize the criteria group"
)
LEVELS = ("assertion", "criterion", "selected set")
REPORT_TABLE_COLUMNS = ["level", *al.REPORT_COLUMNS]


class CriteriaFileConfig(dg.Config):
    """Which criteria file to read (launchpad-editable)."""

    criteria_file: str = ""
    """Path of the criteria YAML file; empty = JUDGE_CRITERIA_FILE (default criteria.yaml in the project root)."""


class AlignmentConfig(dg.Config):
    """Milestones and selection of the assertion report card (launchpad-editable)."""

    min_graded: int = al.MIN_GRADED
    """Below this many graded outputs an assertion shows 'needs N more grades' instead of numbers."""
    select_at: int = al.SELECT_AT
    """Variants are selected from this many graded outputs on."""
    ffr_budget: float = al.FFR_BUDGET
    """A selected variant fails at most this share of the GOOD outputs (false failure rate)."""
    drift_margin: float = al.DRIFT_MARGIN
    """A criterion drifts when its best alignment falls by more than this from one grading batch to the next."""

    def options(self) -> dict:
        return {"min_graded": self.min_graded, "select_at": self.select_at, "ffr_budget": self.ffr_budget}


# --- grades ------------------------------------------------------------------------------------


@table_asset(GROUP, deps=["raw_judgments"], kinds=("duckdb", "python"))
def grades(context: dg.AssetExecutionContext, duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    """Human grades on single outputs: one row per (item_id = the output, criterion, grader) with the
    grade that counts (the last one: latest ingestion, then later batch, then later row), read from
    the generic rows of raw_judgments whose label is good/bad or pass/fail (criterion 'overall' when
    the row names none). Columns: item_id, criterion, grader, grade, bad, batch_id, batch_number
    (1 = the first grading batch), source_row, n_grades (grades this key received), previous_grade
    (the grade the last one replaced), changed (that one said the other thing). Keyed apart from
    judgments, whose (item_id, annotator) key would merge two criteria graded by one grader."""
    with duckdb.get_connection() as con:
        rows = al.grade_rows(con)
        latest = al.latest_grades(rows)
        replace_table(con, "grades", latest)
        metadata = table_metadata(con, "grades", order_by="batch_number, item_id, criterion, grader")
    counts = al.regrade_counts(rows)
    metadata.update({
        "grade_rows": len(rows),
        "graded_outputs": int(latest["item_id"].nunique()),
        "graders": int(latest["grader"].nunique()),
        "criteria_graded": ", ".join(sorted(latest["criterion"].unique())) or "none",
        "regraded": counts["regraded"],
        "label_changed": counts["label_changed"],
        "grading_batches": int(rows["batch_number"].max()) if len(rows) else 0,
    })
    if rows.empty:
        metadata["note"] = dg.MetadataValue.text("no grades: no raw row has a good/bad or pass/fail label (generic schema)")
    context.log.info(f"grades: {len(latest)} counting, re-graded {counts['regraded']}, label changed {counts['label_changed']}")
    return dg.MaterializeResult(metadata=metadata)


# --- verdicts ----------------------------------------------------------------------------------


def _empty_verdicts() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in VERDICT_COLUMNS})
    return frame.astype({"passed": "boolean", "failed": "boolean"})


def _criteria_path(config: CriteriaFileConfig):
    return resolve_path(config.criteria_file) if config.criteria_file.strip() else criteria_file()


@table_asset(GROUP, deps=["items"], kinds=("duckdb", "python", "openai"))
def assertion_verdicts(
    context: dg.AssetExecutionContext, config: CriteriaFileConfig, duckdb: JudgeDuckDBResource, llm_judge: LLMJudgeResource
) -> dg.MaterializeResult:
    """One row per output × assertion of the criteria file (JUDGE_CRITERIA_FILE): code assertions are
    DuckDB boolean expressions over items (texts as plain strings: response, prompt, …); LLM
    assertions are scored by the named single-output judge with the criterion's description as its
    {criterion}, through the LLM judge's cache (the first model of the panel). Columns: item_id,
    criterion, assertion, kind (code/llm), judge, model, status (ok, null = the expression is NULL,
    an LLM status, or 'not run: …'), passed, failed (NULL when not decided). The whole file is
    checked first — a malformed expression, an unknown column or judge fails the asset with the
    criterion named and nothing stored changes. No file: an empty table with a note."""
    path = _criteria_path(config)
    with duckdb.get_connection() as con:
        if not path.exists():
            replace_table(con, "assertion_verdicts", _empty_verdicts())
            note = NO_FILE_NOTE.format(path=path)
            context.log.info(note)
            return dg.MaterializeResult(metadata={**table_metadata(con, "assertion_verdicts"), "note": dg.MetadataValue.text(note)})
        try:  # everything is checked before anything runs or is stored
            criteria = load_criteria(path)
            create_assertion_view(con, "items")
            validate_against_table(con, criteria, ASSERTION_VIEW, str(path))
            judges = {name: load_judge(p) for name, p in available_judges(resolve_path(llm_judge.judges_dir)).items()}
            validate_llm_assertions(criteria, judges, str(path), al.GOOD, al.BAD)
        except (CriteriaError, JudgeSpecError) as exc:
            raise dg.Failure(description=str(exc)) from None
        code = run_code_assertions(con, criteria, ASSERTION_VIEW)
        code = code.assign(judge=None, model=None, status=np.where(code["passed"].isna(), "null", "ok"))
        frames = [code[VERDICT_COLUMNS].astype({"passed": "boolean", "failed": "boolean"})]
        llm = [(c, a) for c in criteria for a in c.assertions if a.judge is not None]
        stats_rows, model = [], None
        if llm:
            items = con.execute("SELECT * FROM items ORDER BY item_id").df()
            if not llm_judge.is_configured:
                for criterion, assertion in llm:
                    frames.append(pd.DataFrame({
                        "item_id": items["item_id"], "criterion": criterion.name, "assertion": assertion.name, "kind": "llm",
                        "judge": assertion.judge, "model": None, "status": "not run: no LLM endpoint configured",
                        "passed": pd.Series([pd.NA] * len(items), dtype="boolean"), "failed": pd.Series([pd.NA] * len(items), dtype="boolean"),
                    }))
            else:
                config_llm = llm_judge.to_configs()[0]
                model = config_llm.model
                for criterion, assertion in llm:
                    last = [0.0]

                    def progress(done: int, total: int, name: str = assertion.name) -> None:
                        if done == total or time.monotonic() - last[0] > 5:
                            last[0] = time.monotonic()
                            context.log.info(f"LLM assertion {name}: {done}/{total} requests done")

                    try:
                        scores, stats = score_items(con, items.assign(criterion=criterion.description), config_llm, progress, judges[assertion.judge])
                    except MissingColumnError as exc:
                        raise dg.Failure(description=f"{path}, criterion {criterion.name!r}, assertion {assertion.name!r}: {exc}") from None
                    except EndpointError as exc:
                        raise dg.Failure(description=str(exc), metadata={"endpoint_host": config_llm.endpoint_host}) from None
                    frames.append(llm_verdicts(scores, criterion.name, assertion.name, al.BAD))
                    stats_rows.append({"assertion": f"{criterion.name}/{assertion.name}", "judge": assertion.judge,
                                       "calls_made": stats.calls_made, "cache_hits": stats.cache_hits})
        verdicts = pd.concat(frames, ignore_index=True)
        replace_table(con, "assertion_verdicts", verdicts)
        metadata = table_metadata(con, "assertion_verdicts")
        per_assertion = con.execute(
            "SELECT criterion, assertion, kind, count(*) AS outputs, count(*) FILTER (WHERE failed) AS failed, "
            "count(*) FILTER (WHERE failed IS NULL) AS undecided, mode(status) AS status FROM assertion_verdicts GROUP BY ALL ORDER BY 1, 2"
        ).df()
    metadata.update({
        "criteria_file": str(path),
        "criteria": len(criteria),
        "assertions": dg.MetadataValue.md(frame_markdown(per_assertion, 100)),
        "llm_model": model or "none",
    })
    if stats_rows:
        metadata["llm_calls_made"] = sum(r["calls_made"] for r in stats_rows)
        metadata["llm_cache_hits"] = sum(r["cache_hits"] for r in stats_rows)
    if llm and model is None:
        metadata["note"] = dg.MetadataValue.text(
            "LLM assertions not run: no LLM endpoint configured (JUDGE_LLM_BASE_URL and JUDGE_LLM_MODEL, or JUDGE_PANEL)"
        )
    return dg.MaterializeResult(metadata=metadata)


# --- the report card ---------------------------------------------------------------------------


def _read_verdicts(con) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(decided verdicts for the report, every assertion with its most common status)."""
    everything = con.execute("SELECT item_id, criterion, assertion, kind, status, failed FROM assertion_verdicts").df()
    decided = everything[everything["failed"].notna()].astype({"failed": bool})
    statuses = everything.groupby(["criterion", "assertion", "kind"])["status"].agg(lambda s: s.mode().iloc[0]).reset_index()
    return decided, statuses


def _read_grades(con) -> pd.DataFrame:
    graded = con.execute("SELECT item_id, grader, criterion, grade, row_number() OVER () AS seq FROM grades").df()
    return al.output_grades(graded) if len(graded) else pd.DataFrame(columns=["item_id", "criterion", "bad", "n_graders"])


def report_table(decided: pd.DataFrame, statuses: pd.DataFrame, graded: pd.DataFrame, options: dict) -> pd.DataFrame:
    """The ``assertion_report`` table: ``level`` = assertion (one row per variant), criterion (the
    selected variant's numbers, or the criterion's status), selected set (the selected variants
    together: an output fails when any of them fails it)."""
    if len(decided):
        report, selection = al.alignment_report(decided, graded, **options)
    else:
        report, selection = pd.DataFrame(columns=al.REPORT_COLUMNS), pd.DataFrame(columns=["criterion", "selected_assertion", "status"])
    report = report.assign(level="assertion")
    done = set(zip(report["criterion"], report["assertion"]))
    not_run = statuses[[(c, a) not in done for c, a in zip(statuses["criterion"], statuses["assertion"])]]
    if len(not_run):
        missing = not_run.assign(level="assertion", selected=False, status=not_run["status"].map(
            lambda s: s if str(s).startswith("not run") else f"not run: {s}"), n_graded=0)
        report = pd.concat([report, missing], ignore_index=True)
    metrics = [c for c in al.REPORT_COLUMNS if c not in ("criterion", "assertion", "kind", "status", "selected")]
    rows = []
    for criterion in sorted(set(report["criterion"])):
        picked = selection[selection["criterion"] == criterion]
        own = report[report["criterion"] == criterion]
        if len(picked) and picked["status"].iloc[0] == "selected":
            best = own[own["selected"].astype(bool)].iloc[0]
            rows.append({**best.to_dict(), "level": "criterion", "status": "selected"})
        else:
            status = picked["status"].iloc[0] if len(picked) else own["status"].iloc[0]
            rows.append({"level": "criterion", "criterion": criterion, "assertion": None, "kind": None, "status": status, "selected": False})
    whole = selection[selection["criterion"] == al.SELECTED_SET]
    if len(whole):
        row = whole.iloc[0]
        rows.append({"level": "selected set", "criterion": al.SELECTED_SET, "assertion": row["selected_assertion"], "kind": None,
                     "status": "selected", "selected": True, **{m: row.get(m) for m in metrics}})
    table = pd.concat([report, pd.DataFrame(rows)], ignore_index=True).reindex(columns=REPORT_TABLE_COLUMNS)
    table["_order"] = table["level"].map({level: i for i, level in enumerate(LEVELS)})
    table = table.sort_values(["_order", "criterion", "assertion"], na_position="first").drop(columns="_order").reset_index(drop=True)
    return _typed(table)


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    text = ("level", "criterion", "assertion", "kind", "status", "batch_id")
    types = {c: ("object" if c in text else "bool" if c in ("selected", "drift") else "float64") for c in table.columns}
    for column in ("n_graded", "n_bad", "n_good", "batch_number"):
        if column in types:
            types[column] = "Int64"
    table = table.copy()
    for column in ("selected", "drift"):
        if column in table:
            table[column] = table[column].fillna(False).astype(bool)
    for column, dtype in types.items():
        if dtype in ("float64", "Int64"):
            table[column] = pd.to_numeric(table[column], errors="coerce")
    return table.astype(types)


def _milestone(graded: pd.DataFrame, options: dict) -> str:
    n = int(graded["item_id"].nunique()) if len(graded) else 0
    if n < options["min_graded"]:
        return f"needs {options['min_graded'] - n} more grades ({n} graded outputs; numbers from {options['min_graded']})"
    if n < options["select_at"]:
        return f"evaluated on {n} graded outputs; selection starts at {options['select_at']}"
    return f"{n} graded outputs: variants selected within the false failure budget {options['ffr_budget']}"


@table_asset(GROUP, deps=["assertion_verdicts", "grades"], kinds=("duckdb", "python"))
def assertion_report(context: dg.AssetExecutionContext, config: AlignmentConfig, duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    """The assertion report card against the human grades (per criterion, else the overall grades):
    level 'assertion' = one row per variant (coverage = bad outputs it fails; false_failure_rate =
    good outputs it fails, the paper's definition; failure_precision and false_failure_share =
    1 − precision, the talk's reading; alignment = harmonic mean of coverage and 1 − FFR; 95%
    Wilson / bootstrap intervals); level 'criterion' = its selected variant (best alignment within
    the FFR budget) or why none is; level 'selected set' = the selected variants together.
    Milestones: below min_graded (20) graded outputs the status is 'needs N more grades' and there
    are no numbers; selection starts at select_at (50)."""
    options = config.options()
    with duckdb.get_connection() as con:
        decided, statuses = _read_verdicts(con)
        graded = _read_grades(con)
        table = report_table(decided, statuses, graded, options)
        replace_table(con, "assertion_report", table)
        metadata = table_metadata(con, "assertion_report", preview_rows=50)
    status = _milestone(graded, options)
    card = table[table["level"] != "assertion"][["level", "criterion", "assertion", "status", "n_graded", "coverage",
                                                 "false_failure_rate", "failure_precision", "alignment"]]
    metadata.update({
        "status": status,
        "graded_outputs": int(graded["item_id"].nunique()) if len(graded) else 0,
        "report_card": dg.MetadataValue.md(frame_markdown(card, 50)),
        "selected": ", ".join(f"{c}: {a}" for c, a in table.loc[(table["level"] == "criterion") & table["selected"], ["criterion", "assertion"]].itertuples(index=False)) or "none",
        **{k: v for k, v in options.items()},
    })
    chosen = table[table["level"] == "selected set"]
    if len(chosen):
        for column in ("coverage", "false_failure_rate", "alignment"):
            metadata[f"selected_set_{column}"] = number(chosen[column].iloc[0])
    if statuses.empty:
        metadata["note"] = dg.MetadataValue.text("no assertions: see assertion_verdicts (is there a criteria file?)")
    context.log.info(f"assertion report: {status}")
    return dg.MaterializeResult(metadata=metadata)


@table_asset(GROUP, deps=["assertion_verdicts", "grades", "raw_judgments"], kinds=("duckdb", "python"))
def assertion_report_history(context: dg.AssetExecutionContext, config: AlignmentConfig, duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    """The report card per grading batch: one row per assertion per batch, from the grades up to and
    including that batch (a re-grade replaces the earlier grade from its batch on), so coverage,
    false failure rate and alignment can be plotted as grades accumulate. Columns: batch_number,
    batch_id, the assertion_report columns, criterion_alignment (the criterion's best alignment at
    that batch) and drift (it fell by more than drift_margin since the previous batch)."""
    options = config.options()
    with duckdb.get_connection() as con:
        decided, _ = _read_verdicts(con)
        rows = al.grade_rows(con)
        if len(decided) and len(rows):
            order = rows.drop_duplicates("batch_number").sort_values("batch_number")["batch_id"].tolist()
            history = al.alignment_history(decided, rows, order, drift_margin=config.drift_margin, **options)
        else:
            history = pd.DataFrame()
        columns = ["batch_number", "batch_id", *al.REPORT_COLUMNS, "criterion_alignment", "drift"]
        history = _typed(history.reindex(columns=columns)) if len(history) else _typed(pd.DataFrame(columns=columns))
        replace_table(con, "assertion_report_history", history)
        metadata = table_metadata(con, "assertion_report_history", preview_rows=30, order_by="batch_number, criterion, assertion")
    drifting = history[history["drift"]][["criterion", "batch_number"]].drop_duplicates()
    metadata.update({
        "grading_batches": int(history["batch_number"].max()) if len(history) else 0,
        "drift": ", ".join(f"{c} at batch {b}" for c, b in drifting.itertuples(index=False)) or "none",
        "drift_margin": config.drift_margin,
    })
    if len(history):
        metadata["plot"] = plot_metadata(plot_alignment_history(history))
    else:  # no plot to look at (and no plotting library to load in every ingest of data without grades)
        metadata["note"] = dg.MetadataValue.text("no history yet: it needs grades and assertion verdicts (see assertion_verdicts)")
    return dg.MaterializeResult(metadata=metadata)


@table_asset(GROUP, deps=["assertion_report", "assertion_verdicts", "grades", "items"], kinds=("duckdb", "python"))
def regrade_candidates(context: dg.AssetExecutionContext, config: AlignmentConfig, duckdb: JudgeDuckDBResource) -> dg.MaterializeResult:
    """Earlier grades worth a second look (graders drift as they see more outputs): score = ½·(the
    selected set disagrees with the grade) + ½·(similarity-weighted share of the most similar outputs
    graded in LATER batches whose grade differs; TF-IDF cosine), top 50. Columns: item_id, bad,
    batch_number, assertions_disagree, later_neighbours_disagree, score. Empty until a set is selected."""
    columns = ["item_id", "bad", "batch_number", "assertions_disagree", "later_neighbours_disagree", "score"]
    with duckdb.get_connection() as con:
        selected = con.execute(
            "SELECT criterion, assertion FROM assertion_report WHERE level = 'assertion' AND selected"
        ).df() if table_exists(con, "assertion_report") else pd.DataFrame(columns=["criterion", "assertion"])
        note = None
        if selected.empty:
            out = pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(columns, ["object", "bool", "int64", "bool", "float64", "float64"])})
            note = f"no selected set yet (selection starts at {config.select_at} graded outputs)"
        else:
            decided, _ = _read_verdicts(con)
            picked = decided.merge(selected, on=["criterion", "assertion"])
            set_failed = picked.groupby("item_id")["failed"].any()
            latest = con.execute("SELECT item_id, criterion, bad, batch_number FROM grades").df()
            overall = latest[latest["criterion"] == al.OVERALL]
            source = overall if len(overall) else latest
            graded_rows = source.groupby("item_id").agg(bad=("bad", "mean"), batch_number=("batch_number", "max")).reset_index()
            graded_rows["bad"] = graded_rows["bad"] >= 0.5  # majority of graders; a tie is bad (as in output_grades)
            create_assertion_view(con, "items")
            texts = con.execute(f"SELECT item_id, response FROM {ASSERTION_VIEW}").df().set_index("item_id")["response"]
            out = al.regrade_candidates(graded_rows, set_failed, texts)
        replace_table(con, "regrade_candidates", out)
        metadata = table_metadata(con, "regrade_candidates", preview_rows=20)
    if note:
        metadata["note"] = dg.MetadataValue.text(note)
    return dg.MaterializeResult(metadata=metadata)


CRITERIA_ASSETS = [grades, assertion_verdicts, assertion_report, assertion_report_history, regrade_candidates]
