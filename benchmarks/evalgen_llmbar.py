"""The EvalGen loop on real data: LLMBar Natural outputs graded batch by batch, assertions aligned with the grades.

LLMBar Natural (``/work/shared/data/llmbar_natural/judgments.csv``, see PROVENANCE.md) holds 100
pairwise items — a prompt, two outputs and the gold: which output follows the instruction. Split
into 200 single outputs, each graded by its gold label (the gold output ``good``, the other
``bad``) by one grader, ``grader_1``. The script

1. writes a criteria file (four criteria, each with code variants — DuckDB SQL over the output —
   and an LLM variant with the built-in ``pass-fail`` judge);
2. writes the grades as CSV batches — a first look of ``--first-batch`` (10, below the first
   milestone), then ``--batch-size`` (25) each — in the generic format (``item_id`` =
   output id, ``annotator``, ``label``, ``prompt``, ``response``). The first batch holds two hurried
   grades against the gold, corrected in batch 4 (so the ingest report shows re-grades with a
   changed label); batch 3 re-grades two earlier outputs the same way (re-graded, label unchanged);
3. runs ``judge-assets ingest`` batch by batch and prints, after each, the ingest report's re-grade
   lines and the report card: per criterion the milestone status or the selected variant, then the
   selected set; finally the history (best alignment per criterion per batch, drift).

LLM assertions: with ``JUDGE_LLM_BASE_URL`` and ``JUDGE_LLM_MODEL`` set they go to that endpoint;
otherwise to the loopback server of the test suite (``judge_assets_tests.fake_openai``), whose
answers are a deterministic hash of the prompt — so its LLM variants measure nothing and are
there to show the wiring. Usage::

    python benchmarks/evalgen_llmbar.py [--out DIR] [--first-batch 10] [--batch-size 25] [--limit 200] [--full-graph]

By default each ingest rebuilds only what the report card needs (``--select 'key:items or
key:judgments or group:criteria'``); ``--full-graph`` rebuilds everything downstream of the batch.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "llmbar_natural" / "judgments.csv"
SELECT = "key:items or key:judgments or group:criteria"
GRADER = "grader_1"

CRITERIA_YAML = r"""# Criteria for LLMBar Natural outputs: does the output do what the instruction asks?
criteria:
  - name: substantive
    description: The answer is a real, complete response to the request, not a fragment or a one-liner.
    assertions:
      - name: at_least_15_words
        sql: len(string_split(trim(response), ' ')) >= 15
      - name: at_least_40_words
        sql: len(string_split(trim(response), ' ')) >= 40
      - name: llm_substantive
        judge: pass-fail
  - name: on_topic
    description: The answer addresses the user's request and uses its key terms.
    assertions:
      - name: shares_3_words
        sql: len(list_intersect(list_distinct(string_split(lower(response), ' ')), list_distinct(string_split(lower(prompt), ' ')))) >= 3
      - name: shares_8_words
        sql: len(list_intersect(list_distinct(string_split(lower(response), ' ')), list_distinct(string_split(lower(prompt), ' ')))) >= 8
      - name: llm_on_topic
        judge: pass-fail
  - name: no_refusal
    description: The answer does not refuse, apologise or hedge with AI disclaimers.
    assertions:
      - name: no_disclaimer
        sql: NOT regexp_matches(response, '(?i)(as an ai|language model|i cannot|i can''t|i''m sorry)')
      - name: llm_no_refusal
        judge: pass-fail
  - name: proportionate
    description: The answer's length fits the request; it is not padded far beyond what was asked.
    assertions:
      - name: under_4x_prompt
        sql: length(response) <= 4 * length(prompt) + 200
      - name: under_2x_prompt
        sql: length(response) <= 2 * length(prompt) + 100
      - name: llm_proportionate
        judge: pass-fail
"""

def single_outputs(path: Path = DATA, limit: int | None = None, seed: int = 0) -> pd.DataFrame:
    """One row per output: ``item_id`` (``<pair>:a`` / ``<pair>:b``), ``prompt``, ``response``,
    ``label`` (the gold output good, the other bad), shuffled (seeded) so batches mix both."""
    pairs = pd.read_csv(path).drop_duplicates("item_id")[["item_id", "prompt", "response_a", "response_b", "ground_truth"]]
    rows = []
    for pair in pairs.itertuples(index=False):
        for side, response, gold in (("a", pair.response_a, "output_1"), ("b", pair.response_b, "output_2")):
            rows.append({"item_id": f"{pair.item_id}:{side}", "annotator": GRADER, "label": "good" if pair.ground_truth == gold else "bad",
                         "prompt": pair.prompt, "response": response})
    outputs = pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return outputs.head(limit) if limit else outputs


def grade_batches(outputs: pd.DataFrame, batch_size: int, first_batch: int = 10) -> list[pd.DataFrame]:
    """A first batch of ``first_batch`` grades (below the first milestone), then batches of
    ``batch_size``; batch 1 has two grades against the gold, corrected in batch 4; batch 3
    re-grades two outputs of batch 1 with the same grade."""
    cuts = [0, *range(first_batch, len(outputs), batch_size), len(outputs)] if first_batch else [*range(0, len(outputs), batch_size), len(outputs)]
    batches = [outputs.iloc[a:b].copy() for a, b in zip(cuts, cuts[1:]) if b > a]
    flip = {"good": "bad", "bad": "good"}
    if len(batches) >= 4 and len(batches[0]) >= 6:
        wrong = batches[0].index[:2]
        corrected = batches[0].loc[wrong].copy()
        batches[0].loc[wrong, "label"] = batches[0].loc[wrong, "label"].map(flip)
        batches[3] = pd.concat([batches[3], corrected])
        batches[2] = pd.concat([batches[2], outputs.loc[batches[0].index[2:4]]])
    return batches


def _env(out: Path, base_url: str, model: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUDGE_", "DAGSTER_"))}
    env.update(
        DAGSTER_DISABLE_TELEMETRY="1", GX_ANALYTICS_ENABLED="false",
        JUDGE_DB=str(out / "judge.duckdb"), DAGSTER_HOME=str(out / "dagster_home"), JUDGE_INBOX_DIR=str(out / "inbox"),
        JUDGE_CRITERIA_FILE=str(out / "criteria.yaml"), JUDGE_LLM_BASE_URL=base_url, JUDGE_LLM_MODEL=model,
    )
    for name in ("JUDGE_LLM_API_KEY", "JUDGE_LLM_CONCURRENCY", "JUDGE_LLM_TIMEOUT"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    env.setdefault("JUDGE_LLM_API_KEY", "sk-loopback")
    return env


def ingest(env: dict[str, str], path: Path, select: str | None) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "judge_assets.cli", "ingest", str(path), *(["--select", select] if select else [])]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=1800, cwd=ROOT)


def report_card(db: Path) -> tuple[str, pd.DataFrame]:
    """(the milestone line, the card: criterion and selected-set rows of assertion_report)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        graded = con.execute("SELECT count(DISTINCT item_id) FROM grades").fetchone()[0]
        card = con.execute(
            "SELECT level, criterion, assertion, status, n_graded, round(coverage, 3) AS coverage, round(false_failure_rate, 3) AS ffr, "
            "round(failure_precision, 3) AS precision, round(alignment, 3) AS alignment FROM assertion_report "
            "ORDER BY CASE level WHEN 'assertion' THEN 0 WHEN 'criterion' THEN 1 ELSE 2 END, criterion, assertion"
        ).df()
    finally:
        con.close()
    return f"{graded} graded outputs", card


def history(db: Path) -> pd.DataFrame:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "SELECT batch_number, criterion, round(max(criterion_alignment), 3) AS best_alignment, bool_or(drift) AS drift, "
            "max(n_graded) AS n_graded FROM assertion_report_history GROUP BY ALL ORDER BY criterion, batch_number"
        ).df()
    finally:
        con.close()


def run(out: Path, batch_size: int = 25, limit: int | None = None, full_graph: bool = False, base_url: str | None = None,
        model: str | None = None, echo=print, first_batch: int = 10) -> list[dict]:
    """Write the criteria file and the graded batches under ``out``, ingest them one by one and
    ``echo`` the report card after each; returns one dict per batch (returncode, stdout, card)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "criteria.yaml").write_text(CRITERIA_YAML, encoding="utf-8")
    outputs = single_outputs(limit=limit)
    env = _env(out, base_url, model)
    results = []
    for number, batch in enumerate(grade_batches(outputs, batch_size, first_batch), start=1):
        path = out / "grades" / f"grades_{number:02d}.csv"
        path.parent.mkdir(exist_ok=True)
        batch.to_csv(path, index=False)
        done = ingest(env, path, None if full_graph else SELECT)
        echo(f"\n=== batch {number}: {path.name} ({len(batch)} grades) → exit {done.returncode}")
        lines = [line for line in done.stdout.splitlines() if line.startswith(("accepted", "re-graded", "grades re-graded", "new votes"))]
        echo("\n".join(lines) if lines else done.stdout[-2000:] + done.stderr[-2000:])
        card = None
        if done.returncode == 0:
            status, card = report_card(out / "judge.duckdb")
            echo(status)
            echo(card[card["level"] != "assertion"].drop(columns="level").to_string(index=False))
        results.append({"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr, "card": card})
    if results and results[-1]["returncode"] == 0:
        echo("\n=== every assertion after the last batch")
        echo(results[-1]["card"].query("level == 'assertion'").drop(columns="level").to_string(index=False))
        echo("\n=== history: best alignment per criterion per grading batch (drift = fell by > 0.1)")
        echo(history(out / "judge.duckdb").to_string(index=False))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for the criteria file, batches and database (default: a temp folder)")
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--first-batch", type=int, default=10, help="size of the first batch (below the first milestone, 20); 0 = batch-size")
    parser.add_argument("--limit", type=int, help="only the first N outputs (default all 200)")
    parser.add_argument("--full-graph", action="store_true", help="rebuild the whole graph after each batch, not only the criteria group")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="evalgen_llmbar_"))
    base_url, model, server = os.environ.get("JUDGE_LLM_BASE_URL"), os.environ.get("JUDGE_LLM_MODEL"), None
    if not (base_url and model):
        from judge_assets_tests.fake_openai import FakeOpenAI

        server = FakeOpenAI().start()
        server.settings.answer_tokens = {"Y if the answer meets the criterion": ("Y", "N")}
        base_url, model = server.base_url, "loopback-judge"
        print(f"LLM assertions: loopback server {base_url} (deterministic hash answers: wiring only, not a measurement)")
    print(f"output folder: {out}")
    try:
        results = run(out, args.batch_size, args.limit, args.full_graph, base_url, model, first_batch=args.first_batch)
    finally:
        if server is not None:
            server.stop()
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
