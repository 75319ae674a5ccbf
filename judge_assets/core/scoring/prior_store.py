"""The ``model_probs`` table kept current batch by batch: the classifier prior is refitted on all
items when it must be, and otherwise only the items a batch added or changed are scored.

A refit (:func:`refresh_model_probs` with ``refit``, or when :func:`plan_prior` says so) is
:func:`~judge_assets.core.scoring.prior.fit_prior` over every item: out-of-fold rows trained on
the human majority labels, and the :class:`~judge_assets.core.scoring.prior.PriorModel` trained
on all labelled items, which is stored. Between refits, a new item (or one whose row in ``items``
changed) is scored by that stored model. No model saw that item, so its row is out-of-sample like
an out-of-fold row. Rows of unchanged items are kept as they are: a row stays out-of-fold when its
item's label changes later. What the incremental rows miss is the newer labels' say in training.
That is why the prior is refitted once the items new or changed since the fit reach
``growth`` (default :data:`REFIT_GROWTH`, 10%) of the items it was fitted on, once the votes in
``judgments`` have grown by that fraction (new votes on old items change the training labels),
when the class set, the item columns or the prior's settings change, or on demand.

The LLM panel's rows (:func:`~judge_assets.core.scoring.prior.llm_prior`) take precedence over
the classifier's item by item; they are cheap, so they are overlaid on every write.

Tables (internal; the asset's own output is ``model_probs``):

- ``model_prior_base`` — one row per item: ``item_id``, ``item_hash`` (DuckDB ``hash`` of the
  item's columns when it was scored), ``has_text``, ``p_<class>`` per class, ``scorer``
  (``oof_classifier`` or ``uniform``): the classifier's row before LLM rows take precedence.
- ``model_prior_state`` — one row: ``fingerprint`` (class set, item columns and types, settings,
  scikit-learn version), ``fitted_at``, ``items_at_fit``, ``labelled_at_fit``, ``votes_at_fit``,
  ``scored_since_fit`` (items scored incrementally since), ``model`` (the pickled
  :class:`~judge_assets.core.scoring.prior.PriorModel`; NULL when no item had a label). It is
  this project's own pickle in the user's own database, read back only by this module.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import numpy as np
import pandas as pd
import sklearn

from judge_assets.core.db import quote_ident, read_frame, table_columns, table_exists, transaction
from judge_assets.core.scoring.prior import VOTE_COUNT_COLUMNS, fit_prior, prior_training_labels, textless_items, uniform_prior

BASE_TABLE = "model_prior_base"
STATE_TABLE = "model_prior_state"
#: Items new or changed since the fit, as a fraction of the items fitted on, that trigger a refit.
REFIT_GROWTH = 0.10
#: Bumped when the features or the fit change in a way that stored models must not outlive.
PRIOR_VERSION = 1
#: The prior's settings (see :func:`~judge_assets.core.scoring.prior.classifier_prior`).
SETTINGS = {"n_folds": 5, "seed": 0, "c": 0.1}


@dataclass(frozen=True)
class PriorPlan:
    """What :func:`refresh_model_probs` does: ``refit`` all items or score the new ones, and why."""

    refit: bool
    reason: str


@dataclass(frozen=True)
class PriorUpdate:
    """What one :func:`refresh_model_probs` did: ``mode`` (``refit`` or ``incremental``), the
    ``reason``, ``items_scored`` (rows the classifier computed now), ``items`` (rows of
    ``model_probs``), ``items_without_text``, ``scorer_counts`` and, after an incremental update,
    the items left before the next refit (``refit_after``)."""

    mode: str
    reason: str
    items_scored: int
    items: int
    items_without_text: int
    scorer_counts: dict[str, int]
    refit_after: int | None


def fingerprint(classes: tuple[str, ...], item_types: dict[str, str]) -> str:
    """What a stored prior depends on besides the data: class set, item columns and their types,
    :data:`SETTINGS`, :data:`PRIOR_VERSION` and scikit-learn's version (a pickled model is only
    read back by the version that wrote it)."""
    spec = {"classes": list(classes), "columns": item_types, "settings": SETTINGS, "version": PRIOR_VERSION, "sklearn": sklearn.__version__}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def read_state(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The stored state row (see the module docstring), or None when there is none."""
    if not (table_exists(con, STATE_TABLE) and table_exists(con, BASE_TABLE)):
        return None
    row = con.execute(f"SELECT * FROM {STATE_TABLE}").fetchdf()
    return None if row.empty else row.iloc[0].to_dict()


def plan_prior(
    state: dict | None, print_: str, n_changed: int, n_votes: int, *, refit: bool = False, growth: float = REFIT_GROWTH
) -> PriorPlan:
    """Refit or score incrementally. ``state``: :func:`read_state`; ``print_``: the current
    :func:`fingerprint`; ``n_changed``: items not in ``model_prior_base`` or changed since scored;
    ``n_votes``: rows of ``judgments`` now."""
    if refit:
        return PriorPlan(True, "refit requested")
    if state is None:
        return PriorPlan(True, "first fit (no stored classifier)")
    if state["fingerprint"] != print_:
        return PriorPlan(True, "the class set, the item columns or the prior's settings changed since the last fit")
    if state["model"] is None:
        return PriorPlan(True, "no classifier was trained at the last fit (no item had a human label)")
    votes_at_fit = int(state["votes_at_fit"])
    if n_votes >= (1 + growth) * votes_at_fit:
        return PriorPlan(True, f"the votes grew from {votes_at_fit:,} to {n_votes:,} since the last fit (≥{growth:.0%})")
    since = int(state["scored_since_fit"]) + n_changed
    limit = growth * int(state["items_at_fit"])
    if since >= limit:
        return PriorPlan(True, f"{since:,} items new or changed since the fit on {int(state['items_at_fit']):,} items (≥{growth:.0%})")
    fitted = pd.Timestamp(state["fitted_at"]).strftime("%Y-%m-%d %H:%M UTC")
    return PriorPlan(
        False,
        f"{n_changed:,} new or changed items scored by the classifier fitted on {int(state['items_at_fit']):,} items "
        f"({fitted}); it is refitted once {int(np.ceil(limit)):,} items are new or changed since (now {since:,}), or on demand",
    )


def _hash_sql(columns: list[str], table: str = "") -> str:
    """DuckDB ``hash`` of an item's columns (not its id): the row's fingerprint in ``model_prior_base``."""
    prefix = f"{table}." if table else ""
    return "hash(" + ", ".join(prefix + quote_ident(c) for c in columns if c != "item_id") + ")"


def refresh_model_probs(
    con: duckdb.DuckDBPyConnection,
    classes: tuple[str, ...],
    columns: list[str],
    llm_rows: pd.DataFrame,
    *,
    refit: bool = False,
    growth: float = REFIT_GROWTH,
) -> PriorUpdate:
    """Bring ``model_prior_base`` and ``model_probs`` up to date with ``items`` and ``judgments``.

    ``classes``: the label set; ``columns``: the ``items`` columns the classifier reads (with
    ``item_id``); ``llm_rows``: :func:`~judge_assets.core.scoring.prior.llm_prior`'s frame
    (``item_id, p_<class>…, scorer``), taking precedence item by item. ``refit``: refit even when
    :func:`plan_prior` would not. All writes are one transaction: on any error nothing changes.
    """
    classes = tuple(classes)
    columns = [c for c in columns if c not in VOTE_COUNT_COLUMNS]  # a new vote does not change the item
    types = table_columns(con, "items")
    item_types = {c: types[c] for c in columns}
    print_ = fingerprint(classes, item_types)
    state = read_state(con)
    select = ", ".join(quote_ident(c) for c in columns)
    row_hash = _hash_sql(columns)
    changed_sql = (
        f"FROM items i WHERE NOT EXISTS (SELECT 1 FROM {BASE_TABLE} b "
        f"WHERE b.item_id = i.item_id AND b.item_hash = {_hash_sql(columns, 'i')})"
    )
    n_changed = con.execute(f"SELECT count(*) {changed_sql}").fetchall()[0][0] if state is not None else 0
    n_votes = con.execute("SELECT count(*) FROM judgments").fetchall()[0][0]
    plan = plan_prior(state, print_, n_changed, n_votes, refit=refit, growth=growth)
    model = None
    if not plan.refit:
        model = pickle.loads(state["model"])
        new = read_frame(con, f"SELECT {select}, {row_hash} AS item_hash {changed_sql} ORDER BY item_id")
        if not model.accepts(new.drop(columns="item_hash")):
            plan = PriorPlan(True, "new items are not of the shape the classifier was fitted on (e.g. pairwise items without both models)")
    if plan.refit:
        items = read_frame(con, f"SELECT {select}, {row_hash} AS item_hash FROM items ORDER BY item_id")
        hashes = items.pop("item_hash").to_numpy()
        judgments = read_frame(con, "SELECT item_id, annotator, annotator_kind, label FROM judgments")
        labels = prior_training_labels(judgments, classes)
        labels = labels[labels.index.isin(items["item_id"])]
        if len(labels):
            base, model = fit_prior(items, labels, classes, **SETTINGS)
        else:
            base, model = uniform_prior(items["item_id"].to_numpy(), classes), None
        base.insert(1, "item_hash", np.asarray(hashes, dtype=np.uint64))
        base.insert(2, "has_text", ~textless_items(items))
        scored = len(base)
        with transaction(con):
            con.register("__prior_base", base)
            con.execute(f"CREATE OR REPLACE TABLE {BASE_TABLE} AS SELECT * FROM __prior_base")
            con.unregister("__prior_base")
            con.execute(
                f"CREATE OR REPLACE TABLE {STATE_TABLE} (fingerprint VARCHAR, fitted_at TIMESTAMP, items_at_fit BIGINT, "
                "labelled_at_fit BIGINT, votes_at_fit BIGINT, scored_since_fit BIGINT, model BLOB)"
            )
            con.execute(
                f"INSERT INTO {STATE_TABLE} VALUES (?, ?, ?, ?, ?, 0, ?)",
                [print_, datetime.now(UTC).replace(tzinfo=None), len(items), len(labels), n_votes, None if model is None else pickle.dumps(model)],
            )
            _write_model_probs(con, classes, llm_rows)
        refit_after = None
    else:
        rows = model.predict(new)
        rows.insert(1, "item_hash", new["item_hash"].to_numpy(dtype=np.uint64))
        rows.insert(2, "has_text", ~textless_items(new))
        scored = len(rows)
        with transaction(con):
            con.register("__prior_rows", rows)
            con.execute(f"DELETE FROM {BASE_TABLE} WHERE item_id IN (SELECT item_id FROM __prior_rows)")
            con.execute(f"DELETE FROM {BASE_TABLE} WHERE item_id NOT IN (SELECT item_id FROM items)")
            con.execute(f"INSERT INTO {BASE_TABLE} SELECT * FROM __prior_rows")
            con.unregister("__prior_rows")
            con.execute(f"UPDATE {STATE_TABLE} SET scored_since_fit = scored_since_fit + ?", [scored])
            _write_model_probs(con, classes, llm_rows)
        since = int(state["scored_since_fit"]) + scored
        refit_after = max(int(np.ceil(growth * int(state["items_at_fit"]))) - since, 0)
    counts = dict(con.execute("SELECT scorer, count(*) FROM model_probs GROUP BY scorer ORDER BY count(*) DESC").fetchall())
    textless = con.execute(f"SELECT count(*) FILTER (NOT has_text), count(*) FROM {BASE_TABLE}").fetchall()[0]
    return PriorUpdate("refit" if plan.refit else "incremental", plan.reason, scored, textless[1], textless[0], counts, refit_after)


def _write_model_probs(con: duckdb.DuckDBPyConnection, classes: tuple[str, ...], llm_rows: pd.DataFrame) -> None:
    """``model_probs`` = the LLM row of an item where there is one, its classifier row otherwise."""
    probs = [quote_ident(f"p_{c}") for c in classes]
    llm = llm_rows if len(llm_rows) else pd.DataFrame({"item_id": pd.Series(dtype=object), **{f"p_{c}": pd.Series(dtype=float) for c in classes}})
    con.register("__llm_rows", llm[["item_id", *[f"p_{c}" for c in classes]]])
    picked = ", ".join(f"CASE WHEN l.item_id IS NULL THEN b.{p} ELSE l.{p} END AS {p}" for p in probs)
    con.execute(
        f"CREATE OR REPLACE TABLE model_probs AS SELECT b.item_id, {picked}, "
        "CASE WHEN l.item_id IS NULL THEN b.scorer ELSE 'llm_logprobs' END AS scorer "
        f"FROM {BASE_TABLE} b LEFT JOIN __llm_rows l ON l.item_id = b.item_id ORDER BY b.item_id"
    )
    con.unregister("__llm_rows")
