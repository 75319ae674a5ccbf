"""SQL models: dependency parsing, grain, ordering, validation, materialization, shipped models on
pairwise and generic data, assets and grain checks, the packaged models folder."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from judge_assets.core.consensus.tables import build_consensus_tables
from judge_assets.core.db import connect, replace_table, replace_tables
from judge_assets.core.labels import PAIRWISE, stored_label_set
from judge_assets.core.scoring.prior import uniform_prior
from judge_assets.core.sources.batches import file_batch, load_batch, validate_batch, write_batch
from judge_assets.core.sql.models import (
    SqlModelError,
    discover_models,
    grain_violations,
    materialize_model,
    order_models,
    parse_dependencies,
    read_model,
    validate_models,
)
from judge_assets.core.votes.judgments import build_items, build_judgments
from judge_assets.defs.resources import JudgeDuckDBResource
from judge_assets.defs.sql_models import SQL_MODELS_DIR, build_sql_model_defs

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def write(folder: Path, relative: str, text: str) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- dependency parsing ---------------------------------------------------------------------


def test_cte_names_are_not_dependencies_but_the_tables_they_read_are():
    sql = """
        WITH votes AS (SELECT * FROM judgments),
             counted AS (SELECT item_id, count(*) AS n FROM votes GROUP BY item_id)
        SELECT * FROM counted
    """
    assert parse_dependencies(sql) == {"judgments"}


def test_a_cte_shadowing_a_table_still_reads_the_table_inside_its_body():
    assert parse_dependencies("WITH judgments AS (SELECT * FROM judgments) SELECT * FROM judgments") == {"judgments"}


def test_joins_and_subqueries_everywhere_are_walked():
    sql = """
        SELECT c.item_id, (SELECT max(code) FROM label_set) AS top_code
        FROM consensus_labels AS c
        LEFT JOIN items i ON i.item_id = c.item_id
        JOIN (SELECT item_id FROM judgments WHERE annotator_kind = 'llm') AS j USING (item_id)
        WHERE c.item_id IN (SELECT item_id FROM majority_vote_labels)
          AND EXISTS (SELECT 1 FROM annotator_stats s WHERE s.annotator = 'x')
        UNION ALL
        SELECT item_id, 0 FROM human_consensus_labels
    """
    assert parse_dependencies(sql) == {
        "label_set", "consensus_labels", "items", "judgments",
        "majority_vote_labels", "annotator_stats", "human_consensus_labels",
    }


def test_quoted_and_schema_qualified_names_and_table_functions():
    sql = """SELECT * FROM "Weird Table" JOIN main."select" USING (id)
             JOIN other.t USING (id), read_parquet('x.parquet'), range(3)"""
    assert parse_dependencies(sql) == {"Weird Table", "select", "other.t"}


def test_parse_error_names_the_file_and_line():
    with pytest.raises(SqlModelError, match=r"bad\.sql: line 3: SQL parse error"):
        parse_dependencies("SELECT a,\n  b\nFROM WHERE x = 1", source="bad.sql")


def test_a_model_must_be_one_query():
    with pytest.raises(SqlModelError, match="exactly one SELECT query, found DELETE"):
        parse_dependencies("DELETE FROM judgments", source="m.sql")
    with pytest.raises(SqlModelError, match="found SELECT, SELECT"):
        parse_dependencies("SELECT 1; SELECT 2", source="m.sql")


# --- discovery, ordering, validation ---------------------------------------------------------


def test_discover_reads_config_description_group_and_deps(tmp_path):
    write(tmp_path, "a.sql", "-- materialized: view\n-- Votes per item.\n-- grain: item_id, annotator\n--   second line\n"
          "SELECT item_id, annotator FROM judgments;\n")
    write(tmp_path, "reports/b.sql", "-- GRAIN:item_id\nSELECT * FROM a")
    a, b = discover_models(tmp_path)
    assert (a.name, a.group, a.materialized, a.deps, a.grain) == ("a", "sql_models", "view", frozenset({"judgments"}), ("item_id", "annotator"))
    assert a.description == "Votes per item.\nsecond line"
    assert a.sql.endswith("FROM judgments")  # trailing ';' dropped
    assert (b.name, b.group, b.materialized, b.deps, b.grain, b.description) == ("b", "reports", "table", frozenset({"a"}), ("item_id",), "")
    # the file as users see it: the models folder's name and the path inside it, never an absolute path
    assert (a.source, b.source) == (f"{tmp_path.name}/a.sql", f"{tmp_path.name}/reports/b.sql")


def test_a_model_must_declare_a_grain_of_its_own_columns(tmp_path):
    path = write(tmp_path, "per_item.sql", "-- Votes per item.\nSELECT item_id, count(*) AS n FROM judgments GROUP BY ALL")
    with pytest.raises(SqlModelError, match=r"per_item\.sql: declare the model's grain .* e\.g\. `-- grain: item_id`"):
        read_model(path)
    path.write_text("-- grain: item_id,\nSELECT item_id, count(*) AS n FROM judgments GROUP BY ALL")
    with pytest.raises(SqlModelError, match=r"per_item\.sql: grain must list column names separated by commas"):
        read_model(path)
    path.write_text("-- grain: item_id, annotator\nSELECT item_id, count(*) AS n FROM judgments GROUP BY ALL")
    with pytest.raises(SqlModelError, match=r"per_item\.sql: grain column\(s\) annotator not in the query's output columns \(item_id, n\)"):
        read_model(path)
    path.write_text("-- grain: ITEM_ID\nSELECT item_id, count(*) AS n FROM judgments GROUP BY ALL")
    assert read_model(path).grain == ("ITEM_ID",)  # DuckDB names are case-insensitive


def test_bad_materialization_and_duplicate_names_are_errors(tmp_path):
    path = write(tmp_path, "x.sql", "-- materialized: incremental\nSELECT 1")
    with pytest.raises(SqlModelError, match=r"x\.sql: materialized must be one of table, view, got 'incremental'"):
        read_model(path)
    path.write_text("-- grain: a\nSELECT 1 AS a")
    write(tmp_path, "g/x.sql", "-- grain: a\nSELECT 2 AS a")
    with pytest.raises(SqlModelError, match="two models named 'x'"):
        discover_models(tmp_path)


def test_order_puts_a_model_after_the_models_it_reads(tmp_path):
    write(tmp_path, "a_final.sql", "-- grain: id\nSELECT * FROM m_mid JOIN b_base USING (id)")
    write(tmp_path, "m_mid.sql", "-- grain: id\nSELECT * FROM b_base")
    write(tmp_path, "b_base.sql", "-- grain: id\nSELECT * FROM judgments")
    write(tmp_path, "z_other.sql", "-- grain: id\nSELECT * FROM items")
    ordered = [m.name for m in order_models(discover_models(tmp_path))]
    assert ordered == ["b_base", "z_other", "m_mid", "a_final"]


def test_a_cycle_is_an_error_naming_its_models(tmp_path):
    write(tmp_path, "one.sql", "-- grain: id\nSELECT * FROM two")
    write(tmp_path, "two.sql", "-- grain: id\nSELECT * FROM three")
    write(tmp_path, "three.sql", "-- grain: id\nSELECT * FROM one")
    write(tmp_path, "ok.sql", "-- grain: id\nSELECT * FROM one")
    with pytest.raises(SqlModelError, match="dependency cycle among models: one -> two -> three -> one"):
        order_models(discover_models(tmp_path))
    (tmp_path / "one.sql").write_text("-- grain: id\nSELECT * FROM one")
    with pytest.raises(SqlModelError, match=r"model one \(.*one\.sql\) reads itself"):
        order_models(discover_models(tmp_path))


def test_unknown_table_names_file_and_table(tmp_path):
    write(tmp_path, "good.sql", "-- grain: item_id\nSELECT * FROM judgments")
    bad = write(tmp_path, "bad.sql", "-- grain: item_id\nSELECT * FROM good JOIN consensus_lables USING (item_id)")
    validate_models([read_model(tmp_path / "good.sql")], {"judgments"})
    with pytest.raises(SqlModelError, match=f"{bad} reads unknown table 'consensus_lables'"):
        validate_models(discover_models(tmp_path), {"judgments"})


# --- materialization -------------------------------------------------------------------------


@pytest.fixture
def con(tmp_path):
    connection = connect(tmp_path / "t.duckdb")
    connection.execute("CREATE TABLE judgments AS SELECT * FROM (VALUES ('i1', 'A'), ('i1', 'B'), ('i2', 'A')) v(item_id, label)")
    yield connection
    connection.close()


def test_materialize_table_then_view_replaces_the_relation(tmp_path, con):
    path = write(tmp_path / "m", "votes.sql", "-- grain: item_id\nSELECT item_id, count(*) AS n FROM judgments GROUP BY ALL")
    materialize_model(con, read_model(path))
    assert con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = 'votes'").fetchone() == ("BASE TABLE",)
    assert con.execute("SELECT * FROM votes ORDER BY item_id").fetchall() == [("i1", 2), ("i2", 1)]

    path.write_text("-- materialized: view\n-- grain: item_id\nSELECT item_id, count(*) AS n FROM judgments GROUP BY ALL")
    materialize_model(con, read_model(path))
    assert con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = 'votes'").fetchone() == ("VIEW",)
    con.execute("INSERT INTO judgments VALUES ('i2', 'tie')")
    assert con.execute("SELECT n FROM votes WHERE item_id = 'i2'").fetchone() == (2,)


def test_duckdb_error_names_the_file_and_its_line_and_keeps_the_old_table(tmp_path, con):
    path = write(tmp_path / "m", "votes.sql", "-- grain: item_id, label\nSELECT item_id, label FROM judgments")
    materialize_model(con, read_model(path))
    path.write_text("-- materialized: table\n-- grain: item_id\n-- a comment\nSELECT\n    item_id,\n    no_such_column\nFROM judgments\n")
    with pytest.raises(SqlModelError, match=rf"model votes failed at {path}:6: Binder Error"):
        materialize_model(con, read_model(path))
    assert con.execute("SELECT count(*) FROM votes").fetchone() == (3,)


def test_a_star_model_lacking_its_grain_column_fails_at_materialization_and_keeps_the_old_table(tmp_path, con):
    path = write(tmp_path / "m", "votes.sql", "-- grain: item_id, label\nSELECT * FROM judgments")
    materialize_model(con, read_model(path))
    path.write_text("-- grain: item_id, annotator\nSELECT * FROM judgments")
    model = read_model(path)  # a `*` query's columns are known only once DuckDB runs it
    with pytest.raises(SqlModelError, match=rf"{path}: grain column\(s\) annotator not in the model's columns \(item_id, label\)"):
        materialize_model(con, model)
    assert con.execute("SELECT count(*) FROM votes").fetchone() == (3,)


def test_grain_violations_count_duplicate_keys_and_show_the_most_repeated(tmp_path, con):
    con.execute("INSERT INTO judgments VALUES ('i1', 'tie'), ('i2', 'B'), ('i3', 'A')")
    unique = read_model(write(tmp_path / "m", "votes.sql", "-- grain: item_id, label\nSELECT DISTINCT item_id, label FROM judgments"))
    materialize_model(con, unique)
    found = grain_violations(con, unique)
    assert (found.n_keys, found.n_rows, len(found.examples)) == (0, 0, 0)
    by_item = read_model(write(tmp_path / "m", "by_item.sql", "-- grain: item_id\nSELECT item_id, label FROM judgments"))
    materialize_model(con, by_item)
    found = grain_violations(con, by_item, limit=1)
    assert (found.n_keys, found.n_rows) == (2, 5)  # i1 three times, i2 twice
    assert found.examples.values.tolist() == [["i1", 3]]


# --- the shipped models on synthetic tables ---------------------------------------------------


def items_frame() -> pd.DataFrame:
    rows = [
        ("1:1:m1|m2", 1, 1, "m1", "m2", "writing", ["w?"], ["a"], ["b"]),
        ("1:1:m1|m3", 1, 1, "m1", "m3", "writing", ["w?"], ["a"], ["c"]),
        ("2:1:m2|m3", 2, 1, "m2", "m3", "math", ["1+1?"], ["2"], ["3"]),
        ("2:2:m1|m2", 2, 2, "m1", "m2", "math", ["1+1?", "and 2+2?"], ["2", "4"], ["2", "5"]),
    ]
    cols = ["item_id", "question_id", "turn", "model_a", "model_b", "category", "user_turns", "answers_a", "answers_b"]
    return pd.DataFrame(rows, columns=cols)


def judgments_frame() -> pd.DataFrame:
    votes = [  # item, annotator, kind, label
        ("1:1:m1|m2", "h1", "human", "A"), ("1:1:m1|m2", "h2", "human", "A"), ("1:1:m1|m2", "gpt4_pair", "llm", "A"),
        ("1:1:m1|m2", "claude", "llm", "tie"),
        ("1:1:m1|m3", "h1", "human", "B"), ("1:1:m1|m3", "h2", "human", "tie"), ("1:1:m1|m3", "gpt4_pair", "llm", "B"),
        ("2:1:m2|m3", "h1", "human", "tie"), ("2:1:m2|m3", "gpt4_pair", "llm", "A"),
        ("2:2:m1|m2", "h2", "human", "B"), ("2:2:m1|m2", "gpt4_pair", "llm", "A"),
    ]
    frame = pd.DataFrame(votes, columns=["item_id", "annotator", "annotator_kind", "label"])
    return frame.merge(items_frame()[["item_id", "question_id", "turn", "model_a", "model_b", "category"]], on="item_id")


def consensus_frame() -> pd.DataFrame:
    consensus = pd.DataFrame(
        {
            "item_id": ["1:1:m1|m2", "1:1:m1|m3", "2:1:m2|m3", "2:2:m1|m2"],
            "consensus_label": ["A", "B", "tie", "B"],
            "consensus_quality_score": [0.9, 0.5, 0.3, 0.2],
            "annotator_agreement": [1.0, 0.67, 0.5, 0.5],
            "num_annotations": [4, 3, 2, 2],
            "majority_vote_label": ["A", "B", "tie", "B"],
            "dawid_skene_label": ["A", "B", "A", "B"],
            "model_prior_scorer": "uniform",
        }
    )
    meta = items_frame()[["item_id", "question_id", "turn", "model_a", "model_b", "category"]]
    return meta.merge(consensus, on="item_id")


@pytest.fixture
def synthetic_db(tmp_path) -> Path:
    path = tmp_path / "judge.duckdb"
    con = connect(path)
    replace_table(con, "items", items_frame())
    replace_table(con, "judgments", judgments_frame())
    replace_table(con, "consensus_labels", consensus_frame())
    replace_table(con, "label_set", pd.DataFrame(PAIRWISE.as_rows(), columns=["label", "code"]))
    replace_table(
        con,
        "human_consensus_labels",
        pd.DataFrame(
            {
                "item_id": ["1:1:m1|m2", "1:1:m1|m3", "2:1:m2|m3", "2:2:m1|m2"],
                "human_consensus_label": ["A", "B", "tie", "B"],
                "human_consensus_quality_score": [0.9, 0.6, 0.5, 0.4],
                "num_human_annotations": [2, 2, 1, 1],
            }
        ),
    )
    replace_table(
        con,
        "annotator_stats",
        pd.DataFrame(
            {
                "annotator": ["h1", "h2", "h3", "gpt4_pair"],
                "annotator_kind": ["human", "human", "human", "llm"],
                "annotator_group": ["expert", "author", "expert", "llm"],
                "annotator_quality": [0.8, 0.6, 0.6, 0.7],
                "agreement_with_consensus": [1.0, 0.67, 0.5, 0.75],
                "worst_class": ["tie", "A", "B", "tie"],
                "num_examples_labeled": [3, 3, 1, 4],
            }
        ),
    )
    con.close()
    return path


UPSTREAM = {"items", "judgments", "label_set", "consensus_labels", "human_consensus_labels", "annotator_stats"}


def shipped(path: Path) -> dict[str, pd.DataFrame]:
    """Materialize every shipped model into ``path``; return each as a frame."""
    models = discover_models(SQL_MODELS_DIR)
    validate_models(models, UPSTREAM)
    con = connect(path)
    try:
        for model in order_models(models):
            materialize_model(con, model)
        return {m.name: con.execute(f'SELECT * FROM "{m.name}"').df() for m in models}
    finally:
        con.close()


def test_shipped_models_are_the_documented_four():
    names = {m.name: m.materialized for m in discover_models(SQL_MODELS_DIR)}
    assert names == {
        "judge_human_agreement": "table",
        "annotator_leaderboard": "view",
        "disputed_items": "table",
        "model_win_rates": "table",
    }


def test_judge_human_agreement_with_and_without_ties(synthetic_db):
    got = shipped(synthetic_db)["judge_human_agreement"].set_index(["judge", "category"])
    gpt4 = got.loc["gpt4_pair"]
    # writing: A=A, B=B; math: A vs tie, A vs B -> 3 non-tie pairs overall, 2 of them agree
    assert gpt4.loc["writing", ["n_with_ties", "agreement_with_ties", "n_without_ties", "agreement_without_ties"]].tolist() == [2, 1.0, 2, 1.0]
    assert gpt4.loc["math", ["n_with_ties", "agreement_with_ties", "n_without_ties", "agreement_without_ties"]].tolist() == [2, 0.0, 1, 0.0]
    assert gpt4.loc["overall", ["n_with_ties", "agreement_with_ties", "n_without_ties"]].tolist() == [4, 0.5, 3]
    assert gpt4.loc["overall", "agreement_without_ties"] == pytest.approx(2 / 3)
    claude = got.loc["claude"]
    assert claude.loc["overall", ["n_with_ties", "agreement_with_ties", "n_without_ties"]].tolist() == [1, 0.0, 0]
    assert math.isnan(claude.loc["overall", "agreement_without_ties"])
    assert set(got.index.get_level_values("judge")) == {"gpt4_pair", "claude"}  # no human rows


def test_annotator_leaderboard_ranks_overall_and_within_group(synthetic_db):
    board = shipped(synthetic_db)["annotator_leaderboard"]
    assert board[["rank", "annotator", "rank_in_group", "annotator_group", "num_examples_labeled"]].values.tolist() == [
        [1, "h1", 1, "expert", 3],
        [2, "gpt4_pair", 1, "llm", 4],
        [3, "h2", 1, "author", 3],
        [3, "h3", 2, "expert", 1],
    ]


def test_disputed_items_lists_lowest_quality_items_with_votes_and_texts(synthetic_db):
    disputed = shipped(synthetic_db)["disputed_items"]
    assert disputed["item_id"].tolist() == ["2:2:m1|m2", "2:1:m2|m3", "1:1:m1|m3", "1:1:m1|m2"]
    first = disputed.iloc[0]
    assert first["review_rank"] == 1
    assert first["votes"] == "gpt4_pair: A, h2: B"
    assert (first["last_user_turn"], first["answer_a"], first["answer_b"]) == ("and 2+2?", "4", "5")
    assert disputed.iloc[3]["votes"] == "claude: tie, gpt4_pair: A, h1: A, h2: A"


def test_disputed_items_keeps_the_bottom_100(synthetic_db):
    con = connect(synthetic_db)
    con.execute(
        """INSERT INTO consensus_labels (item_id, consensus_label, consensus_quality_score)
           SELECT 'filler' || i, 'A', 0.95 + i / 10000 FROM range(100) t(i)"""
    )
    con.close()
    disputed = shipped(synthetic_db)["disputed_items"]
    assert len(disputed) == 100
    assert disputed["item_id"].iloc[:4].tolist() == ["2:2:m1|m2", "2:1:m2|m3", "1:1:m1|m3", "1:1:m1|m2"]
    assert disputed["item_id"].iloc[-1] == "filler95"  # filler96..99 have the highest scores


def test_model_win_rates_consensus_vs_human_votes(synthetic_db):
    rates = shipped(synthetic_db)["model_win_rates"].set_index(["model_a", "model_b"])
    m1m2 = rates.loc[("m1", "m2")]
    # consensus: A (1:1) and B (2:2); human votes: A, A (1:1) and B (2:2)
    assert m1m2[["n_items", "consensus_win_rate", "consensus_tie_rate", "consensus_loss_rate", "n_human_votes"]].tolist() == [2, 0.5, 0.0, 0.5, 3]
    assert m1m2[["vote_win_rate", "vote_tie_rate", "vote_loss_rate"]].tolist() == pytest.approx([2 / 3, 0.0, 1 / 3])
    assert m1m2["win_rate_gap"] == pytest.approx(0.5 - 2 / 3)
    m1m3 = rates.loc[("m1", "m3")]
    assert m1m3[["n_items", "consensus_loss_rate", "n_human_votes", "vote_tie_rate", "vote_loss_rate"]].tolist() == [1, 1.0, 2, 0.5, 0.5]
    assert rates.loc[("m2", "m3"), ["consensus_tie_rate", "n_human_votes", "vote_tie_rate"]].tolist() == [1.0, 1, 1.0]


# --- the shipped models on generic (non-pairwise) data -----------------------------------------


GENERIC_VOTES = [  # item, category, annotator, label (+ prompt / response_a on the first vote of an item)
    ("i1", "math", "h1", "pass", "2+2?", "4"), ("i1", "math", "h2", "pass"), ("i1", "math", "judge_llm", "pass"),
    ("i2", "math", "h1", "fail", "3+3?", "7"), ("i2", "math", "h2", "fail"), ("i2", "math", "judge_llm", "pass"),
    ("i3", "code", "h1", "pass"), ("i3", "code", "h2", "pass"), ("i3", "code", "judge_llm", "pass"),
    ("i4", "code", "h1", "fail"), ("i4", "code", "h2", "fail"), ("i4", "code", "judge_llm", "fail"),
]


@pytest.fixture
def generic_db(tmp_path) -> Path:
    """Generic long votes (item_id, annotator, label: pass/fail) through the real ingest, votes and
    consensus functions; ``judge_llm`` is the LLM judge, h1 and h2 agree on every item."""
    rows = []
    for item, category, annotator, label, *texts in GENERIC_VOTES:
        row = {"item_id": item, "annotator": annotator, "label": label, "category": category}
        rows.append(row | dict(zip(["prompt", "response_a"], texts)))
    source = tmp_path / "generic.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "judge.duckdb"
    con = connect(path)
    batch = file_batch(source)
    table = load_batch(batch)
    write_batch(con, batch, table, validate_batch(table, batch.label))
    build_judgments(con, ("judge_llm",))
    build_items(con)
    classes = stored_label_set(con).labels
    items = con.execute("SELECT item_id, category FROM items").df()
    judgments = con.execute("SELECT item_id, annotator, annotator_kind, label FROM judgments").df()
    out = build_consensus_tables(judgments, uniform_prior(items["item_id"], classes), items, classes, ("judge_llm",))
    replace_tables(con, out.tables)
    con.close()
    return path


def test_generic_data_has_the_classes_it_was_given(generic_db):
    con = duckdb.connect(str(generic_db), read_only=True)
    assert con.execute("SELECT label, code FROM label_set ORDER BY code").fetchall() == [("fail", 0), ("pass", 1)]
    assert con.execute("SELECT count(*) FROM judgments WHERE model_a IS NULL AND model_b IS NULL").fetchone() == (12,)
    con.close()


# --- Dagster assets ----------------------------------------------------------------------------


def test_build_assets_have_parsed_deps_groups_and_kinds(tmp_path):
    write(tmp_path, "per_item.sql", "-- Votes per item.\n-- grain: item_id\nSELECT item_id, count(*) AS n FROM judgments GROUP BY ALL")
    write(tmp_path, "extra/busy.sql", "-- materialized: view\n-- grain: item_id\nSELECT * FROM per_item WHERE n > 1")
    built = build_sql_model_defs(tmp_path, {"judgments"})
    assets = built.assets
    assert [a.key.to_user_string() for a in assets] == ["per_item", "busy"]
    per_item, busy = assets
    spec = busy.specs_by_key[dg.AssetKey("busy")]
    assert {d.asset_key for d in spec.deps} == {dg.AssetKey("per_item")}
    assert spec.group_name == "extra"
    assert spec.kinds == {"duckdb", "sql"}
    per_item_spec = per_item.specs_by_key[dg.AssetKey("per_item")]
    assert per_item_spec.group_name == "sql_models"
    assert per_item_spec.description.startswith(f"SQL model `{tmp_path.name}/per_item.sql` (table); one row per item_id.")
    assert "Votes per item." in per_item_spec.description and str(tmp_path) not in per_item_spec.description
    assert [(spec.asset_key.to_user_string(), spec.name) for check in built.checks for spec in check.check_specs] == [
        ("per_item", "per_item_grain_unique"), ("busy", "busy_grain_unique"),
    ]


def test_build_fails_at_load_time_on_an_unknown_table(tmp_path):
    write(tmp_path, "m.sql", "-- grain: item_id\nSELECT * FROM judgements")
    with pytest.raises(SqlModelError, match="reads unknown table 'judgements'"):
        build_sql_model_defs(tmp_path, {"judgments"})


def materialize_models(db: Path, sql_dir: Path, upstream: set[str]) -> dg.ExecuteInProcessResult:
    """Materialize every model under ``sql_dir`` and run its grain check with Dagster, on ``db``."""
    built = build_sql_model_defs(sql_dir, upstream)
    return dg.materialize(
        [*(dg.AssetSpec(name) for name in sorted(upstream)), *built.assets, *built.checks],
        resources={"duckdb": JudgeDuckDBResource(database=str(db))},
        selection=[a.key for a in built.assets],
    )


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_shipped_assets_materialize_with_dagster_and_pass_their_grain_checks(synthetic_db):
    built = build_sql_model_defs(SQL_MODELS_DIR, UPSTREAM)
    deps = {
        a.key.to_user_string(): {d.asset_key.to_user_string() for d in a.specs_by_key[a.key].deps} for a in built.assets
    }
    assert deps["disputed_items"] == {"consensus_labels", "judgments", "items"}
    assert deps["judge_human_agreement"] == {"judgments", "human_consensus_labels", "label_set"}
    assert deps["model_win_rates"] == {"judgments", "consensus_labels", "label_set"}
    result = materialize_models(synthetic_db, SQL_MODELS_DIR, UPSTREAM)
    assert result.success
    events = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    disputed = events["disputed_items"].materialization.metadata
    assert disputed["dagster/row_count"].value == 4
    assert disputed["grain"].value == "item_id"
    assert "```sql" in disputed["sql"].value and "consensus_quality_score" in disputed["sql"].value
    assert events["annotator_leaderboard"].materialization.metadata["materialized"].value == "view"
    checks = check_results(result)
    assert sorted(checks) == [
        "annotator_leaderboard_grain_unique", "disputed_items_grain_unique",
        "judge_human_agreement_grain_unique", "model_win_rates_grain_unique",
    ]
    assert all(c.passed for c in checks.values())
    assert checks["model_win_rates_grain_unique"].metadata["duplicate_keys"].value == 0
    con = duckdb.connect(str(synthetic_db), read_only=True)
    assert con.execute("SELECT count(*) FROM model_win_rates").fetchone() == (3,)
    con.close()


def test_shipped_models_on_generic_pass_fail_data(generic_db):
    result = materialize_models(generic_db, SQL_MODELS_DIR, UPSTREAM)
    assert result.success
    assert all(c.passed for c in check_results(result).values()) and len(check_results(result)) == 4
    con = duckdb.connect(str(generic_db), read_only=True)
    # no model pair in generic data: no win rates (not rows with NULL models)
    assert con.execute("SELECT count(*) FROM model_win_rates").fetchone() == (0,)
    # judge_llm vs the human consensus (pass, fail, pass, fail): wrong on i2 only; no 'tie' class,
    # so the without-ties columns are NULL
    assert con.execute("SELECT * FROM judge_human_agreement").fetchall() == [
        ("judge_llm", "overall", 4, 0.75, None, None),
        ("judge_llm", "code", 2, 1.0, None, None),
        ("judge_llm", "math", 2, 0.5, None, None),
    ]
    assert con.execute(
        "SELECT rank, annotator, annotator_group, agreement_with_consensus, num_examples_labeled FROM annotator_leaderboard"
    ).fetchall() == [(1, "h1", "human", 1.0, 4), (1, "h2", "human", 1.0, 4), (3, "judge_llm", "llm", 0.75, 4)]
    disputed = con.execute("SELECT * FROM disputed_items").df()
    assert disputed["item_id"].tolist()[0] == "i2" and sorted(disputed["item_id"]) == ["i1", "i2", "i3", "i4"]
    first = disputed.iloc[0]
    assert (first["consensus_label"], first["votes"]) == ("fail", "h1: fail, h2: fail, judge_llm: pass")
    assert (first["category"], first["last_user_turn"], first["answer_a"]) == ("math", "3+3?", "7")
    assert disputed[["question_id", "turn", "model_a", "model_b", "answer_b"]].isna().all().all()
    con.close()


def test_a_model_breaking_its_grain_fails_its_check_with_the_duplicate_keys(tmp_path, synthetic_db):
    models = tmp_path / "models"
    write(models, "votes_by_item.sql", "-- grain: item_id\n-- Wrong grain: one row per vote, not per item.\n"
          "SELECT item_id, annotator, label FROM judgments")
    write(models, "votes.sql", "-- grain: item_id, annotator\nSELECT item_id, annotator, label FROM judgments")
    result = materialize_models(synthetic_db, models, {"judgments"})
    assert result.success  # the check is not blocking: the table is written, the check reports
    checks = check_results(result)
    assert checks["votes_grain_unique"].passed
    failed = checks["votes_by_item_grain_unique"]
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    meta = {k: v.value for k, v in failed.metadata.items()}
    # 4 items, each voted by 2 to 4 annotators: all 4 keys repeat, over all 11 votes
    assert (meta["grain"], meta["duplicate_keys"], meta["rows_with_duplicate_keys"]) == ("item_id", 4, 11)
    assert meta["examples"].index("1:1:m1\\|m2") < meta["examples"].index("1:1:m1\\|m3")  # 4 votes first, then 3 (| escaped for Markdown)


# --- the packaged models folder ----------------------------------------------------------------


def test_the_shipped_models_are_read_from_the_installed_package():
    assert SQL_MODELS_DIR == Path(files("judge_assets.dbt_like_sql"))
    assert SQL_MODELS_DIR.name == "dbt_like_sql"
    assert sorted(p.name for p in SQL_MODELS_DIR.glob("*.sql")) == [
        "annotator_leaderboard.sql", "disputed_items.sql", "judge_human_agreement.sql", "model_win_rates.sql",
    ]
    for asset in build_sql_model_defs(SQL_MODELS_DIR, UPSTREAM).assets:
        description = asset.specs_by_key[asset.key].description
        assert description.startswith(f"SQL model `dbt_like_sql/{asset.key.to_user_string()}.sql` (")
        assert str(SQL_MODELS_DIR) not in description and str(PROJECT_ROOT) not in description


def test_a_built_package_holds_the_sql_models_and_every_module(tmp_path):
    """What a wheel gets (setuptools build_py): dbt_like_sql/*.sql as judge_assets/dbt_like_sql, and
    every module and data file of the listed packages, so the explicit package list misses none."""
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("judge_assets", "judge_assets_tests", "dbt_like_sql"):
        shutil.copytree(PROJECT_ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, source / name)
    out = tmp_path / "lib"
    done = subprocess.run(
        [sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py", "--build-lib", str(out)],
        cwd=source, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    built = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {f"judge_assets/dbt_like_sql/{p.name}" for p in SQL_MODELS_DIR.glob("*.sql")} <= built
    expected = {
        p.relative_to(source).as_posix()
        for top in ("judge_assets", "judge_assets_tests")
        for p in (source / top).rglob("*")
        if p.is_file()
    }
    missing = expected - built
    assert not missing, f"not in the built package (add the package to [tool.setuptools] packages): {sorted(missing)}"
