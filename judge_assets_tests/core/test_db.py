"""DuckDB reads: read_frame is df() with shared strings."""

from __future__ import annotations

import duckdb
import numpy as np

from judge_assets.core.db import read_frame

TABLE = """CREATE TABLE votes AS SELECT
    'item-' || (range % 7) AS item_id,
    CASE WHEN range % 3 = 0 THEN NULL ELSE 'ann' || (range % 5) END AS annotator,
    range::INTEGER AS n,
    CASE WHEN range % 4 = 0 THEN NULL ELSE (range % 2)::BIGINT END AS turn,
    range * 0.5 AS half,
    range % 2 = 0 AS even,
    [range, range + 1] AS pair,
    TIMESTAMP '2026-12-03 12:00:00' + INTERVAL (range) MINUTE AS at
FROM range(60)"""


def test_read_frame_equals_df_and_repeated_strings_are_one_object(tmp_path):
    con = duckdb.connect(str(tmp_path / "j.duckdb"))
    con.execute(TABLE)
    for sql in ("SELECT * FROM votes", "SELECT annotator, n FROM votes ORDER BY n DESC", "SELECT item_id FROM votes WHERE false",
                "SELECT n FROM votes"):
        want, got = con.sql(sql).df(), read_frame(con, sql)
        assert list(got.columns) == list(want.columns) and (got.dtypes == want.dtypes).all(), sql
        flat = [c for c in want.columns if c != "pair"]
        assert got[flat].equals(want[flat]), sql
        if "pair" in want.columns:
            assert all(np.array_equal(a, b) for a, b in zip(got["pair"], want["pair"]))
    frame = read_frame(con, "SELECT * FROM votes")
    ann1 = frame.index[frame["annotator"] == "ann1"]
    assert len(ann1) > 3 and len({id(frame["annotator"][i]) for i in ann1}) == 1  # one string, not one per row
    assert frame["annotator"][0] is None and len({id(v) for v in frame["item_id"]}) == 7
