"""Held-out vote benchmark of the consensus methods on the bundled MT-Bench human judgments.

Builds ``judgments`` and ``items`` with the pipeline's own functions in a throwaway DuckDB file
(or reads them from an existing pipeline database with ``--db``), runs the protocol of
:mod:`judge_assets.core.reports.consensus_benchmark` and prints the Markdown table (mean ± std over the
seeds, default method marked).

    python benchmarks/consensus_quality.py [--db data/judge.duckdb] [--seeds 0 1 2 3 4] [--no-glad]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from judge_assets.config import BUNDLED_DATA_DIR, BUNDLED_SOURCE, settings
from judge_assets.core.reports import consensus_benchmark as cb
from judge_assets.core.db import connect, table_exists
from judge_assets.core.labels import stored_label_set
from judge_assets.core.votes.judgments import build_items, build_judgments, load_questions
from judge_assets.core.sources.batches import load_batch, source_batches, validate_batch, write_batch


def build_bundled(path: Path) -> None:
    """``judgments`` and ``items`` of the bundled MT-Bench data, as ``judge-assets run`` builds them."""
    con = connect(path)
    try:
        for batch in source_batches(BUNDLED_SOURCE):
            table = load_batch(batch)
            write_batch(con, batch, table, validate_batch(table, batch.label, allow_duplicates=True))
        load_questions(con, BUNDLED_DATA_DIR / "question.jsonl")
        build_judgments(con, settings().llm_annotators)
        build_items(con)
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="read judgments/items from this pipeline database instead of the bundled data")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(cb.DEFAULT_SEEDS))
    parser.add_argument("--min-human-votes", type=int, default=3)
    parser.add_argument("--no-glad", action="store_true", help="skip crowd-kit GLAD (the slowest method)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db
        if db is None:
            db = Path(tmp) / "bundled.duckdb"
            build_bundled(db)
        con = connect(db, read_only=True)
        try:
            classes = stored_label_set(con).labels
            judgments = con.execute("SELECT item_id, annotator, annotator_kind, label FROM judgments").df()
            items = con.execute("SELECT * FROM items ORDER BY item_id").df()
            scores = con.execute("SELECT * FROM llm_judge_scores").df() if table_exists(con, "llm_judge_scores") else None
        finally:
            con.close()
    methods = cb.default_methods(judgments, scores, include_glad=not args.no_glad)
    start = time.perf_counter()
    runs = cb.run_benchmark(
        judgments, items, classes, methods, tuple(args.seeds), min_human_votes=args.min_human_votes, llm_scores=scores
    )
    summary = cb.summarize(runs)
    print(
        f"Held-out human vote accuracy, {int(runs['n_items'].max())} items with >= {args.min_human_votes} human votes, "
        f"{len(args.seeds)} seeds, classes {list(classes)} ({time.perf_counter() - start:.0f} s)\n"
    )
    print(cb.markdown_table(summary))


if __name__ == "__main__":
    main()
