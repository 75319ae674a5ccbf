"""SQL models: dependency parsing, ordering, validation, materialization, shipped models, assets."""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from judge_assets.defs.resources import JudgeDuckDBResource

from judge_assets.core.db import connect, replace_table
from judge_assets.core.sql.models import (
    SqlModelError,
    discover_models,
    materialize_model,
    order_models,
    parse_dependencies,
    read_model,
    validate_models,
)
from judge_assets.defs.sql_models import SQL_MODELS_DIR, build_sql_model_assets


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
    write(tmp_path, "a.sql", "-- materialized: view\n-- Votes per item.\n--   second line\nSELECT item_id FROM judgments;\n")
    write(tmp_path, "reports/b.sql", "SELECT * FROM a")
    a, b = discover_models(tmp_path)
    assert (a.name, a.group, a.materialized, a.deps) == ("a", "sql_models", "view", frozenset({"judgments"}))
    assert a.description == "Votes per item.\nsecond line"
    assert a.sql.endswith("FROM judgments")  # trailing ';' dropped
    assert (b.name, b.group, b.materialized, b.deps, b.description) == ("b", "reports", "table", frozenset({"a"}), "")


def test_bad_materialization_and_duplicate_names_are_errors(tmp_path):
    path = write(tmp_path, "x.sql", "-- materialized: incremental\nSELECT 1")
    with pytest.raises(SqlModelError, match=r"x\.sql: materialized must be one of table, view, got 'incremental'"):
        read_model(path)
    path.write_text("SELECT 1")
    write(tmp_path, "g/x.sql", "SELECT 2")
    with pytest.raises(SqlModelError, match="two models named 'x'"):
        discover_models(tmp_path)


def test_order_puts_a_model_after_the_models_it_reads(tmp_path):
    write(tmp_path, "a_final.sql", "SELECT * FROM m_mid JOIN b_base USING (id)")
    write(tmp_path, "m_mid.sql", "SELECT * FROM b_base")
    write(tmp_path, "b_base.sql", "SELECT * FROM judgments")
    write(tmp_path, "z_other.sql", "SELECT * FROM items")
    ordered = [m.name for m in order_models(discover_models(tmp_path))]
    assert ordered == ["b_base", "z_other", "m_mid", "a_final"]


def test_a_cycle_is_an_error_naming_its_models(tmp_path):
    write(tmp_path, "one.sql", "SELECT * FROM two")
    write(tmp_path, "two.sql", "SELECT * FROM three")
    write(tmp_path, "three.sql", "SELECT * FROM one")
    write(tmp_path, "ok.sql", "SELECT * FROM one")
    with pytest.raises(SqlModelError, match="dependency cycle among models: one -> two -> three -> one"):
        order_models(discover_models(tmp_path))
    (tmp_path / "one.sql").write_text("SELECT * FROM one")
    with pytest.raises(SqlModelError, match=r"model one \(.*one\.sql\) reads itself"):
        order_models(discover_models(tmp_path))


def test_unknown_table_names_file_and_table(tmp_path):
    write(tmp_path, "good.sql", "SELECT * FROM judgments")
    bad = write(tmp_path, "bad.sql", "SELECT * FROM good JOIN consensus_lables USING (item_id)")
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
    path = write(tmp_path / "m", "votes.sql", "SELECT item_id, count(*) AS n FROM judgments GROUP BY ALL")
    materialize_model(con, read_model(path))
    assert con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = 'votes'").fetchone() == ("BASE TABLE",)
    assert con.execute("SELECT * FROM votes ORDER BY item_id").fetchall() == [("i1", 2), ("i2", 1)]

    path.write_text("-- materialized: view\nSELECT item_id, count(*) AS n FROM judgments GROUP BY ALL")
    materialize_model(con, read_model(path))
    assert con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = 'votes'").fetchone() == ("VIEW",)
    con.execute("INSERT INTO judgments VALUES ('i2', 'tie')")
    assert con.execute("SELECT n FROM votes WHERE item_id = 'i2'").fetchone() == (2,)


def test_duckdb_error_names_the_file_and_its_line_and_keeps_the_old_table(tmp_path, con):
    path = write(tmp_path / "m", "votes.sql", "SELECT item_id FROM judgments")
    materialize_model(con, read_model(path))
    path.write_text("-- materialized: table\n-- a comment\nSELECT\n    item_id,\n    no_such_column\nFROM judgments\n")
    with pytest.raises(SqlModelError, match=rf"model votes failed at {path}:5: Binder Error"):
        materialize_model(con, read_model(path))
    assert con.execute("SELECT count(*) FROM votes").fetchone() == (3,)


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


UPSTREAM = {"items", "judgments", "consensus_labels", "human_consensus_labels", "annotator_stats"}


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


# --- Dagster assets ----------------------------------------------------------------------------


def stub_upstream() -> list[dg.AssetSpec]:
    return [dg.AssetSpec(name) for name in sorted(UPSTREAM)]


def test_build_assets_have_parsed_deps_groups_and_kinds(tmp_path):
    write(tmp_path, "per_item.sql", "-- Votes per item.\nSELECT item_id, count(*) AS n FROM judgments GROUP BY ALL")
    write(tmp_path, "extra/busy.sql", "-- materialized: view\nSELECT * FROM per_item WHERE n > 1")
    assets = build_sql_model_assets(tmp_path, {"judgments"})
    assert [a.key.to_user_string() for a in assets] == ["per_item", "busy"]
    per_item, busy = assets
    spec = busy.specs_by_key[dg.AssetKey("busy")]
    assert {d.asset_key for d in spec.deps} == {dg.AssetKey("per_item")}
    assert spec.group_name == "extra"
    assert spec.kinds == {"duckdb", "sql"}
    per_item_spec = per_item.specs_by_key[dg.AssetKey("per_item")]
    assert per_item_spec.group_name == "sql_models"
    assert "per_item.sql" in per_item_spec.description and "Votes per item." in per_item_spec.description


def test_build_fails_at_load_time_on_an_unknown_table(tmp_path):
    write(tmp_path, "m.sql", "SELECT * FROM judgements")
    with pytest.raises(SqlModelError, match="reads unknown table 'judgements'"):
        build_sql_model_assets(tmp_path, {"judgments"})


def test_shipped_assets_materialize_with_dagster(synthetic_db):
    assets = build_sql_model_assets(SQL_MODELS_DIR, UPSTREAM)
    deps = {
        a.key.to_user_string(): {d.asset_key.to_user_string() for d in a.specs_by_key[a.key].deps} for a in assets
    }
    assert deps["disputed_items"] == {"consensus_labels", "judgments", "items"}
    assert deps["judge_human_agreement"] == {"judgments", "human_consensus_labels"}
    result = dg.materialize(
        [*stub_upstream(), *assets],
        resources={"duckdb": JudgeDuckDBResource(database=str(synthetic_db))},
        selection=[a.key for a in assets],
    )
    assert result.success
    events = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    disputed = events["disputed_items"].materialization.metadata
    assert disputed["dagster/row_count"].value == 4
    assert "```sql" in disputed["sql"].value and "consensus_quality_score" in disputed["sql"].value
    assert events["annotator_leaderboard"].materialization.metadata["materialized"].value == "view"
    con = duckdb.connect(str(synthetic_db), read_only=True)
    assert con.execute("SELECT count(*) FROM model_win_rates").fetchone() == (3,)
    con.close()
