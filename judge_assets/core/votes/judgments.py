"""From raw rows to votes and items: item keys, canonical order, label mapping, duplicates.

Item key: :mod:`judge_assets.core.keys` (pairwise: question, turn and the sorted model pair, so the
same comparison shown in either order is one item). A vote recorded with the models in
the other order has its winner flipped (``A`` ↔ ``B``). Generic items keep their ``item_id``.

Duplicate rule: when one annotator voted more than once on the same item, the **last** vote
counts — latest ``ingested_at``, then the later batch id, then the later row of the file. The
earlier votes are dropped and counted (``JudgmentsSummary.duplicates_dropped``).

Graph: ``items`` is built from the raw votes (:func:`canonical_votes_sql`, the one definition of
canonical order, flips and the duplicate rule), the LLM judge panel scores ``items``, and
``judgments`` is the canonical raw votes plus the panel's verdicts (:func:`build_judgments`), so
a judge panel's votes reach consensus without a cycle.

All of it is DuckDB SQL over ``raw_judgments`` (and ``llm_judge_scores``); nothing is loaded
into pandas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb

from judge_assets.config import DEFAULT_LLM_ANNOTATORS
from judge_assets.core.db import quote_ident, quote_literal, table_columns, table_exists, transaction
from judge_assets.core.keys import item_key_sql
from judge_assets.core.labels import FLIPPED, PAIRWISE, WINNER_TO_LABEL, LabelSet, declared_label_set
from judge_assets.core.sources.batches import RAW_TABLE, JudgmentInputError

QUESTIONS_TABLE = "mt_bench_questions"
SCORES_TABLE = "llm_judge_scores"
#: the columns of ``items`` of its own (after them come the extra raw columns, see :func:`build_items`)
ITEM_COLUMNS = (
    "item_id", "question_id", "turn", "model_a", "model_b", "category", "user_turns", "answers_a", "answers_b",
    "response", "reference", "criterion", "n_human_votes", "n_llm_votes",
)
#: generic columns ``items`` carries by name (texts a judge reads); other raw columns are copied as extras
GENERIC_TEXT_COLUMNS = ("prompt", "response", "response_a", "response_b", "reference", "criterion")
#: raw columns that are never item columns: votes, bookkeeping, the pairwise schema's own
NOT_ITEM_COLUMNS = (
    "item_id", "annotator", "label", "category", "question_id", "model_a", "model_b", "winner", "judge", "turn",
    "conversation_a", "conversation_b", "batch_id", "source", "source_row", "ingested_at", *GENERIC_TEXT_COLUMNS,
    "ground_truth",  # gold is never shown to a judge (see build_gold_labels)
)
GOLD_TABLE = "gold_labels"


def _case(expr: str, mapping: dict[str, str]) -> str:
    whens = " ".join(f"WHEN {quote_literal(k)} THEN {quote_literal(v)}" for k, v in mapping.items())
    return f"CASE {expr} {whens} END"


@dataclass(frozen=True)
class JudgmentsSummary:
    """What building ``judgments`` did, for materialization metadata."""

    n_raw_rows: int
    n_votes: int
    n_items: int
    n_annotators: int
    duplicates_dropped: int
    flipped: int
    ties: int
    labels: tuple[str, ...]
    panel_votes: int = 0
    panel_voters: tuple[str, ...] = ()
    scores_only: tuple[str, ...] = ()
    gold_items: int = 0
    gold_votes_removed: int = 0


def load_questions(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """``mt_bench_questions`` from FastChat's ``question.jsonl``: id, category, turns, reference."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    with transaction(con):
        con.execute(
            f"CREATE OR REPLACE TABLE {QUESTIONS_TABLE} (question_id BIGINT PRIMARY KEY, category VARCHAR, "
            "turns VARCHAR[], reference VARCHAR[])"
        )
        con.executemany(
            f"INSERT INTO {QUESTIONS_TABLE} VALUES (?, ?, ?, ?)",
            [(r["question_id"], r["category"], r["turns"], r.get("reference")) for r in rows],
        )
    return len(rows)


def resolve_label_set(con: duckdb.DuckDBPyConnection, declared: tuple[str, ...] = (), scale_ends: tuple[str, ...] = ()) -> LabelSet:
    """Pairwise data → ``A, B, tie``; generic → ``declared`` or the sorted distinct labels.

    ``declared = ("1..8",)`` is an ordinal scale (:func:`judge_assets.core.labels.declared_label_set`;
    ``scale_ends`` = ``JUDGE_SCALE_ENDS``); the MT-Bench schema is never a scale.

    Raises ``ValueError`` naming the batch and row of a generic label outside the class set.
    """
    cols = set(table_columns(con, RAW_TABLE))
    has_pairwise = "winner" in cols and con.execute(f"SELECT count(*) FROM {RAW_TABLE} WHERE winner IS NOT NULL").fetchone()[0] > 0
    if has_pairwise:
        labels = PAIRWISE
    elif declared:
        labels = declared_label_set(tuple(declared), tuple(scale_ends))
    else:
        found = con.execute(f"SELECT DISTINCT CAST(label AS VARCHAR) FROM {RAW_TABLE} WHERE label IS NOT NULL ORDER BY 1").fetchall()
        labels = LabelSet(tuple(r[0] for r in found))
    if "label" in cols:
        bad = con.execute(
            f"SELECT source, source_row, CAST(label AS VARCHAR) FROM {RAW_TABLE} WHERE label IS NOT NULL "
            f"AND CAST(label AS VARCHAR) NOT IN (SELECT unnest(?)) ORDER BY batch_id, source_row LIMIT 1",
            [list(labels.labels)],
        ).fetchone()
        if bad:
            raise ValueError(f"{bad[0]}, row {bad[1]}, column 'label': {bad[2]!r} is not in the class set {list(labels.labels)}")
    return labels


def canonical_votes_sql(con: duckdb.DuckDBPyConnection) -> str:
    """The SELECT of every raw vote in canonical form, ranked for the duplicate rule.

    Columns: ``item_id, annotator, label, question_id, turn, model_a, model_b, category,
    batch_id, source_row, ingested_at, flipped, vote_order, vote_rank``: ``vote_order`` orders the
    votes from first to last (``ingested_at``, batch id, row of the file, as one BIGINT), and
    ``vote_rank`` 1 is the vote that counts, the last of its annotator on its item. Pairwise
    rows get the item key, the canonical model order and the flipped winner; generic rows keep
    their ``item_id``. Rows without a usable label (NULL, unknown winner) are left out.
    """
    cols = set(table_columns(con, RAW_TABLE))
    has_questions = table_exists(con, QUESTIONS_TABLE)
    parts = []
    if "winner" in cols:
        turn = "coalesce(CAST(r.turn AS INTEGER), 1)" if "turn" in cols else "1"
        raw_category = "CAST(r.category AS VARCHAR)" if "category" in cols else "NULL"
        category = f"coalesce({raw_category}, q.category)" if has_questions else raw_category
        join = f"LEFT JOIN {QUESTIONS_TABLE} q ON q.question_id = r.question_id" if has_questions else ""
        raw_label = _case("CAST(r.winner AS VARCHAR)", WINNER_TO_LABEL)
        parts.append(
            f"""
            SELECT {item_key_sql('r.question_id', turn, 'r.model_a', 'r.model_b')} AS item_id,
                   CAST(r.judge AS VARCHAR) AS annotator,
                   CASE WHEN r.model_a > r.model_b THEN {_case(raw_label, FLIPPED)} ELSE {raw_label} END AS label,
                   CAST(r.question_id AS BIGINT) AS question_id, {turn} AS turn,
                   least(r.model_a, r.model_b) AS model_a, greatest(r.model_a, r.model_b) AS model_b,
                   {category} AS category, r.batch_id, r.source_row, r.ingested_at,
                   r.model_a > r.model_b AS flipped
            FROM {RAW_TABLE} r {join}
            WHERE r.winner IS NOT NULL"""
        )
    if "label" in cols:
        category = "CAST(r.category AS VARCHAR)" if "category" in cols else "NULL"
        # generic rows may name the compared models (model_a/model_b, as recorded): the leaderboard of a pairwise scale
        models = {m: f"CAST(r.{m} AS VARCHAR)" if m in cols and "winner" not in cols else "NULL::VARCHAR" for m in ("model_a", "model_b")}
        parts.append(
            f"""
            SELECT CAST(r.item_id AS VARCHAR) AS item_id, CAST(r.annotator AS VARCHAR) AS annotator,
                   CAST(r.label AS VARCHAR) AS label, NULL::BIGINT AS question_id, NULL::INTEGER AS turn,
                   {models['model_a']} AS model_a, {models['model_b']} AS model_b, {category} AS category,
                   r.batch_id, r.source_row, r.ingested_at, false AS flipped
            FROM {RAW_TABLE} r
            WHERE r.label IS NOT NULL"""
        )
    union = " UNION ALL ".join(parts)
    # (ingested_at, batch_id, source_row) as one BIGINT, the batch's rank in the high bits: cheap to sort and aggregate on
    batch_rank = (f"(SELECT batch_id, ingested_at, row_number() OVER (ORDER BY ingested_at, batch_id) AS batch_rank "
                  f"FROM (SELECT DISTINCT batch_id, ingested_at FROM {RAW_TABLE}))")
    return f"""
        SELECT *, row_number() OVER (PARTITION BY item_id, annotator ORDER BY vote_order DESC) AS vote_rank
        FROM (SELECT v.*, (b.batch_rank << 32) | v.source_row AS vote_order
              FROM ({union}) v JOIN {batch_rank} b USING (batch_id, ingested_at)
              WHERE v.label IS NOT NULL)"""


def build_judgments(
    con: duckdb.DuckDBPyConnection, llm_annotators: tuple[str, ...], declared_labels: tuple[str, ...] = (),
    scale_ends: tuple[str, ...] = (),
    *,
    gold_annotators: tuple[str, ...] = (),
) -> JudgmentsSummary:
    """(Re)build ``judgments`` and ``label_set`` in one transaction: the canonical raw votes
    (:func:`canonical_votes_sql`, the last vote of an annotator on an item counts) plus, when
    ``llm_judge_scores`` exists, the LLM judge panel's verdicts.

    ``judgments`` columns: ``item_id, annotator, annotator_kind ('human'|'llm'), label, label_code,
    question_id, turn, model_a, model_b, category, batch_id, source_row, flipped``. A panel verdict
    is one vote by annotator ``<judge>:<model>`` (kind ``llm``; ``batch_id``/``source_row`` NULL;
    item columns from ``items``) for every row of ``llm_judge_scores`` with ``status = 'ok'``,
    and only for judges every one of whose verdict labels is in the class set; the others stay
    scores (``JudgmentsSummary.scores_only``).

    Gold (:func:`build_gold_labels`, in the same transaction): ``gold_labels`` from the optional
    ``ground_truth`` column and from the votes of ``gold_annotators``, whose votes leave
    ``judgments`` (gold is never counted as a vote).
    """
    labels = resolve_label_set(con, declared_labels, scale_ends)
    panel = table_exists(con, SCORES_TABLE) and table_exists(con, "items")
    with transaction(con):
        con.execute(
            "CREATE OR REPLACE TABLE label_set (label VARCHAR, code INTEGER, value DOUBLE, ordinal BOOLEAN, low_favours VARCHAR)"
        )
        con.executemany("INSERT INTO label_set VALUES (?, ?, ?, ?, ?)", labels.as_table_rows())
        con.execute(f"CREATE OR REPLACE TEMP TABLE all_votes AS {canonical_votes_sql(con)}")
        gold_items, gold_votes_removed = build_gold_labels(con, gold_annotators)
        panel_sql = f"""
            UNION ALL
            SELECT s.item_id, s.annotator, 'llm', s.verdict, l.code::INTEGER, i.question_id, i.turn, i.model_a, i.model_b,
                   i.category, NULL::VARCHAR, NULL::BIGINT, false
            FROM {SCORES_TABLE} s JOIN items i USING (item_id) JOIN label_set l ON l.label = s.verdict
            WHERE s.status = 'ok' AND list_has_all((SELECT list(label) FROM label_set), s.verdict_labels)""" if panel else ""
        con.execute(
            f"""
            CREATE OR REPLACE TABLE judgments AS
            SELECT * FROM (
                SELECT v.item_id, v.annotator,
                       CASE WHEN list_contains(?, v.annotator) THEN 'llm' ELSE 'human' END AS annotator_kind,
                       v.label, s.code::INTEGER AS label_code,
                       v.question_id, v.turn, v.model_a, v.model_b, v.category,
                       v.batch_id, v.source_row, v.flipped
                FROM all_votes v JOIN label_set s ON s.label = v.label
                WHERE v.vote_rank = 1 AND NOT list_contains(?, v.annotator) {panel_sql})
            ORDER BY item_id, annotator""",
            [list(llm_annotators), list(gold_annotators)],
        )
        n_raw, dropped = con.execute("SELECT count(*), count(*) FILTER (WHERE vote_rank > 1) FROM all_votes").fetchone()
        con.execute("DROP TABLE all_votes")
    n_votes, n_items, n_annotators, flipped, ties = con.execute(
        "SELECT count(*), count(DISTINCT item_id), count(DISTINCT annotator), count(*) FILTER (WHERE flipped), "
        "count(*) FILTER (WHERE label = 'tie') FROM judgments"
    ).fetchone()
    panel_votes, voters, scores_only = 0, (), ()
    if panel:
        panel_votes, voters = con.execute(
            f"SELECT count(*), coalesce(list(DISTINCT annotator ORDER BY annotator), []) FROM judgments "
            f"WHERE batch_id IS NULL AND annotator IN (SELECT annotator FROM {SCORES_TABLE})"
        ).fetchone()
        scores_only = tuple(
            r[0] for r in con.execute(
                f"SELECT DISTINCT annotator FROM {SCORES_TABLE} "
                f"WHERE NOT list_has_all((SELECT list(label) FROM label_set), verdict_labels) ORDER BY 1"
            ).fetchall()
        )
    return JudgmentsSummary(
        n_raw, n_votes, n_items, n_annotators, dropped, flipped, ties, labels.labels, panel_votes, tuple(voters), scores_only,
        gold_items, gold_votes_removed,
    )


def build_gold_labels(con: duckdb.DuckDBPyConnection, gold_annotators: tuple[str, ...] = ()) -> tuple[int, int]:
    """(Re)build ``gold_labels``: one gold label per item that has gold; returns (items with gold,
    gold annotators' votes, which are not votes).

    Called by :func:`build_judgments` inside its transaction, after ``label_set`` and the temp
    table ``all_votes`` (:func:`canonical_votes_sql`) exist. Gold comes from

    - the generic schema's optional ``ground_truth`` column (``source = 'column'``; every row of
      every batch counts, empty = no gold);
    - the votes of ``gold_annotators`` (``JUDGE_GOLD_ANNOTATORS``; ``source = 'annotator:<name>'``;
      their canonical last vote on an item, so a pairwise gold vote is flipped like any vote).

    Columns: ``item_id, gold_label, source, batch_id, source_row`` (where the gold was first given:
    the column before annotators, then batch and row order). Two different gold values for one
    item, in one batch or across batches and sources, raise :class:`JudgmentInputError` naming
    both files, rows and columns; a gold label outside the class set raises it naming its row.
    """
    cols = set(table_columns(con, RAW_TABLE))
    parts = []
    if "ground_truth" in cols and "item_id" in cols:
        parts.append(
            f"""SELECT CAST(item_id AS VARCHAR) AS item_id, CAST(ground_truth AS VARCHAR) AS gold_label, 'column' AS source,
                       batch_id, source_row, source AS file, 'ground_truth' AS column_name, 0 AS priority
                FROM {RAW_TABLE} WHERE ground_truth IS NOT NULL AND trim(CAST(ground_truth AS VARCHAR)) <> ''"""
        )
    parts.append(
        f"""SELECT v.item_id, v.label AS gold_label, 'annotator:' || v.annotator AS source, v.batch_id, v.source_row,
                   r.source AS file, CASE WHEN v.question_id IS NULL THEN 'label' ELSE 'winner' END AS column_name, 1 AS priority
            FROM all_votes v JOIN {RAW_TABLE} r USING (batch_id, source_row)
            WHERE v.vote_rank = 1 AND list_contains(?, v.annotator)"""
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE gold_evidence AS SELECT *, row_number() OVER (PARTITION BY item_id "
        f"ORDER BY priority, batch_id, source_row) AS rank FROM ({' UNION ALL '.join(parts)})",
        [list(gold_annotators)],
    )
    try:
        outside = con.execute(
            "SELECT file, source_row, column_name, gold_label FROM gold_evidence "
            "WHERE gold_label NOT IN (SELECT label FROM label_set) ORDER BY batch_id, source_row LIMIT 1"
        ).fetchone()
        if outside:
            file, row, column, value = outside
            raise JudgmentInputError(file, f"gold {value!r} is not in the class set {[r[0] for r in con.execute('SELECT label FROM label_set ORDER BY code').fetchall()]}", row=row, column=column)
        conflict = con.execute(
            """
            WITH first AS (SELECT * FROM gold_evidence QUALIFY row_number() OVER (PARTITION BY item_id, gold_label ORDER BY rank) = 1),
                 ranked AS (SELECT *, row_number() OVER (PARTITION BY item_id ORDER BY rank) AS n FROM first)
            SELECT a.item_id, a.gold_label, a.file, a.source_row, a.column_name, b.gold_label, b.file, b.source_row, b.column_name
            FROM ranked a JOIN ranked b ON a.item_id = b.item_id AND a.n = 1 AND b.n = 2
            ORDER BY b.batch_id, b.source_row LIMIT 1"""
        ).fetchone()
        if conflict:
            item, first_gold, first_file, first_row, first_column, gold, file, row, column = conflict
            raise JudgmentInputError(
                file,
                f"conflicting gold for item {item!r}: {gold!r} here, but {first_gold!r} at {first_file}, row {first_row}, "
                f"column {first_column!r} (an item has one gold label)",
                row=row,
                column=column,
            )
        con.execute(
            f"CREATE OR REPLACE TABLE {GOLD_TABLE} AS SELECT item_id, gold_label, source, batch_id, source_row "
            "FROM gold_evidence WHERE rank = 1 ORDER BY item_id"
        )
        n_gold = con.execute(f"SELECT count(*) FROM {GOLD_TABLE}").fetchone()[0]
        n_removed = con.execute("SELECT count(*) FROM all_votes WHERE vote_rank = 1 AND list_contains(?, annotator)", [list(gold_annotators)]).fetchone()[0]
    finally:
        con.execute("DROP TABLE IF EXISTS gold_evidence")
    return n_gold, n_removed


def build_items(con: duckdb.DuckDBPyConnection, llm_annotators: tuple[str, ...] = DEFAULT_LLM_ANNOTATORS) -> int:
    """(Re)build ``items`` from the raw votes: one row per item with what a judge needs to read.

    Columns: ``item_id, question_id, turn, model_a, model_b, category, user_turns`` (user messages up
    to the judged turn), ``answers_a``, ``answers_b`` (each model's answers up to that turn, canonical
    order), ``response`` (a single output), ``reference`` (reference answers per turn: MT-Bench's,
    or the generic ``reference`` column), ``criterion``, ``n_human_votes, n_llm_votes`` (raw votes;
    ``llm_annotators`` are the LLM ones), then every other column of the raw rows (e.g. a column a
    judge template names), as text. Each text (user turns, answers, response, reference) is the
    longest one the item's votes carry, the newest vote's (ingested_at, batch_id, source_row) among
    equally long ones; every other column is the newest vote's non-NULL value. So a rebuild picks
    the same values every time, however the votes disagree. Conversations come from the raw rows; without them the
    MT-Bench question text fills ``user_turns``. Generic rows give one-element lists from their
    optional ``prompt``/``response``/``response_a``/``response_b``/``reference`` columns.
    """
    cols = set(table_columns(con, RAW_TABLE))
    has_questions = table_exists(con, QUESTIONS_TABLE)

    def messages(conv: str, role: str) -> str:
        return f"list_transform(list_filter({conv}, lambda m: m.role = '{role}'), lambda m: m.content)[1:j.turn]"

    def raw(col: str, cast: str = "VARCHAR") -> str:
        return f"CAST(r.{col} AS {cast})" if col in cols else f"NULL::{cast}"

    def listed(col: str) -> str:
        return f"[{raw(col)}]" if col in cols else "NULL::VARCHAR[]"

    conv_a = f"CASE WHEN j.flipped THEN {raw('conversation_b', 'STRUCT(content VARCHAR, role VARCHAR)[]')} ELSE {raw('conversation_a', 'STRUCT(content VARCHAR, role VARCHAR)[]')} END"
    conv_b = f"CASE WHEN j.flipped THEN {raw('conversation_a', 'STRUCT(content VARCHAR, role VARCHAR)[]')} ELSE {raw('conversation_b', 'STRUCT(content VARCHAR, role VARCHAR)[]')} END"
    question_turns = "q.turns[1:j.turn]" if has_questions else "NULL::VARCHAR[]"
    reference = "q.reference" if has_questions else "NULL::VARCHAR[]"
    join_q = f"LEFT JOIN {QUESTIONS_TABLE} q ON q.question_id = j.question_id" if has_questions else ""
    extras = sorted(c for c in cols if c not in NOT_ITEM_COLUMNS)
    extra_per_vote = "".join(f", CAST(r.{quote_ident(c)} AS VARCHAR) AS {quote_ident(c)}" for c in extras)
    extra_item = "".join(f", arg_max({quote_ident(c)}, vote_order) AS {quote_ident(c)}" for c in extras)
    with transaction(con):
        con.execute(
            f"""
            CREATE OR REPLACE TABLE items AS
            WITH per_vote AS (
                SELECT j.item_id, j.question_id, j.turn, j.model_a, j.model_b, j.category,
                       list_contains(?, j.annotator) AS is_llm, j.vote_order,
                       CASE WHEN j.turn IS NULL THEN [{raw('prompt')}] ELSE coalesce({messages(conv_a, 'user')}, {question_turns}) END AS user_turns,
                       CASE WHEN j.turn IS NULL THEN [{raw('response_a')}] ELSE {messages(conv_a, 'assistant')} END AS answers_a,
                       CASE WHEN j.turn IS NULL THEN [{raw('response_b')}] ELSE {messages(conv_b, 'assistant')} END AS answers_b,
                       CASE WHEN j.turn IS NULL THEN {listed('response')} END AS response,
                       CASE WHEN j.turn IS NULL THEN {listed('reference')} ELSE {reference} END AS reference,
                       {raw('criterion')} AS criterion {extra_per_vote}
                FROM ({canonical_votes_sql(con)}) j
                JOIN {RAW_TABLE} r ON r.batch_id = j.batch_id AND r.source_row = j.source_row
                {join_q}
                WHERE j.vote_rank = 1
            )
            SELECT item_id, arg_max(question_id, vote_order) AS question_id, arg_max(turn, vote_order) AS turn,
                   arg_max(model_a, vote_order) AS model_a, arg_max(model_b, vote_order) AS model_b, arg_max(category, vote_order) AS category,
                   first(user_turns ORDER BY list_count(user_turns) DESC NULLS LAST, vote_order DESC) AS user_turns,
                   first(answers_a ORDER BY list_count(answers_a) DESC NULLS LAST, vote_order DESC) AS answers_a,
                   first(answers_b ORDER BY list_count(answers_b) DESC NULLS LAST, vote_order DESC) AS answers_b,
                   first(response ORDER BY list_count(response) DESC NULLS LAST, vote_order DESC) AS response,
                   first(reference ORDER BY list_count(reference) DESC NULLS LAST, vote_order DESC) AS reference,
                   arg_max(criterion, vote_order) AS criterion,
                   count(*) FILTER (WHERE NOT is_llm) AS n_human_votes,
                   count(*) FILTER (WHERE is_llm) AS n_llm_votes {extra_item}
            FROM per_vote
            GROUP BY item_id
            ORDER BY item_id""",
            [list(llm_annotators)],
        )
    return con.execute("SELECT count(*) FROM items").fetchone()[0]
