"""LLM-judge report card: how well each LLM judge matches the humans.

Two views, both in one tidy long table (:func:`judge_report_card`):

- against the *human-only* CROWDLAB consensus (``human_consensus_labels``, computed without any
  LLM judge, so no circularity): accuracy, Cohen's kappa, MCC, per-class precision / recall,
  confusion counts (scikit-learn), and for binary pass/fail label sets EvalGen's coverage
  (recall of fails) and false-failure rate (share of passes the judge fails);
- against individual human votes, the FastChat way (``fastchat/llm_judge/compute_agreement.py``):
  over every pair of votes on the same item by a judge and a human (or two different humans),
  the share of equal votes; "without ties" drops pairs where either vote is a tie.

A third view, the judge leaderboard (:func:`judge_leaderboard`, ``reference =
'judge_leaderboard'``): per LLM panel judge and model, agreement with the human consensus,
position and length bias, parse rate, calls, tokens, seconds and dollars per 1,000 items.

Report card columns: ``judge`` (annotator name — an LLM panel judge is ``<judge>:<model>`` —,
``human`` for the human–human row), ``reference`` ('human_consensus' | 'human_votes' |
'judge_leaderboard'),
``scope`` ('all' or 'turn=<t>'), ``metric``, ``class_label`` (the class of a per-class metric,
the true class of a confusion cell), ``predicted_label`` (the judge's class of a confusion cell),
``value``, ``n`` (items or vote pairs behind the value), ``paper_value`` (the MT-Bench paper's
first-turn figure, on the ``turn=1`` FastChat rows of ``gpt4_pair`` and ``human`` when the
humans are MT-Bench's ``expert_*`` judges). On the
bundled data the FastChat rows reproduce the paper: 66% / 85% (judge–expert) and 63% / 81%
(expert–expert) on the first turn.
"""

from __future__ import annotations

import warnings

import duckdb
import numpy as np
import pandas as pd

#: MT-Bench paper (Zheng et al. 2023, Table 2, first turn): agreement with / without ties.
PAPER_AGREEMENT: dict[tuple[str, str], float] = {
    ("gpt4_pair", "agreement_with_ties"): 0.66,
    ("gpt4_pair", "agreement_without_ties"): 0.85,
    ("human", "agreement_with_ties"): 0.63,
    ("human", "agreement_without_ties"): 0.81,
}
FAIL_LIKE = ("fail", "failed", "failure", "bad", "no", "false", "reject", "rejected", "incorrect", "0")
REPORT_COLUMNS = ["judge", "reference", "scope", "metric", "class_label", "predicted_label", "value", "n", "paper_value"]


def fastchat_agreement(
    votes: pd.DataFrame,
    group1: list[str],
    group2: list[str] | None = None,
    *,
    tie_label: str = "tie",
    by: str | None = None,
) -> pd.DataFrame:
    """FastChat-style pairwise agreement, computed by a DuckDB self-join.

    ``votes``: long frame ``item_id, annotator, label`` (+ the ``by`` column, e.g. ``turn``);
    labels in one canonical orientation per item. Pairs: (a vote of ``group1``, a vote of
    ``group2``) on the same item, or, when ``group2`` is None, every unordered pair of votes by
    two different ``group1`` annotators. The groups must not overlap.

    Returns one row per (``by`` value,) ``ties`` ('with' | 'without'): ``n_pairs``,
    ``n_agree``, ``agreement`` (NaN when there is no pair).
    """
    missing = {"item_id", "annotator", "label"} - set(votes.columns)
    if missing:
        raise ValueError(f"votes lacks column(s) {sorted(missing)}")
    if group2 is not None and set(group1) & set(group2):
        raise ValueError(f"fastchat_agreement: groups overlap on {sorted(set(group1) & set(group2))[:5]}")
    members = pd.DataFrame(
        {
            "annotator": list(group1) + list(group2 or []),
            "g": [1] * len(group1) + [2] * len(group2 or []),
        }
    )
    cols = ["item_id", "annotator", "label"] + ([by] if by else [])
    con = duckdb.connect()
    try:
        con.register("v_in", votes[cols])
        con.register("members", members)
        second = 2 if group2 is not None else 1
        order = "" if group2 is not None else "AND a.annotator < b.annotator"
        group_sel = "a.by_value," if by else ""
        by_expr = 'a."' + by.replace('"', '""') + '" AS by_value,' if by else ""
        rows = con.execute(
            f"""
            WITH v AS (
                SELECT {by_expr} a.item_id, a.annotator, a.label, m.g
                FROM v_in a JOIN members m USING (annotator)
            ),
            pairs AS (
                SELECT {group_sel} a.label AS l1, b.label AS l2
                FROM v a JOIN v b
                  ON a.item_id = b.item_id AND a.annotator <> b.annotator {order}
                WHERE a.g = 1 AND b.g = {second}
            )
            SELECT {'by_value,' if by else ''}
                count(*) AS n_with, count(*) FILTER (WHERE l1 = l2) AS agree_with,
                count(*) FILTER (WHERE l1 <> ? AND l2 <> ?) AS n_without,
                count(*) FILTER (WHERE l1 = l2 AND l1 <> ?) AS agree_without
            FROM pairs {'GROUP BY by_value ORDER BY by_value' if by else ''}
            """,
            [tie_label, tie_label, tie_label],
        ).df()
    finally:
        con.close()
    out = []
    for _, row in rows.iterrows():
        for ties, n, agree in (("with", row["n_with"], row["agree_with"]), ("without", row["n_without"], row["agree_without"])):
            rec = {by: row["by_value"]} if by else {}
            rec.update(ties=ties, n_pairs=int(n), n_agree=int(agree), agreement=agree / n if n else np.nan)
            out.append(rec)
    return pd.DataFrame(out, columns=([by] if by else []) + ["ties", "n_pairs", "n_agree", "agreement"])


def fail_class(classes: tuple[str, ...]) -> str | None:
    """The 'fail'-like class of a binary label set (case-insensitive match), else None."""
    if len(classes) != 2:
        return None
    for c in classes:
        if str(c).strip().lower() in FAIL_LIKE:
            return c
    return None


def judge_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: tuple[str, ...]) -> pd.DataFrame:
    """Agreement of judge labels ``y_pred`` with reference labels ``y_true`` (both shape (n,), class names).

    Rows ``metric, class_label, predicted_label, value, n``: ``accuracy``, ``cohen_kappa``,
    ``mcc``; ``precision`` / ``recall`` / ``support`` per class; ``confusion`` per (true,
    predicted) cell (a count); for binary pass/fail sets ``coverage`` (recall of the fail class)
    and ``false_failure_rate`` (share of reference passes the judge fails).
    """
    from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, matthews_corrcoef, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels, y_pred {len(y_pred)}")
    n = len(y_true)
    labels = list(classes)
    rows: list[tuple] = []
    if n == 0:
        return pd.DataFrame(rows, columns=["metric", "class_label", "predicted_label", "value", "n"])
    # integer codes (classes first, any other value its own code): the same metrics, without
    # sklearn sorting object arrays of strings (seconds at a million votes)
    codes = pd.factorize(np.concatenate([np.asarray(labels, dtype=object), y_true, y_pred]), use_na_sentinel=False)[0]
    true_codes, pred_codes, label_codes = codes[len(labels):len(labels) + n], codes[len(labels) + n:], list(range(len(labels)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows.append(("accuracy", None, None, float(accuracy_score(true_codes, pred_codes)), n))
        rows.append(("cohen_kappa", None, None, float(cohen_kappa_score(true_codes, pred_codes, labels=label_codes)), n))
        rows.append(("mcc", None, None, float(matthews_corrcoef(true_codes, pred_codes)), n))
        precision, recall, _, support = precision_recall_fscore_support(true_codes, pred_codes, labels=label_codes, zero_division=np.nan)
    predicted = np.bincount(pred_codes, minlength=len(labels))[: len(labels)].tolist()
    for c, p, r, s, k in zip(labels, precision, recall, support, predicted):
        rows.append(("precision", c, None, float(p), k))
        rows.append(("recall", c, None, float(r), int(s)))
        rows.append(("support", c, None, float(s), n))
    cm = confusion_matrix(true_codes, pred_codes, labels=label_codes)
    for i, t in enumerate(labels):
        for j, p in enumerate(labels):
            rows.append(("confusion", t, p, float(cm[i, j]), n))
    fail = fail_class(tuple(classes))
    if fail is not None:
        fails = y_true == fail
        passes = ~fails
        rows.append(("coverage", fail, None, float((y_pred[fails] == fail).mean()) if fails.any() else np.nan, int(fails.sum())))
        rows.append(("false_failure_rate", fail, None, float((y_pred[passes] == fail).mean()) if passes.any() else np.nan, int(passes.sum())))
    return pd.DataFrame(rows, columns=["metric", "class_label", "predicted_label", "value", "n"])


LEADERBOARD_METRICS = (
    "items_scored", "agreement_with_human_consensus", "p_first_position", "p_longer_output", "parse_rate", "calls",
    "tokens", "seconds_per_1000_items", "usd_per_1000_items",
)


def judge_leaderboard(llm_judge_scores: pd.DataFrame | None, human_consensus: pd.DataFrame, classes: tuple[str, ...]) -> list[dict]:
    """Report-card rows (``reference = 'judge_leaderboard'``, ``scope = 'all'``) for every
    ``<judge>:<model>`` of ``llm_judge_scores``, where they apply:

    - ``items_scored``: items with status ``ok`` (``n`` = items the judge was sent for);
    - ``agreement_with_human_consensus``: share of verdicts equal to ``human_consensus_label``
      (judges whose verdicts are labels of the class set; the human-only consensus never saw them);
    - ``p_first_position``: pairwise, share of decisive per-order verdicts for the output shown
      first (:func:`~judge_assets.core.scoring.llm_judge.first_position_preference`; 0.5 = no bias);
    - ``p_longer_output``: pairwise, share of decisive verdicts (A or B) for the longer output;
    - ``parse_rate``: answers holding a label token / answers (``n`` = answers);
    - ``calls`` (requests sent, retries included), ``tokens`` (prompt + completion), both counted
      whenever they were paid (cache hits keep their cost); ``seconds_per_1000_items`` (summed
      request time per 1,000 items sent); ``usd_per_1000_items`` when prices are configured.
    """
    from judge_assets.core.scoring.llm_judge import first_position_preference

    rows: list[dict] = []
    if llm_judge_scores is None or llm_judge_scores.empty or "annotator" not in llm_judge_scores.columns:
        return rows
    reference = human_consensus.set_index("item_id")["human_consensus_label"]
    for annotator, frame in llm_judge_scores.groupby("annotator", sort=True):
        sent = frame[~frame["status"].str.startswith("skipped")]
        ok = sent[sent["status"] == "ok"]
        n_sent = len(sent)
        values: dict[str, tuple[float, int]] = {"items_scored": (float(len(ok)), n_sent)}
        judged = ok[ok["item_id"].isin(reference.index) & ok["verdict"].notna()]
        if set(frame["verdict_labels"].iloc[0]) <= set(classes) and len(judged):
            agree = (judged["verdict"].to_numpy() == reference.loc[judged["item_id"]].to_numpy()).mean()
            values["agreement_with_human_consensus"] = (float(agree), len(judged))
        if (frame["shape"] == "pairwise").all() and len(ok):
            values["p_first_position"] = (first_position_preference(ok), len(ok))
            decisive = ok[ok["verdict"].isin(["A", "B"]) & ok["longer_output"].notna()]
            if len(decisive):
                values["p_longer_output"] = (float((decisive["verdict"] == decisive["longer_output"]).mean()), len(decisive))
        answers = int(sent["n_answers"].sum())
        if answers:
            values["parse_rate"] = (float(sent["n_orders"].sum() / answers), answers)
        values["calls"] = (float(sent["attempts"].sum()), n_sent)
        values["tokens"] = (float(sent["prompt_tokens"].sum() + sent["completion_tokens"].sum()), n_sent)
        if n_sent:
            values["seconds_per_1000_items"] = (float(sent["latency_s"].sum() / n_sent * 1000), n_sent)
            if sent["cost_usd"].notna().any():
                values["usd_per_1000_items"] = (float(sent["cost_usd"].sum() / n_sent * 1000), n_sent)
        for metric in LEADERBOARD_METRICS:
            if metric in values:
                value, n = values[metric]
                rows.append(dict(judge=annotator, reference="judge_leaderboard", scope="all", metric=metric, class_label=None,
                                 predicted_label=None, value=value, n=int(n), paper_value=None))
    return rows


def _agreement_rows(
    votes: pd.DataFrame, judge: str, group1: list[str], group2: list[str] | None, tie_label: str, paper: bool
) -> list[dict]:
    rows = []
    scopes = [("all", None)] + ([("turn", "turn")] if "turn" in votes.columns and votes["turn"].notna().all() else [])
    for scope, by in scopes:
        table = fastchat_agreement(votes, group1, group2, tie_label=tie_label, by=by)
        for _, r in table.iterrows():
            metric = f"agreement_{r['ties']}_ties"
            scope_name = "all" if by is None else f"turn={int(r[by])}"
            paper_value = PAPER_AGREEMENT.get((judge, metric)) if paper and scope_name == "turn=1" else None
            rows.append(
                dict(judge=judge, reference="human_votes", scope=scope_name, metric=metric, class_label=None,
                     predicted_label=None, value=r["agreement"], n=r["n_pairs"], paper_value=paper_value)
            )
    return rows


def judge_report_card(
    judgments: pd.DataFrame,
    human_consensus: pd.DataFrame,
    classes: tuple[str, ...],
    llm_annotators: list[str],
    *,
    llm_judge_scores: pd.DataFrame | None = None,
    agreement_humans: list[str] | None = None,
    tie_label: str = "tie",
) -> pd.DataFrame:
    """The report card (long format, columns in the module docstring).

    ``judgments``: ``item_id, annotator, annotator_kind, label`` (+ ``turn``), already restricted
    to ``classes``. ``human_consensus``: ``item_id, human_consensus_label``. ``llm_annotators``:
    LLM judges to score (the LLM judge panel's ``<judge>:<model>`` annotators among them: their
    verdicts are votes in ``judgments``). ``llm_judge_scores``: optional ``llm_judge_scores`` rows,
    for the leaderboard rows (:func:`judge_leaderboard`). ``agreement_humans``: the humans of the FastChat
    agreement rows; default: the ``expert_*`` annotators when there are any (FastChat's "human"
    excludes the paper's authors), else every human.
    """
    classes = tuple(classes)
    all_humans = sorted(judgments.loc[judgments["annotator_kind"] == "human", "annotator"].unique())
    experts = [a for a in all_humans if str(a).startswith("expert_")]
    if agreement_humans is None:
        agreement_humans = experts or all_humans
    paper = bool(experts) and sorted(agreement_humans) == experts  # the MT-Bench setup
    humans = sorted(agreement_humans)
    turn = judgments.drop_duplicates("item_id").set_index("item_id")["turn"] if "turn" in judgments.columns else None
    base = judgments[["item_id", "annotator", "label"] + (["turn"] if turn is not None else [])]
    judges = [(j, base[base["annotator"] == j]) for j in sorted(llm_annotators)]
    reference = human_consensus.set_index("item_id")["human_consensus_label"]
    rows: list[dict] = []
    for name, frame in judges:
        joined = frame[frame["item_id"].isin(reference.index)]
        metrics = judge_metrics(reference.loc[joined["item_id"]].to_numpy(), joined["label"].to_numpy(), classes)
        for rec in metrics.to_dict("records"):
            rows.append(dict(judge=name, reference="human_consensus", scope="all", paper_value=None, **rec))
        if humans:
            pooled = pd.concat([base[base["annotator"].isin(humans)], frame], ignore_index=True)
            rows += _agreement_rows(pooled, name, [name], humans, tie_label, paper)
    if len(humans) >= 2:
        rows += _agreement_rows(base[base["annotator"].isin(humans)], "human", humans, None, tie_label, paper)
    rows += judge_leaderboard(llm_judge_scores, human_consensus, classes)
    out = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    out["value"] = out["value"].astype(float)
    out["n"] = out["n"].astype("int64")
    out["paper_value"] = out["paper_value"].astype(float)
    return out
